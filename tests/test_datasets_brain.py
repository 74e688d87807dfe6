"""Simulated two-site brain MRI: anatomy, site model, files, loaders and plugin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("nilearn")

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from istn_sk.datasets import (
    SITE_NAMES,
    BrainSites,
    _brain,
    _brain_anatomy,
    _brain_scanner,
    load_brain_sites,
    make_brain_sites,
    simulate_brain_sites,
)

SHAPE = (24, 24, 24)
N_PER_SITE = 12


@pytest.fixture(scope="module")
def simulated():
    return simulate_brain_sites(n_per_site=N_PER_SITE, shape=SHAPE, random_state=0)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("brain") / "sites"
    manifest = make_brain_sites(
        out_dir, n_per_site=2, shape=SHAPE, random_state=3, travelling_subjects=1
    )
    return manifest


def test_arrays_shapes_ranges_and_labels(simulated):
    X, y_sex, age, site = simulated
    assert X.shape == (2 * N_PER_SITE, 1, *SHAPE) and X.dtype == np.float32
    assert y_sex.dtype == np.int64 and site.dtype == np.int64 and age.dtype == np.float64
    assert np.abs(X).max() < 1.0
    assert site.tolist() == [0] * N_PER_SITE + [1] * N_PER_SITE
    for index, (low, high) in enumerate(((30, 87), (48, 71))):
        assert np.bincount(y_sex[site == index]).tolist() == [N_PER_SITE // 2] * 2
        assert low <= age[site == index].min() and age[site == index].max() <= high
    assert np.ptp(age[site == 0]) > np.ptp(age[site == 1])


def test_images_are_standardised_inside_the_brain(simulated):
    X = simulated[0]
    for image in X[:, 0]:
        inside = image != 0
        assert 0.15 < inside.mean() < 0.5
        values = np.arctanh(image[inside].astype(np.float64))
        assert values.mean() == pytest.approx(0.0, abs=1e-3)
        assert values.std() == pytest.approx(1.0, abs=1e-3)
        faces = (image[0], image[-1], image[:, 0], image[:, -1], image[:, :, -1])
        assert all((face != 0).mean() < 0.02 for face in faces)


def test_same_seed_is_bit_identical(simulated):
    again = simulate_brain_sites(n_per_site=3, shape=SHAPE, random_state=0)
    rows = np.r_[0:3, N_PER_SITE : N_PER_SITE + 3]
    for first, second in zip(again, simulated, strict=True):
        np.testing.assert_array_equal(first, second[rows])
    other = simulate_brain_sites(n_per_site=3, shape=SHAPE, random_state=1)
    assert not np.array_equal(other[0], again[0])


def test_sites_are_separable_by_a_linear_classifier(simulated):
    X, _, _, site = simulated
    features = X.reshape(len(X), 8, 3, 8, 3, 8, 3).mean(axis=(2, 4, 6)).reshape(len(X), -1)
    accuracy = cross_val_score(LogisticRegression(C=0.1, max_iter=1000), features, site, cv=4)
    assert accuracy.mean() >= 0.9


def test_sites_differ_in_contrast_and_sequence():
    sites = _brain_scanner.SITES
    assert SITE_NAMES == ("camcan", "ukbb")
    assert (sites[0].tr, sites[0].te, sites[0].ti) == (2250.0, 2.99, 900.0)
    assert (sites[1].tr, sites[1].te, sites[1].ti) == (2000.0, 2.01, 880.0)
    for site in sites:
        wm, gm, csf = (_brain_scanner.tissue_signal(site, t) for t in ("wm", "gm", "csf"))
        assert wm > gm > csf >= 0
    ratios = [
        _brain_scanner.tissue_signal(s, "gm") / _brain_scanner.tissue_signal(s, "wm") for s in sites
    ]
    assert abs(ratios[0] - ratios[1]) > 0.05


def test_age_enlarges_ventricles_and_shrinks_grey_matter():
    template = _brain_anatomy.load_template(SHAPE)
    identity, no_shift = np.eye(3), np.zeros(3)
    volumes = {}
    for age in (30.0, 85.0):
        subject = _brain_anatomy.draw_subject(age, 0, np.random.default_rng(7))
        tissues, mask, _ = _brain_anatomy.tissue_maps(subject, template, identity, no_shift)
        volumes[age] = tissues[:, mask].sum(axis=1)
    gm_ratio = volumes[85.0][0] / volumes[30.0][0]
    assert 0.7 < gm_ratio < 0.9
    assert volumes[85.0][2] > 1.5 * volumes[30.0][2]


def test_males_have_larger_heads_on_average():
    rng = np.random.default_rng(0)
    scales = {
        sex: [_brain_anatomy.draw_subject(50.0, sex, rng).head_scale for _ in range(400)]
        for sex in (0, 1)
    }
    volume_ratio = (np.mean(scales[1]) / np.mean(scales[0])) ** 3
    assert volume_ratio == pytest.approx(1.10, abs=0.02)


def test_manifest_and_nifti_round_trip(written):
    import nibabel as nib

    table = pd.read_csv(written, sep="\t")
    assert list(table.columns) == ["id", "subject", "image", "mask", "age", "sex", "site"]
    assert len(table) == 2 * 2 + 2
    assert set(table["sex"]) <= {"F", "M"} and set(table["site"]) == set(SITE_NAMES)
    template = _brain_anatomy.load_template(SHAPE)
    first = nib.load(written.parent / table["image"][0])
    assert first.shape == SHAPE and first.get_data_dtype() == np.float32
    np.testing.assert_allclose(first.affine, template.affine)
    assert int(first.header["sform_code"]) == 4
    mask = np.asarray(nib.load(written.parent / table["mask"][0]).dataobj)
    image = np.asarray(first.dataobj)
    assert mask.dtype == np.uint8 and not image[mask == 0].any()
    from nilearn.datasets import load_mni152_brain_mask

    mni_mask = load_mni152_brain_mask(resolution=2)
    inside = np.argwhere(mni_mask.get_fdata() > 0.5)
    margin = _brain_anatomy.CROP_MARGIN
    low = np.maximum(inside.min(axis=0) - margin, 0)
    high = np.minimum(inside.max(axis=0) + 1 + margin, mni_mask.shape)
    linear = first.affine[:3, :3]
    np.testing.assert_allclose(linear, np.diag(np.diag(linear)))
    np.testing.assert_allclose(np.diag(linear) * np.asarray(SHAPE), 2.0 * (high - low))
    corner = first.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    np.testing.assert_allclose(corner, mni_mask.affine @ np.array([*(low - 0.5), 1.0]))
    X, y_sex, age, site = load_brain_sites(written.parent)
    expected = simulate_brain_sites(
        n_per_site=2, shape=SHAPE, random_state=3, travelling_subjects=1
    )
    for loaded, simulated in zip((X, y_sex, age, site), expected, strict=True):
        np.testing.assert_array_equal(loaded, simulated)


def test_travelling_subject_is_imaged_at_both_sites(written):
    table = pd.read_csv(written, sep="\t")
    travelling = table[table["subject"] == "travel-000"]
    assert travelling["site"].tolist() == list(SITE_NAMES)
    assert travelling["age"].nunique() == 1 and travelling["sex"].nunique() == 1
    assert 48 <= travelling["age"].iloc[0] <= 71
    X = load_brain_sites(written)[0]
    pair = X[travelling.index, 0]
    assert not np.array_equal(pair[0], pair[1])
    masks = pair != 0
    assert 2 * (masks[0] & masks[1]).sum() / masks.sum() > 0.85
    scans = [scan for scan in _brain.population(2, 1, 3) if scan.subject == "travel-000"]
    assert scans[0].anatomy_key == scans[1].anatomy_key
    assert scans[0].scan_key != scans[1].scan_key


def test_refuses_a_non_empty_folder(written, tmp_path):
    with pytest.raises(FileExistsError, match="not empty"):
        make_brain_sites(written.parent, n_per_site=1, shape=SHAPE)
    (tmp_path / "note.txt").write_text("keep")
    manifest = make_brain_sites(tmp_path, n_per_site=1, shape=SHAPE, overwrite=True)
    assert (tmp_path / "note.txt").exists() and len(pd.read_csv(manifest, sep="\t")) == 2


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: simulate_brain_sites(n_per_site=0), ValueError, "n_per_site"),
        (lambda p: simulate_brain_sites(1, shape=4), ValueError, "shape"),
        (lambda p: simulate_brain_sites(1, shape=(8, 8)), ValueError, "shape"),
        (lambda p: simulate_brain_sites(1, travelling_subjects=-1), ValueError, "travelling"),
        (lambda p: load_brain_sites(p), FileNotFoundError, "manifest"),
        (lambda p: BrainSites().load(source="mri"), ValueError, "unknown source site"),
        (lambda p: BrainSites().load(source="ukbb", target="ukbb"), ValueError, "differ"),
        (lambda p: BrainSites().load(source=["site2", "site2"]), ValueError, "differ"),
        (lambda p: BrainSites().load(source=["camcan", "site3"], n_per_site=1, shape=SHAPE,
                                     n_sites=3), ValueError, "'site3' has no images"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_provider_loads_source_then_target(written):
    X, y, sample_domain = BrainSites().load(manifest=written, source="ukbb", target="camcan")
    table = pd.read_csv(written, sep="\t")
    order = np.r_[
        np.flatnonzero(table["site"] == "ukbb"), np.flatnonzero(table["site"] == "camcan")
    ]
    assert sample_domain.tolist() == [1] * 3 + [-2] * 3
    np.testing.assert_array_equal(y, (table["sex"] == "M").to_numpy()[order].astype(int))
    assert X.shape == (6, 1, *SHAPE)
    X, _, sample_domain = BrainSites().load(n_per_site=1, shape=SHAPE)
    assert sample_domain.tolist() == [1, -2]


def test_provider_loads_several_source_sites_for_a_many_site_fit():
    X, y, sample_domain = BrainSites().load(source=["camcan", "site3", "site2"], target="ukbb",
                                            n_per_site=2, shape=SHAPE)
    # as many simulated sites as the highest one named needs; sources site by site in order
    assert sample_domain.tolist() == [1, 1, 2, 2, 3, 3, -4, -4]
    full, sex, _, site = simulate_brain_sites(2, shape=SHAPE, n_sites=4)
    order = np.concatenate([np.flatnonzero(site == k) for k in (0, 3, 2, 1)])
    np.testing.assert_array_equal(X, full[order])
    np.testing.assert_array_equal(y, sex[order])


def test_population_is_prefix_stable():
    small = _brain.population(3, 0, 5)
    large = _brain.population(5, 0, 5)
    assert small[:3] == large[:3]
