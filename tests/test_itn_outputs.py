"""The ITN's output maps: identity at initialisation, the range each can reach, no cut gradients."""

import numpy as np
import pytest
import torch

from istn_sk.nn import ImageTransformerNetwork


def _itn(output, shape=(12, 12)):
    torch.manual_seed(0)
    return ImageTransformerNetwork(len(shape), 1, shape, nf=4, output=output).eval()


def _images(shape=(12, 12)):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, *shape, generator=generator) * 2 - 1
    x[:, :, :4] = -1.0   # background rows, as in every Morpho-MNIST digit
    x[:, :, -2:] = 1.0   # saturated strokes
    return x


@pytest.mark.parametrize("output", ["full_range", "clip"])
@pytest.mark.parametrize("shape", [(12, 12), (6, 8, 10)])
def test_a_fresh_itn_is_the_identity(output, shape):
    x = _images(shape)
    with torch.no_grad():
        np.testing.assert_allclose(_itn(output, shape)(x), x, atol=1e-6)


def test_the_plain_tanh_output_is_not_the_identity():
    x = _images()
    with torch.no_grad():
        assert (_itn("tanh")(x) - x).abs().max() > 0.5


def _push(itn, bias):
    with torch.no_grad():
        itn.out.bias.fill_(bias)
        return itn(_images())


def test_full_range_turns_background_into_stroke_and_clip_cannot():
    background = _images()[:, :, :4]
    assert torch.all(background == -1)
    full = _push(_itn("full_range"), 10.0)[:, :, :4]
    clip = _push(_itn("clip"), 10.0)[:, :, :4]
    assert full.min() > 0.99              # background drawn as a full stroke
    assert clip.max() <= 0.0              # cannot pass mid-grey: -1 + tanh(h) <= 0


@pytest.mark.parametrize("output", ["full_range", "tanh"])
def test_gradients_reach_every_pixel_at_both_ends_of_the_range(output):
    itn = _itn(output)
    with torch.no_grad():
        itn.out.bias.fill_(-2.0)           # push everything toward -1
    out = itn(_images())
    grad, = torch.autograd.grad(out.sum(), itn.out.bias)
    assert grad.abs().item() > 1e-3
    clip = _itn("clip")
    with torch.no_grad():
        clip.out.bias.fill_(-2.0)
    clipped = clip(_images())
    saturated = (clipped == -1.0).float().mean().item()
    assert saturated > 0.3                 # the clip's flat zone, where no gradient flows


def test_an_unknown_output_is_named():
    with pytest.raises(ValueError, match="output must be one of"):
        ImageTransformerNetwork(2, 1, (12, 12), output="residual")


def test_full_range_reaches_an_exact_background_and_stays_trainable_there():
    assert torch.all(_push(_itn("full_range"), -10.0) == -1.0)   # exact, as in a real image
    itn = _itn("full_range")
    with torch.no_grad():
        itn.out.bias.fill_(-1.0)           # background pushed past -1 into the headroom
    out = itn(_images())[:, :, :4]
    assert torch.all(out == -1.0)
    grad, = torch.autograd.grad(out.sum(), itn.out.bias)
    assert grad.item() > 0.01 * out.numel()   # the clamp passes the gradient straight through


@pytest.mark.parametrize("shape", [(12, 10), (8, 10, 6)])
def test_coordinates_reach_the_stem_and_a_fresh_itn_stays_the_identity(shape):
    from istn_sk.nn._coordinates import coordinate_channels

    torch.manual_seed(0)
    itn = ImageTransformerNetwork(len(shape), 2, shape, nf=4, coordinates=True).eval()
    seen = []
    itn.stem[0].register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    x = torch.rand(3, 2, *shape) * 2 - 1
    np.testing.assert_allclose(itn(x).detach(), x, atol=1e-6)
    assert seen[0].shape[1] == 2 + len(shape)
    torch.testing.assert_close(seen[0][:, :2], x)
    torch.testing.assert_close(seen[0][:, 2:], coordinate_channels(x))


def test_coordinates_let_the_itn_depend_on_position():
    # a constant image: without coordinates a convolutional ITN gives the same output at
    # interior positions an even shift apart (its receptive field, about 20 pixels at
    # depth 1, away from the borders); with them the outputs there differ
    torch.manual_seed(0)
    x = torch.full((1, 1, 48, 48), 0.3)
    outputs = {}
    for coordinates in (False, True):
        itn = ImageTransformerNetwork(2, 1, (48, 48), nf=4, depth=1, coordinates=coordinates)
        torch.nn.init.normal_(itn.out.weight)
        with torch.no_grad():
            outputs[coordinates] = itn.eval()(x)[0, 0]
    for output in outputs.values():
        assert output.std() > 1e-3   # the random last layer changed the image
    torch.testing.assert_close(outputs[False][20, 20], outputs[False][28, 28])
    assert abs(outputs[True][20, 20] - outputs[True][28, 28]) > 1e-3
