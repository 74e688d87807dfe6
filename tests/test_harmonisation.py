"""Harmonisation measures: site removal, intensity distance, paired similarity, folding."""

import numpy as np
import pytest

from istn_sk import ISTNAdapter
from istn_sk._synthetic import make_shifted_shapes
from istn_sk.harmonisation import (
    folding_fraction,
    intensity_distance,
    jacobian_determinant,
    paired_similarity,
    site_classification_score,
    site_effect,
)


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(0).normal(0.0, 0.3, size=(40, 1, 8, 8, 8))


def test_a_visible_site_is_classified_and_an_invisible_one_is_chance(noise):
    same = site_classification_score(noise[:20], noise[20:], pool=2, n_permutations=19)
    assert 0.3 <= same["balanced_accuracy"] <= 0.7
    assert same["p_value"] > 0.05
    shifted = site_classification_score(noise[:20], noise[20:] + 0.2, pool=2, n_permutations=19)
    assert shifted["balanced_accuracy"] == 1.0
    assert shifted["p_value"] == pytest.approx(1 / 20)
    assert 0.3 <= shifted["permutation_mean"] <= 0.7


def test_intensity_distance_of_a_shift_is_the_shift(noise):
    assert intensity_distance(noise, noise) == 0.0
    assert intensity_distance(noise, noise + 0.25) == pytest.approx(0.25)


def test_intensity_distance_reads_only_masked_voxels(noise):
    changed = noise.copy()
    changed[..., :4] += 5.0
    mask = np.zeros(noise.shape[2:], bool)
    mask[..., 4:] = True
    assert intensity_distance(noise, changed, mask_a=mask, mask_b=mask) == 0.0
    assert intensity_distance(noise, changed) > 2.0
    with pytest.raises(ValueError, match="mask of images_b keeps no voxel"):
        intensity_distance(noise, changed, mask_b=np.zeros_like(mask))


@pytest.fixture(scope="module")
def volumes():
    """Six 16^3 noise volumes: big enough for SSIM's 11-voxel window."""
    return np.random.default_rng(2).normal(0.0, 0.3, size=(6, 1, 16, 16, 16))


def test_paired_similarity_of_identical_and_offset_images(volumes):
    same = paired_similarity(volumes[:3], volumes[:3])
    assert same["mae"].tolist() == [0.0] * 3
    assert np.isinf(same["psnr"]).all()
    np.testing.assert_allclose(same["ssim"], 1.0)
    offset = paired_similarity(volumes[:3], volumes[:3] + 0.1)
    np.testing.assert_allclose(offset["mae"], 0.1)
    np.testing.assert_allclose(offset["psnr"], 10 * np.log10(4 / 0.01))
    assert (offset["ssim"] < 1).all()
    perturbed = volumes[:3] + np.random.default_rng(1).normal(0.0, 0.05, size=(3, 1, 16, 16, 16))
    unrelated = paired_similarity(volumes[:3], volumes[3:6])["ssim"]
    assert (unrelated.abs() < 0.1).all()
    assert (paired_similarity(volumes[:3], perturbed)["ssim"] > 0.8).all()


def test_ssim_and_psnr_are_scikit_images():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(1)
    x = np.clip(rng.normal(0, 0.4, (3, 32, 32)), -1, 1)
    y = np.clip(x + rng.normal(0, 0.2, (3, 32, 32)), -1, 1)
    options = {"data_range": 2.0, "gaussian_weights": True, "sigma": 1.5,
               "use_sample_covariance": False}
    grey = paired_similarity(x[:1, None], y[:1, None]).iloc[0]
    assert grey["ssim"] == structural_similarity(x[0], y[0], **options)
    assert grey["psnr"] == peak_signal_noise_ratio(y[0], x[0], data_range=2.0)
    rgb = paired_similarity(x[None], y[None]).iloc[0]
    assert rgb["ssim"] == structural_similarity(x, y, channel_axis=0, **options)
    volume = paired_similarity(np.tile(x, (4, 1, 1))[None, None],
                               np.tile(y, (4, 1, 1))[None, None]).iloc[0]
    assert volume["ssim"] == structural_similarity(np.tile(x, (4, 1, 1)), np.tile(y, (4, 1, 1)),
                                                   **options)
    wide = paired_similarity(x[:1, None], y[:1, None], sigma=0.8).iloc[0]
    assert wide["ssim"] == structural_similarity(x[0], y[0], **{**options, "sigma": 0.8})


def test_a_mask_excludes_the_background():
    rng = np.random.default_rng(3)
    reference = np.zeros((2, 1, 32, 32))
    reference[:, :, 8:24, 8:24] = rng.uniform(-1, 1, (2, 1, 16, 16))
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    image = np.where(mask, reference, rng.uniform(-1, 1, reference.shape))   # background differs
    unmasked = paired_similarity(image, reference)
    assert (unmasked["ssim"] < 0.5).all() and (unmasked["mae"] > 0.3).all()
    masked = paired_similarity(image, reference, mask=mask)
    assert masked["mae"].tolist() == [0.0, 0.0]
    assert np.isinf(masked["psnr"]).all()
    np.testing.assert_allclose(masked["ssim"], 1.0, atol=1e-12)
    # inside the mask the scores are those of the masked voxels alone
    changed = reference + np.where(mask, 0.1, 0.0)
    inside = paired_similarity(changed, reference, mask=mask[None, None])
    np.testing.assert_allclose(inside["mae"], 0.1)
    np.testing.assert_allclose(inside["psnr"], 10 * np.log10(4 / 0.01))
    assert (inside["ssim"] < 1).all()


def test_a_full_mask_gives_the_unmasked_scores(volumes):
    noisy = volumes[:3] + np.random.default_rng(4).normal(0.0, 0.1, size=(3, 1, 16, 16, 16))
    plain = paired_similarity(noisy, volumes[:3])
    full = paired_similarity(noisy, volumes[:3], mask=np.ones((16, 16, 16), bool))
    np.testing.assert_allclose(full.to_numpy(), plain.to_numpy(), rtol=1e-12)


def test_jacobian_of_identity_scaling_and_fold():
    grid = np.stack(np.meshgrid(*(np.arange(6.0),) * 3, indexing="ij"))[None]
    np.testing.assert_allclose(jacobian_determinant(np.zeros_like(grid)), 1.0)
    np.testing.assert_allclose(jacobian_determinant(0.1 * grid), 1.1**3)
    folded = np.zeros_like(grid)
    folded[:, 0] = -2.0 * grid[:, 0]
    np.testing.assert_allclose(jacobian_determinant(folded), -1.0)
    assert folding_fraction(np.concatenate([0.1 * grid, folded])).tolist() == [0.0, 1.0]


def test_a_fitted_affine_istn_does_not_fold():
    X, _, sd = make_shifted_shapes(48, (16, 16), shift=2.0, random_state=0)
    adapter = ISTNAdapter(stn="affine", nf=4, max_epochs=2, random_state=0)
    displacement = adapter.fit(X, sample_domain=sd).explain(X[sd > 0])["displacement"]
    determinant = jacobian_determinant(displacement)
    assert determinant.shape == (int((sd > 0).sum()), 16, 16)
    assert folding_fraction(displacement).max() == 0.0
    # an affine map has one determinant per image
    per_image = determinant.reshape(len(determinant), -1)
    np.testing.assert_allclose(per_image, np.broadcast_to(per_image[:, :1], per_image.shape),
                               rtol=1e-4)


@pytest.mark.parametrize("call,match", [
    (lambda x: intensity_distance(x * np.nan, x), "images_a contains NaN"),
    (lambda x: paired_similarity(x[:2], x[:3]), "need as many rows, got 2 and 3"),
    (lambda x: paired_similarity(x, x[:, :, :4]), "one image shape"),
    (lambda x: site_classification_score(x[:3], x[3:6]), "at least cv=5 images per set"),
    (lambda x: paired_similarity(x[:2], x[:2]), r"window with sigma=1.5 is 11 voxels wide"),
    (lambda x: paired_similarity(x[:2], x[:2], sigma=0.5, mask=np.zeros((8, 8, 8), bool)),
     "the mask of pair 0 keeps no voxel"),
    (lambda x: jacobian_determinant(x), r"displacement must have shape \(n, D, \*spatial\)"),
])
def test_bad_inputs_are_named(noise, call, match):
    with pytest.raises(ValueError, match=match):
        call(noise)


def test_flattening_both_images_raises_ssim_but_not_the_correlation(volumes):
    noisy = volumes[:3] + np.random.default_rng(3).normal(0.0, 0.3, size=(3, 1, 16, 16, 16))
    raw = paired_similarity(volumes[:3], noisy)
    flat = paired_similarity(0.05 * volumes[:3], 0.05 * noisy)
    assert (flat["ssim"] > raw["ssim"] + 0.3).all()
    assert (flat["mae"] < raw["mae"] / 10).all()
    np.testing.assert_allclose(flat["correlation"], raw["correlation"], atol=1e-12)
    np.testing.assert_allclose(raw["correlation"], np.sqrt(0.5), atol=0.05)
    shifted = paired_similarity(3 * volumes[:3] + 1, 2 * noisy - 0.5)
    np.testing.assert_allclose(shifted["correlation"], raw["correlation"], atol=1e-12)
    constant = paired_similarity(np.zeros_like(volumes[:1]), volumes[:1])
    assert np.isnan(constant["correlation"]).all()


def test_site_effect_separates_a_smooth_field_from_voxel_noise_and_from_no_effect():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 30, 1, 16, 16, 16))
    null = site_effect(a, b)
    assert null["noise_rms"] == pytest.approx(np.sqrt(2 / 30))
    assert null["effect_rms"] == pytest.approx(null["noise_rms"], rel=0.05)
    assert null["excess_rms"] < 0.1 and null["smooth_share"] < 0.02
    gradient = 0.5 * np.linspace(-1, 1, 16)[:, None, None]
    smooth = site_effect(a + gradient, b)
    assert smooth["excess_rms"] > 0.25 and smooth["smooth_share"] > 0.5
    speckle = 0.5 * (rng.random((16, 16, 16)) > 0.5)
    rough = site_effect(a + speckle, b)
    assert rough["excess_rms"] > 0.25 and rough["smooth_share"] < 0.02
    # a mask keeps its voxels only: the gradient confined to one half is still smooth there
    half = np.zeros((16, 16, 16), bool)
    half[:8] = True
    assert site_effect(a + 3 * gradient * half, b, mask=half)["smooth_share"] > 0.5


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"images_b": np.zeros((1, 1, 8, 8))}, "at least 2 images"),
    ({"mask": np.ones((4, 4), bool)}, "spatial shape"),
    ({"mask": np.zeros((8, 8), bool)}, "more voxels"),
])
def test_site_effect_bad_inputs_are_named(kwargs, match):
    rng = np.random.default_rng(1)
    arguments = {"images_a": rng.normal(size=(4, 1, 8, 8)),
                 "images_b": rng.normal(size=(4, 1, 8, 8)), **kwargs}
    with pytest.raises(ValueError, match=match):
        site_effect(**arguments)
