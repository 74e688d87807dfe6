"""What the discriminator is given: the images, and by default each voxel's coordinates."""

import numpy as np
import pytest
import torch

from istn_sk import ISTNAdapter, make_shifted_shapes
from istn_sk.nn import FullyConvolutionalNet
from istn_sk.nn._coordinates import WithCoordinates, coordinate_channels


@pytest.mark.parametrize("spatial", [(5, 7), (3, 4, 6)])
def test_coordinate_channels_run_from_minus_one_to_one_along_each_axis(spatial):
    like = torch.zeros(2, 1, *spatial, dtype=torch.float64)
    grid = coordinate_channels(like)
    assert grid.shape == (2, len(spatial), *spatial) and grid.dtype == torch.float64
    for axis, size in enumerate(spatial):
        profile = grid[0, axis].movedim(axis, 0).reshape(size, -1)
        np.testing.assert_allclose(profile[:, 0], np.linspace(-1, 1, size), atol=1e-12)
        assert torch.all(profile == profile[:, :1])          # constant across other axes
    assert torch.equal(grid[0], grid[1])


def test_the_discriminator_gets_coordinates_unless_told_not_to():
    X, _, sd = make_shifted_shapes(8, (12, 12), random_state=0)
    fitted = {flag: ISTNAdapter(nf=2, max_epochs=1, dis_coordinates=flag,
                                random_state=0).fit(X, sample_domain=sd)
              for flag in (True, False)}
    with_coordinates = fitted[True].net_.discriminator_["target"]
    assert isinstance(with_coordinates, WithCoordinates)
    assert with_coordinates.network.encoder[0][0].in_channels == 1 + 2
    plain = fitted[False].net_.discriminator_["target"]
    assert isinstance(plain, FullyConvolutionalNet)
    assert plain.encoder[0][0].in_channels == 1


@pytest.mark.parametrize(("stn", "expected"), [("affine", True), ("bspline", True),
                                               (None, False)])
def test_by_default_only_an_adapter_with_an_stn_gives_coordinates(stn, expected):
    X, _, sd = make_shifted_shapes(8, (12, 12), random_state=0)
    adapter = ISTNAdapter(nf=2, max_epochs=1, stn=stn, random_state=0).fit(
        X, sample_domain=sd)
    assert adapter.dis_coordinates == "auto"
    assert isinstance(adapter.net_.discriminator_["target"], WithCoordinates) is expected


def test_a_bad_coordinates_flag_is_named():
    X, _, sd = make_shifted_shapes(8, (12, 12), random_state=0)
    with pytest.raises(ValueError, match="dis_coordinates must be 'auto', True or False"):
        ISTNAdapter(nf=2, max_epochs=1, dis_coordinates="yes").fit(X, sample_domain=sd)

