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
