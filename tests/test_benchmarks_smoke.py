"""Smoke test of the reproduction harness (examples/benchmarks) and its histogram matching."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from skimage import exposure

BENCHMARKS = Path(__file__).resolve().parents[1] / "examples" / "benchmarks"


def _benchmark(name: str):
    """The benchmark script ``examples/benchmarks/<name>.py``, imported as a module."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _baselines():
    return _benchmark("baselines")


def test_histogram_matching_gives_target_quantiles():
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 1.0, size=(3, 1, 32, 32)).astype(np.float32)
    target = rng.uniform(-1.0, 1.0, size=(50, 1, 32, 32)).astype(np.float32)
    matched = _baselines().match_histograms(source, target)
    assert matched.shape == source.shape and matched.dtype == source.dtype
    levels = np.linspace(0.05, 0.95, 19)
    reference = np.quantile(target, levels)
    for image, original in zip(matched, source, strict=True):
        np.testing.assert_allclose(np.quantile(image, levels), reference, atol=0.01)
        order = np.argsort(original.ravel())
        assert np.all(np.diff(image.ravel()[order]) >= 0)
        assert image.max() == target.max()   # cumulative levels: the top voxel reaches 1


def test_histogram_matching_is_scikit_images_per_image_onto_pooled_targets():
    rng = np.random.default_rng(1)
    source = rng.gamma(2.0, size=(2, 1, 8, 8, 8))
    target = rng.normal(size=(5, 1, 8, 8, 8))
    matched = _baselines().match_histograms(source, target)
    for image, got in zip(source, matched, strict=True):
        expected = exposure.match_histograms(image, target.reshape(1, 1, 1, -1))
        np.testing.assert_array_equal(got, expected)


def test_histogram_matching_maps_ties_to_one_value():
    source = np.array([[[-1.0, -1.0, 0.5, 1.0]]], dtype=np.float32)
    target = np.array([[-1.0, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0]])
    matched = _baselines().match_histograms(source, target)
    # source levels 2/4, 3/4 and 4/4 take the target's values at those cumulative levels
    # (target levels 1/8 ... 6/8 for -1 ... 0.8, and 8/8 for the tied 1.0)
    np.testing.assert_allclose(matched[0, 0], [0.4, 0.4, 0.8, 1.0], rtol=1e-6)


def test_reproduce_quick_writes_tables_and_figures(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "ISTN_SK_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "reproduce.py"), "--quick", "--seeds", "0", "1",
         "--targets", "B", "D", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    morpho = pd.read_csv(out / "morpho-mnist.csv")
    methods = ["no-DA", "ITN only", "affine only", "B-spline (4) only", "B-spline (8) only",
               "ITN + affine", "ITN + B-spline (4)", "ITN + B-spline (8)", "histogram matching",
               "DANN", "DeepCORAL", "oracle"]
    assert sorted(set(morpho["target"])) == ["B", "D"]
    for target in "BD":
        assert morpho.loc[morpho["target"] == target, "method"].tolist() == methods
    for column in ("seeds", "scratch", "scratch_sd", "fine_tuned", "fine_tuned_sd",
                   "Δ_scratch", "Δ_fine_tuned", "recovered_scratch", "recovered_fine_tuned"):
        assert column in morpho.columns
    seeds = morpho.set_index(["target", "method"])["seeds"]
    assert seeds["B", "no-DA"] == 2 and seeds["B", "ITN + B-spline (8)"] == 2
    assert seeds["B", "ITN + affine"] == 1
    assert morpho["scratch"].between(0, 1).all()
    no_da = morpho[morpho["method"] == "no-DA"]
    assert (no_da["Δ_scratch"] == 0).all()
    assert no_da["fine_tuned"].between(0, 1).all(), "the fine-tuned-on-source control is missing"
    assert re.search(r"^\| target +\| method +\|", (out / "morpho-mnist.md").read_text(), re.M)

    schemes = pd.read_csv(out / "schemes.csv")
    assert schemes["method"].tolist() == [
        "no-DA", "sequential, unidirectional", "simultaneous, unidirectional",
        "sequential, cyclegan", "simultaneous, cyclegan", "oracle"]
    assert (schemes["seeds"] == 2).all()
    assert schemes.loc[schemes["method"].str.startswith("simultaneous"), "fine_tuned"].isna().all()
    assert len(pd.read_csv(out / "schemes-runs.csv")) == 2 * 6

    brain = pd.read_csv(out / "brain.csv")
    assert set(brain["task"]) == {"sex", "age"}
    assert set(brain["direction"]) == {"camcan->ukbb", "ukbb->camcan"}
    assert len(brain) == 2 * 2 * (3 + 2 * 2)
    adapted = brain[brain["model"].str.startswith("T_S2T")]
    assert sorted(set(adapted["istn"])) == ["cyclegan", "unidirectional"]
    assert brain.loc[~brain["model"].str.startswith("T_S2T"), "istn"].isna().all()
    assert brain.loc[brain["task"] == "sex", "accuracy"].notna().all()
    assert brain.loc[brain["task"] == "age", "mae"].notna().all()
    selection = pd.read_csv(out / "selection-runs.csv")
    runs = sorted(zip(selection["seed"], selection["istn epochs"], strict=True))
    assert runs == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert selection["domain confusion"].between(0, 1).all()
    picked = pd.read_csv(out / "selection.csv")
    assert picked["seed"].tolist() == [0, 1]
    assert (picked["picked accuracy"] <= picked["best accuracy"]).all()

    harmonisation = pd.read_csv(out / "harmonisation.csv")
    assert harmonisation["istn"].tolist() == ["none (S)", "unidirectional", "cyclegan"]
    assert harmonisation["balanced_accuracy"].between(0, 1).all()
    assert harmonisation["ssim"].between(-1, 1).all()
    assert harmonisation["folding fraction"].isna().tolist() == [True, False, False]
    for name in ("schemes.md", "brain.md", "harmonisation.md", "selection.md",
                 "morpho-A2B-itn-affine.png",
                 "morpho-A2D-itn-b-spline-8.png", "brain-camcan2ukbb-unidirectional.png",
                 "brain-ukbb2camcan-unidirectional.png", "brain-camcan2ukbb-cyclegan.png",
                 "brain-ukbb2camcan-cyclegan.png"):
        assert (out / name).stat().st_size > 0


def test_shift_suite_writes_one_row_per_run_and_per_epoch(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "ISTN_SK_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    setting = '{"alongside": true, "max_epochs": 2, "nf": 2}'
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "suite.py"), str(out), "--name", "smoke",
         "--setting", setting, "--targets", "B", "D", "--seeds", "0", "--n-train", "12",
         "--n-test", "9", "--epoch-scores"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = pd.read_csv(out / "suite.csv")
    assert list(runs.target) == ["B", "D"] and set(runs.name) == {"smoke"}
    scores = runs[["no_da", "oracle", "alongside", "scratch", "handover", "oracle_on_s2t",
                   "paired_ssim", "unmapped_ssim"]]
    assert ((scores >= 0) & (scores <= 1)).all().all()
    assert ((runs.paired_mae > 0) & (runs.unmapped_mae > 0)).all()
    epochs = pd.read_csv(out / "epochs.csv")
    assert len(epochs) == 4 and set(epochs.epoch) == {1, 2}
    accuracies = epochs[["target_acc", "mapped_source_acc", "reverse_validation",
                         "domain_confusion"]]
    assert ((accuracies >= 0) & (accuracies <= 1)).all().all()
    assert epochs[["neg_entropy", "snd", "dev", "iwv", "dis_gap"]].notna().all().all()


def test_shift_suite_histogram_matching_baseline_writes_its_scores(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "ISTN_SK_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "suite.py"), str(out), "--name", "hm",
         "--histogram-matching", "--targets", "B", "--seeds", "0", "--n-train", "12",
         "--n-test", "9"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = pd.read_csv(out / "suite.csv").iloc[0]
    assert np.isnan(row.alongside) and not (out / "epochs.csv").exists()
    assert all(0 <= row[key] <= 1 for key in ("scratch", "finetuned", "oracle_on_s2t"))


def test_deep_da_baselines_write_one_scored_row_per_method(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "ISTN_SK_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "deep_da_baselines.py"), str(out), "--targets", "B",
         "--seeds", "0", "--n-train", "12"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(out / "deep-da.csv")
    assert list(rows.method) == ["source_only", "dann", "deep_coral"]
    assert rows.accuracy.between(0, 1).all() and (rows.target == "B").all()


def test_many_sites_benchmark_scores_every_method(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "ISTN_SK_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "many_sites.py"), str(out), "--seeds", "0",
         "--n-train", "12", "--max-epochs", "1"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(out / "many-sites.csv")
    assert list(rows.method) == ["pooled_unmapped", "oracle", "conditioned", "independent",
                                 "per_site_pairs"]
    assert rows.scratch.between(0, 1).all()
    assert rows.alongside.notna().sum() == 2 and rows.alongside.dropna().between(0, 1).all()


def test_brain_baselines_benchmark_scores_every_method_in_both_directions(tmp_path):
    env = {**os.environ, "ISTN_SK_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "brain_baselines.py"), "--quick", "--task-epochs", "1",
         "--istn", "--out", str(tmp_path / "out"), "--methods", "oracle", "none", "z-score",
         "Nyul", "ComBat", "ISTN", "ISTN + z-score", "ISTN (joint)"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "out" / "brain-baselines.csv")
    assert set(rows.direction) == {"camcan->ukbb", "ukbb->camcan"}
    assert {"none", "z-score", "Nyul", "ComBat", "ISTN"} <= set(rows.method)
    assert rows[rows.method == "ISTN"].drop(columns=["direction", "method",
                                                   "sex accuracy alongside"]).notna().all().all()
    # only the ISTN moves voxels: the intensity methods have no deformation measures
    moved = rows.method.str.startswith("ISTN")
    assert rows[~moved][["jacobian mean", "folding fraction"]].isna().all().all()
    # the z-scored ISTN rows are the same mapping, re-standardised: the same deformation
    istn = rows[rows.method == "ISTN"].set_index("direction")
    restandardised = rows[rows.method == "ISTN + z-score"].set_index("direction")
    pd.testing.assert_series_equal(istn["jacobian mean"], restandardised["jacobian mean"])
    # the joint ISTN's own sex classifier is scored on the target; only there
    joint = rows.method == "ISTN (joint)"
    assert rows[joint]["sex accuracy alongside"].between(0, 1).all() and joint.sum() == 2
    assert rows[~joint]["sex accuracy alongside"].isna().all()
    oracle, rows = rows[rows.method == "oracle"], rows[rows.method != "oracle"]
    assert len(oracle) == 2 and oracle["sex accuracy"].between(0, 1).all()
    assert oracle["site balanced accuracy"].isna().all()   # no mapping to score
    assert rows["travelling correlation"].between(-1, 1).all()
    assert rows["sex accuracy on source"].between(0, 1).all()
    none = rows[rows.method == "none"].set_index("direction")
    nyul = rows[rows.method == "Nyul"].set_index("direction")
    # Nyul maps the source's intensity landmarks onto the target's: the distance falls
    assert (nyul["intensity distance"] < none["intensity distance"]).all()


def test_many_brain_sites_benchmark_scores_each_source_site_before_and_after(tmp_path):
    env = {**os.environ, "ISTN_SK_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "many_brain_sites.py"), str(tmp_path / "out"),
         "--quick", "--seeds", "0"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "out" / "many-brain-sites.csv")
    assert set(rows.mapping) == {"none", "conditioned"} and set(rows.target) == {"ukbb"}
    for mapping in ("none", "conditioned"):
        mine = rows[rows.mapping == mapping].set_index("source")
        assert set(mine.index) == {"pooled", "camcan", "site2", "site3"}
        assert mine.site_bacc_vs_target.between(0, 1).all()
        assert mine.travelling_ssim.between(-1, 1).all() and (mine.travelling_mae > 0).all()
        assert 0 <= mine.loc["pooled", "site_bacc"] <= 1
        assert 0 <= mine.loc["pooled", "sex_accuracy"] <= 1


def test_brain_site_factors_benchmark_scores_each_factor_group_alone(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "brain_site_factors.py"), "--out", str(tmp_path),
         "--n", "8", "--shape", "16", "--permutations", "2"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "brain-site-factors.csv").set_index("differs in")
    assert len(rows) == 12 and {"noise", "head placement", "ukbb (everything)"} <= set(rows.index)
    assert rows["site balanced accuracy"].between(0, 1).all()
    assert (rows["intensity distance"] >= 0).all()
    # the whole site is far easier to tell apart than its head placement alone
    assert rows.loc["ukbb (everything)", "site balanced accuracy"] >= 0.8
    assert (rows.loc["every scanner factor", "intensity distance"]
            > rows.loc["head placement", "intensity distance"])


def test_device_script_runs_the_brain_harness_and_returns_one_archive(tmp_path):
    import tarfile

    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1",
           "ISTN_SK_DATA": str(tmp_path / "data"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "device_brain64.sh"), "3", "--quick", "--shape", "16",
         "--task-epochs", "1"],
        capture_output=True, text=True, env=env, cwd=BENCHMARKS.parent.parent, timeout=600,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["brain64-seed3.tar.gz"]
    with tarfile.open(tmp_path / "out" / "brain64-seed3.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"seed3/brain-baselines.csv", "seed3/log.txt", "seed3/travelling-camcan2ukbb.png",
            "seed3/travelling-ukbb2camcan.png"} <= names


def _site_residuals():
    return _benchmark("brain_site_residuals")


def test_partway_site_moves_only_the_named_factors_linearly():
    from istn_sk.datasets._brain_scanner import SITES

    residuals = _site_residuals()
    camcan, ukbb = SITES

    def log_field(site):
        direction = np.asarray(site.bias_direction)
        return site.bias * direction / np.linalg.norm(direction)

    every = residuals.GROUPS["every scanner factor but the noise"]
    for fraction in (0.0, 0.3, 1.0):
        site = residuals.partway(ukbb, camcan, fraction, every)
        np.testing.assert_allclose(log_field(site),
                                   log_field(ukbb) + fraction * (log_field(camcan)
                                                                 - log_field(ukbb)))
        assert site.gamma == ukbb.gamma + fraction * (camcan.gamma - ukbb.gamma)
        np.testing.assert_allclose(site.translation_offset,
                                   (1 - fraction) * np.asarray(ukbb.translation_offset))
        assert (site.noise, site.age_range, site.name) == (ukbb.noise, ukbb.age_range, "ukbb")
    placement_only = residuals.partway(ukbb, camcan, 1.0, residuals.GROUPS["head placement"])
    assert placement_only.rotation_offset == camcan.rotation_offset
    assert (placement_only.bias, placement_only.gamma) == (ukbb.bias, ukbb.gamma)


def test_brain_site_residuals_benchmark_scores_each_residual_fraction(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "brain_site_residuals.py"), "--out", str(tmp_path),
         "--n", "10", "--shape", "16", "--seeds", "0", "--permutations", "2"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "brain-site-residuals-runs.csv")
    residuals = _site_residuals()
    assert len(runs) == 2 * len(residuals.GROUPS) * len(residuals.RESIDUALS)
    assert runs["site balanced accuracy"].between(0, 1).all()
    for _, rows in runs.groupby("direction"):
        perfect = rows[(rows.residual == 0) & ~rows.group.str.startswith("every")]
        # a perfect map of any single group leaves the target site itself: one score
        assert perfect["site balanced accuracy"].nunique() == 1
        unmapped = rows[(rows.residual == 1) & rows.group.str.startswith("every")]
        assert unmapped["site balanced accuracy"].item() >= 0.8
        assert unmapped["site effect excess"].item() > perfect["site effect excess"].max() + 0.1
    table = pd.read_csv(tmp_path / "brain-site-residuals.csv")
    assert len(table) == 2 * len(residuals.GROUPS) and "residual 0.1" in table.columns
    excess = pd.read_csv(tmp_path / "brain-site-residuals-excess.csv")
    assert excess.shape == table.shape
