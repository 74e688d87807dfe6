"""Warps and STNs: identity at initialisation, exact shifts, caps and gradients."""

import math

import pytest
import torch

from istn_sk.nn import (
    AffineSTN,
    BSplineSTN,
    Warp,
    affine_displacement,
    bspline_displacement,
    control_grid_shape,
    cubic_bspline_kernel,
)

SHAPES = [(11, 13), (5, 6, 7)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("shape", SHAPES)
def test_zero_displacement_returns_the_input(shape):
    image = torch.rand(2, 3, *shape)
    out = Warp()(image, torch.zeros(2, len(shape), *shape))
    assert torch.allclose(out, image, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_integer_displacement_shifts_by_whole_voxels(shape):
    image = torch.rand(1, 1, *shape)
    displacement = torch.zeros(1, len(shape), *shape)
    displacement[:, 0] = 2.0
    out = Warp()(image, displacement)
    assert torch.allclose(out[:, :, :-2], image[:, :, 2:], atol=1e-6, rtol=0)
    # "border" padding repeats the last slice beyond the edge
    assert torch.allclose(out[:, :, -1], image[:, :, -1], atol=1e-6, rtol=0)


def test_warp_rejects_a_field_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"expected \(n, 2, 8, 9\)"):
        Warp()(torch.rand(1, 1, 8, 9), torch.zeros(1, 2, 8, 8))


@pytest.mark.parametrize("shape", [(4, 5), (3, 4, 3)])
def test_warp_gradients_match_finite_differences_for_image_and_field(shape):
    image = torch.rand(1, 2, *shape, dtype=torch.double, requires_grad=True)
    # interior, non-integer positions: linear interpolation is smooth there
    field = (0.1 + 0.3 * torch.rand(1, len(shape), *shape, dtype=torch.double))
    field.requires_grad_(True)
    warp = Warp(padding_mode="zeros")
    assert torch.autograd.gradcheck(lambda i, f: warp(i, f), (image, field))


@pytest.mark.parametrize("shape", SHAPES)
def test_affine_stn_is_the_identity_at_initialisation(shape):
    stn = AffineSTN(len(shape), 2, shape, nf=4).eval()
    image = torch.rand(3, 2, *shape)
    field = stn(image)
    assert torch.count_nonzero(field) == 0 or field.abs().max() < 1e-5
    assert torch.allclose(Warp()(image, field), image, atol=1e-5, rtol=0)
    params = stn.parameters_of(image)
    assert torch.equal(params["scale"], torch.ones_like(params["scale"]))
    assert torch.equal(params["rotation"], torch.zeros_like(params["rotation"]))


def test_affine_displacement_of_a_quarter_turn_rotates_a_square_image():
    image = torch.arange(25.0).view(1, 1, 5, 5)
    matrix = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]])
    out = Warp()(image, affine_displacement(matrix, torch.zeros(1, 2), (5, 5)))
    # the field pulls: out[q] = image[M q], so M turning (i, j) to (-j, i) turns the picture back
    assert torch.allclose(out[0, 0], torch.rot90(image[0, 0], -1, dims=(0, 1)), atol=1e-4)


def test_affine_translation_then_its_inverse_is_the_identity():
    shape = (9, 10, 11)
    eye = torch.eye(3).unsqueeze(0)
    forward = affine_displacement(eye, torch.tensor([[1.5, -2.0, 0.5]]), shape)
    backward = affine_displacement(eye, torch.tensor([[-1.5, 2.0, -0.5]]), shape)
    assert torch.allclose(forward + backward, torch.zeros_like(forward), atol=1e-6)
    assert torch.allclose(forward[0, 1], torch.full(shape, -2.0))


@pytest.mark.parametrize("spacing", [1, 2, 3, 5])
def test_bspline_kernel_is_a_partition_of_unity(spacing):
    kernel = cubic_bspline_kernel(spacing, dtype=torch.float64)
    assert kernel.shape == (4 * spacing - 1,)
    phase_sums = [kernel[phase::spacing].sum().item() for phase in range(spacing)]
    assert phase_sums == pytest.approx([1.0] * spacing, abs=1e-12)


@pytest.mark.parametrize("shape,spacing", [((12, 10), (4, 3)), ((7, 8, 6), (3, 3, 2))])
def test_constant_control_points_give_a_constant_field(shape, spacing):
    grid = control_grid_shape(shape, spacing)
    control = torch.full((1, len(shape), *grid), 1.25)
    field = bspline_displacement(control, spacing, shape)
    assert field.shape == (1, len(shape), *shape)
    assert torch.allclose(field, torch.full_like(field, 1.25), atol=1e-6)


@pytest.mark.parametrize("shape,spacing", [((6, 5), (2, 3)), ((4, 5, 4), (2, 2, 3))])
def test_bspline_field_gradients_match_finite_differences(shape, spacing):
    grid = control_grid_shape(shape, spacing)
    control = torch.randn(1, len(shape), *grid, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: bspline_displacement(c, spacing, shape), (control,))


@pytest.mark.parametrize("shape", SHAPES)
def test_bspline_stn_is_the_identity_at_initialisation(shape):
    stn = BSplineSTN(len(shape), 1, shape, cp_spacing=(2,) * len(shape), nf=4).eval()
    image = torch.rand(2, 1, *shape)
    field = stn(image)
    assert torch.equal(field, torch.zeros_like(field))
    assert torch.allclose(Warp()(image, field), image, atol=1e-6, rtol=0)


def test_bspline_displacement_never_exceeds_its_cap():
    shape = (16, 20)
    stn = BSplineSTN(2, 1, shape, cp_spacing=(4, 4), max_displacement=0.1, nf=4)
    torch.nn.init.normal_(stn.head.weight, std=50.0)
    field = stn(torch.rand(4, 1, *shape))
    largest = field.abs().amax(dim=(0, 2, 3))
    assert torch.all(largest <= torch.tensor([1.6, 2.0]) + 1e-5)
    assert field.abs().max() > 0.5


def test_gradients_reach_the_stn_through_the_warp():
    shape = (12, 12)
    stn = AffineSTN(2, 1, shape, nf=4)
    image = torch.rand(2, 1, *shape)
    out = Warp()(image, stn(image))
    (out - image.roll(1, dims=2)).abs().mean().backward()
    assert stn.head.weight.grad.abs().sum() > 0
    assert math.isfinite(stn.head.weight.grad.abs().sum().item())
