"""Property-based tests (hypothesis) for the warps and the image layout rules."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from istn_sk._validation import image_layout
from istn_sk.nn import Warp, affine_displacement, bspline_displacement, control_grid_shape

shapes = st.one_of(st.tuples(st.integers(2, 9), st.integers(2, 9)),
                   st.tuples(st.integers(2, 5), st.integers(2, 5), st.integers(2, 5)))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, channels=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_identity_parameters_give_the_input_back(shape, channels, seed):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(2, channels, *shape, generator=generator)
    eye = torch.eye(len(shape)).expand(2, -1, -1)
    field = affine_displacement(eye, torch.zeros(2, len(shape)), shape)
    assert torch.equal(field, torch.zeros_like(field))
    assert torch.allclose(Warp()(image, field), image, atol=1e-5, rtol=0)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, data=st.data())
def test_a_whole_voxel_translation_then_its_inverse_restores_the_interior(shape, data):
    steps = [data.draw(st.integers(-(size // 2), size // 2)) for size in shape]
    image = torch.rand(1, 1, *shape)
    eye = torch.eye(len(shape)).unsqueeze(0)
    forward = affine_displacement(eye, torch.tensor([steps], dtype=torch.float32), shape)
    backward = affine_displacement(eye, -torch.tensor([steps], dtype=torch.float32), shape)
    assert torch.allclose(forward + backward, torch.zeros_like(forward), atol=1e-6)
    restored = Warp(padding_mode="zeros")(Warp(padding_mode="zeros")(image, forward), backward)
    # out(p) = image(p + s), then restored(p) = out(p - s): valid where p - s + s stays inside
    interior = tuple(slice(max(0, s), size + min(0, s)) for s, size in zip(steps, shape,
                                                                          strict=True))
    assert torch.allclose(restored[(0, 0, *interior)], image[(0, 0, *interior)], atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, data=st.data(), value=st.floats(-3, 3))
def test_constant_control_points_give_a_constant_field(shape, data, value):
    spacing = tuple(data.draw(st.integers(1, size)) for size in shape)
    control = torch.full((1, len(shape), *control_grid_shape(shape, spacing)), value,
                         dtype=torch.float64)
    field = bspline_displacement(control, spacing, shape)
    assert torch.allclose(field, torch.full_like(field, value), atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 4), channels=st.integers(1, 3), shape=shapes,
       flattened=st.booleans())
def test_image_layout_round_trips_the_user_array(n, channels, shape, flattened):
    images = np.arange(n * channels * int(np.prod(shape)), dtype=np.float32).reshape(
        n, channels, *shape)
    X = images.reshape(n, -1) if flattened else images
    layout = image_layout(X, image_shape=shape)
    assert (layout.channels, layout.spatial) == (channels, shape)
    np.testing.assert_array_equal(layout.to_images(X), images)
    np.testing.assert_array_equal(layout.to_rows(layout.to_images(X)), X)
