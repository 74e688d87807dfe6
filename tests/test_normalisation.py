"""Intensity normalisation baselines and ComBat: known answers, refusals, sklearn checks, brains.

The reference packages (``intensity-normalization``, ``neuroCombat``) are
optional: the tests comparing with them skip when they are not installed.
"""

import numpy as np
import pytest
from scipy import sparse
from sklearn.utils.estimator_checks import parametrize_with_checks

from istn_sk.datasets import simulate_brain_sites
from istn_sk.harmonisation import intensity_distance
from istn_sk.normalisation import (
    ComBatHarmoniser,
    NyulNormaliser,
    WhiteStripeNormaliser,
    ZScoreNormaliser,
)

TISSUES = {"csf": (0.2, 0.15), "gm": (0.5, 0.5), "wm": (0.9, 0.35)}  # intensity, fraction
NOISE = 0.03


@pytest.fixture(scope="module")
def tissue_volume():
    """One 3-tissue T1-like volume (CSF < GM < WM, GM the largest) inside a ball mask."""
    rng = np.random.default_rng(0)
    grid = np.indices((24, 24, 24)) - 11.5
    mask = (grid ** 2).sum(axis=0) < 11 ** 2
    labels = rng.choice(3, size=mask.shape, p=[f for _, f in TISSUES.values()])
    means = np.array([m for m, _ in TISSUES.values()])
    image = np.where(mask, means[labels] + rng.normal(0, NOISE, mask.shape), 0.0)
    return image[None, None], mask[None, None]


@pytest.fixture(scope="module")
def images():
    """Six 2-channel 2D images with random per-image gains and offsets, background 0."""
    rng = np.random.default_rng(1)
    X = rng.gamma(3.0, 1.0, (6, 2, 20, 20)) * rng.uniform(0.5, 2, (6, 1, 1, 1)) + 1.0
    mask = np.zeros((6, 1, 20, 20), bool)
    mask[:, :, 3:17, 2:18] = True
    return np.where(mask, X, 0.0), mask


def test_zscore_gives_mean_0_sd_1_inside_the_mask_and_keeps_the_background(images):
    X, mask = images
    squashed = np.tanh(X / 5)
    out = ZScoreNormaliser().fit_transform(squashed, mask=mask)
    z = np.arctanh(out)
    for i, c in np.ndindex(2, 2):
        inside = z[i, c][mask[i, 0]]
        assert inside.mean() == pytest.approx(0, abs=1e-9)
        assert inside.std() == pytest.approx(1, abs=1e-9)
    assert np.array_equal(out[~np.broadcast_to(mask, X.shape)],
                          squashed[~np.broadcast_to(mask, X.shape)])
    raw = ZScoreNormaliser(squash=None).fit_transform(X)  # foreground: X != 0
    full = np.broadcast_to(mask, X.shape)
    assert raw[full].mean() == pytest.approx(0, abs=1e-9)
    assert np.all(raw[~full] == 0)


def test_whitestripe_finds_the_white_matter_peak_and_maps_the_stripe_mean(tissue_volume):
    image, mask = tissue_volume
    values = image[mask]
    ws = WhiteStripeNormaliser(squash=None)
    assert ws.white_matter_mode(values) == pytest.approx(0.9, abs=0.01)
    mean, sd = ws.stripe(values)
    assert mean == pytest.approx(0.9, abs=NOISE / 3)
    assert sd < NOISE  # the stripe is a narrow slice of the WM peak
    out = ws.fit_transform(image, mask=mask)
    centre = np.mean(values < ws.white_matter_mode(values))
    low, high = np.quantile(values, [centre - 0.05, centre + 0.05])
    stripe = (image >= low) & (image <= high) & mask
    assert out[stripe].mean() == pytest.approx(ws.stripe_value, abs=1e-9)
    assert np.all(out[~mask] == 0)
    # T2 / FLAIR take the largest mode: grey matter here
    assert WhiteStripeNormaliser(contrast="T2").white_matter_mode(values) == pytest.approx(
        0.5, abs=0.01)


def test_whitestripe_agrees_with_intensity_normalization(tissue_volume):
    package = pytest.importorskip("intensity_normalization")
    image, mask = tissue_volume
    reference = package.WhiteStripeNormalizer(width=0.05)
    reference.fit(package.create_image(image[0, 0]),
                  package.create_image(mask[0, 0].astype(np.float32)))
    mean, sd = WhiteStripeNormaliser().stripe(image[mask])
    assert mean == pytest.approx(reference.mean, abs=NOISE / 2)  # measured: 0.906 vs 0.893
    assert sd == pytest.approx(reference.std, rel=0.2)  # measured: 0.0059 vs 0.0066


def test_nyul_maps_landmarks_onto_the_standard_scale_monotonically(images):
    X, mask = images
    nyul = NyulNormaliser(squash=None).fit(X[:4], mask=mask[:4])
    firsts = [np.percentile(x[:, m[0]], 1, axis=1) for x, m in zip(X[:4], mask[:4], strict=True)]
    assert nyul.standard_scale_[0] == pytest.approx(np.mean(firsts))
    out = nyul.transform(X, mask=mask)
    for i, c in np.ndindex(6, 2):
        inside = X[i, c][mask[i, 0]]
        marks = nyul.landmarks(inside)
        assert np.allclose(nyul._piecewise(marks, marks), nyul.standard_scale_, atol=1e-12)
        order = np.argsort(inside)
        assert np.all(np.diff(out[i, c][mask[i, 0]][order]) >= -1e-12)
        # the output's landmarks are the standard scale (up to percentile interpolation)
        assert np.allclose(nyul.landmarks(out[i, c][mask[i, 0]]), nyul.standard_scale_,
                           atol=2e-3 * np.ptp(nyul.standard_scale_))
    fixed = NyulNormaliser(standard_range=(-1, 1), squash=None).fit(X, mask=mask)
    assert fixed.standard_scale_[[0, -1]] == pytest.approx([-1, 1])


def test_nyul_agrees_with_intensity_normalization(images):
    package = pytest.importorskip("intensity_normalization")
    X, mask = images
    ours = NyulNormaliser(standard_range=(1, 100), squash=None).fit(X[:, :1], mask=mask)
    reference = package.NyulNormalizer(output_min_value=1, output_max_value=100)
    reference.fit_population([package.create_image(x) for x in X[:, 0]],
                             [package.create_image(m.astype(np.float32)) for m in mask[:, 0]])
    assert np.allclose(ours.standard_scale_, reference.standard_scale, rtol=1e-5)
    out = ours.transform(X[:, :1], mask=mask)
    for i in range(len(X)):
        theirs = reference.transform(package.create_image(X[i, 0]),
                                     package.create_image(mask[i, 0].astype(np.float32)))
        assert np.allclose(out[i, 0][mask[i, 0]], theirs.get_data()[mask[i, 0]], rtol=1e-4)


@pytest.fixture(scope="module")
def site_features():
    """Three sites of 40 rows x 50 features with additive and multiplicative site effects."""
    rng = np.random.default_rng(0)
    sites = np.repeat(["a", "b", "c"], 40)
    age = rng.uniform(20, 80, len(sites))
    sex = rng.integers(0, 2, len(sites)).astype(float)
    shift = {"a": 0.0, "b": 3.0, "c": -2.0}
    scale = {"a": 1.0, "b": 2.0, "c": 0.6}
    X = rng.normal(size=(len(sites), 50))
    X = X * np.vectorize(scale.get)(sites)[:, None] + np.vectorize(shift.get)(sites)[:, None]
    X = X + 0.05 * age[:, None] + 1.0 * sex[:, None]
    return X, sites, np.c_[age, sex]


def _site_mean_gap(X, sites, covariates):
    """Largest difference of site means after removing the covariates' linear effect."""
    design = np.c_[np.ones(len(X)), covariates]
    residual = X - design @ np.linalg.lstsq(design, X, rcond=None)[0]
    means = np.array([residual[sites == s].mean(axis=0) for s in np.unique(sites)])
    return np.abs(means[:, None] - means[None]).max()


def test_combat_removes_site_effects_and_keeps_covariates(site_features):
    X, sites, covariates = site_features
    out = ComBatHarmoniser().fit_transform(X, sites=sites, covariates=covariates)
    assert _site_mean_gap(X, sites, covariates) > 5 * _site_mean_gap(out, sites, covariates)
    sds = [out[sites == s].std(axis=0).mean() for s in "abc"]
    assert max(sds) / min(sds) < 1.2  # scales: 0.6 to 2 before
    design = np.c_[np.ones(len(X)), covariates]
    slopes = np.linalg.lstsq(design, out, rcond=None)[0][1:].mean(axis=1)
    assert slopes == pytest.approx([0.05, 1.0], rel=0.1)
    reference = ComBatHarmoniser(reference_site="a").fit(X, sites=sites, covariates=covariates)
    kept = reference.transform(X[sites == "a"], sites=sites[sites == "a"],
                               covariates=covariates[sites == "a"])
    assert np.allclose(kept, X[sites == "a"])


@pytest.mark.parametrize("options", [{}, {"empirical_bayes": False}, {"mean_only": True},
                                     {"reference_site": "b"}])
def test_combat_agrees_with_neurocombat(site_features, options, monkeypatch):
    neurocombat = pytest.importorskip("neuroCombat")
    import pandas as pd

    monkeypatch.setattr(np, "int", int, raising=False)  # neuroCombat 0.2.12 uses np.int
    X, sites, covariates = site_features
    table = pd.DataFrame({"site": sites, "age": covariates[:, 0], "sex": covariates[:, 1]})
    theirs = neurocombat.neuroCombat(
        dat=X.T, covars=table, batch_col="site", continuous_cols=["age"],
        categorical_cols=["sex"], eb=options.get("empirical_bayes", True),
        mean_only=options.get("mean_only", False), ref_batch=options.get("reference_site"),
    )["data"].T
    ours = ComBatHarmoniser(**options).fit_transform(X, sites=sites, covariates=covariates)
    assert np.abs(ours - theirs).max() < 1e-4 * np.abs(X).max()


@pytest.mark.parametrize("estimator", [ZScoreNormaliser(), WhiteStripeNormaliser(),
                                       NyulNormaliser()], ids=type)
@pytest.mark.parametrize("X, mask, match", [
    (np.zeros((3, 8, 8)), None, "must be images of shape"),
    (np.ones((3, 1, 8, 8)), np.ones((3, 1, 7, 8), bool), "does not broadcast"),
    (np.ones((3, 1, 8, 8)), np.ones((8, 8)), "must be a bool array"),
    (np.full((3, 1, 8, 8), np.nan), None, "NaN"),
])
def test_image_normalisers_refuse_bad_input(estimator, X, mask, match):
    with pytest.raises(ValueError, match=match):
        estimator.fit(X, mask=mask)


@pytest.mark.parametrize("call, match", [
    (lambda X, s: ComBatHarmoniser().fit(X[..., None], sites=s), "dim 3"),
    (lambda X, s: ComBatHarmoniser().fit(np.where(X > 1, np.nan, X), sites=s), "NaN"),
    (lambda X, s: ComBatHarmoniser().fit(X, sites=s[1:]), "one entry per row"),
    (lambda X, s: ComBatHarmoniser().fit(X, sites=None), "needs sites="),
    (lambda X, s: ComBatHarmoniser().fit(X, sites=np.zeros(len(X))), "at least two sites"),
    (lambda X, s: ComBatHarmoniser().fit(X, sites=s).transform(X, sites=np.full(len(X), "z")),
     "not seen in fit"),
    (lambda X, s: ComBatHarmoniser(reference_site="q").fit(X, sites=s), "reference_site"),
])
def test_combat_refuses_bad_input(site_features, call, match):
    X, sites, _ = site_features
    with pytest.raises(ValueError, match=match):
        call(X, sites)


# ---------------------------------------------------------------- scikit-learn's checks

class RowsAsImages:
    """TEST ONLY: read scikit-learn's 2-D check arrays ``(n, k)`` as images ``(n, 1, 1, k)``."""

    def fit(self, X, y=None):
        return super().fit(_as_images(X), y)

    def transform(self, X):
        out = super().transform(_as_images(X))
        return out.reshape(len(out), -1)

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X)


def _as_images(X):
    if sparse.issparse(X):
        return X  # refused by the estimator, as the check expects
    X = np.asarray(X)
    return X.reshape(X.shape[0], 1, 1, X.shape[1]) if X.ndim == 2 else X


class RowsZScore(RowsAsImages, ZScoreNormaliser):
    """TEST ONLY."""


class RowsWhiteStripe(RowsAsImages, WhiteStripeNormaliser):
    """TEST ONLY."""


class RowsNyul(RowsAsImages, NyulNormaliser):
    """TEST ONLY."""


class SitesFromRows(ComBatHarmoniser):
    """TEST ONLY: the site of a row is a function of its values (so it survives reordering)."""

    def fit(self, X, y=None):
        return super().fit(X, y, sites=_sites(X))

    def transform(self, X):
        return super().transform(X, sites=_sites(X))

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X)


def _sites(X):
    if sparse.issparse(X):
        return np.arange(X.shape[0]) % 2  # X is refused by the estimator
    X = np.asarray(X, dtype=float)
    return (np.floor(np.abs(X).sum(axis=1) * 1001) % 2).astype(int) if X.ndim == 2 else None


IMAGE_FAILURES = {
    "check_n_features_in_after_fitting":
        "images are (n, C, *spatial): n_features_in_ counts channels, and any spatial size is "
        "accepted, so fewer columns are not refused",
    "check_transformer_general":
        "it transforms fewer columns than fitted and expects an error; any image size is accepted",
    "check_transformer_general(readonly_memmap=True)":
        "it transforms fewer columns than fitted and expects an error; any image size is accepted",
    "check_n_features_in":
        "images are (n, C, *spatial): n_features_in_ counts channels, not the check's columns",
    "check_estimators_empty_data_messages":
        "its (n, 0) array becomes images without voxels, refused with \"X's images have no "
        "voxels\", not the 2-D message the check wants",
}
COMBAT_FAILURES = {
    "check_fit2d_1sample":
        "one row cannot make two sites; the error says 'at least two sites of at least two rows'",
}


@parametrize_with_checks(
    [RowsZScore(), RowsWhiteStripe(), RowsNyul(), SitesFromRows()],
    expected_failed_checks=lambda estimator: (
        COMBAT_FAILURES if isinstance(estimator, SitesFromRows) else IMAGE_FAILURES),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- simulated brain sites

@pytest.fixture(scope="module")
def brain_sites():
    X, _, _, site = simulate_brain_sites(n_per_site=20, shape=32, random_state=0)
    return X, X != 0, site


def _site_distance(X, mask, site):
    a, b = site == 0, site == 1
    return intensity_distance(X[a], X[b], mask_a=mask[a], mask_b=mask[b])


def test_intensity_distance_between_brain_sites_after_each_baseline(brain_sites):
    """Measured (seed 0, 20 per site, 32^3): none 0.0280; z-score 0.0280 (the sites are
    already z-scored per image); WhiteStripe tau 0.05: 0.104, tau 0.1: 0.0175; Nyúl fitted
    on ukbb, applied to camcan: 0.0027."""
    X, mask, site = brain_sites
    before = _site_distance(X, mask, site)
    assert before == pytest.approx(0.028, abs=0.002)
    zscored = ZScoreNormaliser().fit_transform(X, mask=mask)
    assert _site_distance(zscored, mask, site) == pytest.approx(before, rel=1e-3)
    assert np.all(zscored[~mask] == 0)
    for tau, low, high in ((0.05, 3.0, 4.5), (0.1, 0.5, 0.75)):
        ratio = _site_distance(WhiteStripeNormaliser(tau=tau).fit_transform(X, mask=mask),
                               mask, site) / before
        assert low < ratio < high
    nyul = NyulNormaliser().fit(X[site == 1], mask=mask[site == 1])
    mapped = X.copy()
    mapped[site == 0] = nyul.transform(X[site == 0], mask=mask[site == 0])
    assert _site_distance(mapped, mask, site) < 0.15 * before
