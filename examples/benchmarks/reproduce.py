"""Reproduce the paper's experiments at CPU scale: Morpho-MNIST A -> B/C/D and two brain sites.

Parts (``--parts``, all by default):

``morpho``
    Source A, targets B, C, D. Rows: no-DA, each ISTN configuration (ITN
    only, affine only, B-spline (4) and (8) only, ITN + affine, ITN +
    B-spline (4) and (8)), intensity histogram matching, skada's DANN and
    DeepCORAL, and the oracle (trained on labelled target images). Image-level
    methods retrain the task model on the mapped source images from scratch
    and fine-tuned from T_S; every model is scored on the unmodified target
    test images. No-DA's fine-tuned column is the control: T_S trained as
    many more epochs on the unmapped source images, which separates the
    gain of the extra epochs from that of the mapping. The key rows (no-DA,
    ITN only, affine only, ITN + B-spline (8), the baselines and the oracle)
    run for every seed of ``--seeds``, the others for the first seed only.
``schemes``
    A -> B with an ITN-only ISTN, every seed: sequential retraining vs the
    simultaneous scheme (``ISTNAdapter(task=...)``), and unidirectional vs
    cyclegan training.
``selection``
    A -> B, ITN only, every seed, ISTNs trained for several epoch counts: does
    the label-free ``DomainConfusionScorer`` pick the one whose S2T trains the
    best task model?
``brain``
    Simulated camcan / ukbb sites: sex classification and age regression in
    both directions with ITN + affine ISTNs, unidirectional and cyclegan.
``harmonisation``
    camcan -> ukbb judged without a task model (``istn_sk.harmonisation``):
    site classifier, intensity distance, travelling-subject MAE / PSNR /
    SSIM, Jacobian statistics of the deformation.

Writes CSV and markdown tables and PNG figures into ``--out``. ``--quick``
runs a tiny configuration (a handful of images, 1 epoch, nf 2) that only
checks the plumbing.

Run: ``OMP_NUM_THREADS=1 python examples/benchmarks/reproduce.py --seeds 0 1 2 --out results``
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import match_histograms, skada_predict

from istn_sk import ISTNAdapter, TaskClassifier, TaskRegressor
from istn_sk.datasets import SITE_NAMES, load_morpho_mnist, simulate_brain_sites
from istn_sk.evaluate import task_scores, to_markdown, write_report
from istn_sk.figures import explanation_grid, write_png
from istn_sk.harmonisation import (
    folding_fraction,
    intensity_distance,
    jacobian_determinant,
    paired_similarity,
    site_classification_score,
)
from istn_sk.scoring import DomainConfusionScorer

ISTN_ROWS = {
    "ITN only": {"itn": True, "stn": None},
    "affine only": {"itn": False, "stn": "affine"},
    "B-spline (4) only": {"itn": False, "stn": "bspline", "cp_spacing": 4},
    "B-spline (8) only": {"itn": False, "stn": "bspline", "cp_spacing": 8},
    "ITN + affine": {"itn": True, "stn": "affine"},
    "ITN + B-spline (4)": {"itn": True, "stn": "bspline", "cp_spacing": 4},
    "ITN + B-spline (8)": {"itn": True, "stn": "bspline", "cp_spacing": 8},
}
KEY_ROWS = ("no-DA", "ITN only", "affine only", "ITN + B-spline (8)", "histogram matching",
            "DANN", "DeepCORAL", "oracle")
FIGURE_ROWS = ("ITN only", "ITN + affine", "ITN + B-spline (8)")
SCHEME_ROW = "ITN only"
SCHEME_METHODS = ("no-DA", "sequential, unidirectional", "simultaneous, unidirectional",
                  "sequential, cyclegan", "simultaneous, cyclegan", "oracle")
PARTS = ("morpho", "schemes", "selection", "brain", "harmonisation")
MIN_GAP = 0.05


@dataclass(frozen=True)
class Config:
    """Sizes and training settings of one harness run.

    Attributes
    ----------
    n_train, n_test : int
        Morpho-MNIST digits per domain and split.
    targets : tuple of str
        Target domains (source is A).
    task_nf, task_epochs, fine_tune_epochs, task_lr : task model settings.
    istn_nf, istn_epochs, istn_lr, consistency_weight : ISTN settings.
    batch_size : int
    brain_n_per_site, brain_shape, brain_n_test : int
        Simulated subjects per site, cube side, held-out subjects per site.
    brain_task_epochs, brain_fine_tune_epochs, brain_istn_epochs, brain_nf : int
        Brain training settings (task and ISTN share ``brain_nf``).
    brain_batch_size : int
        Volumes per step for the brain task models and ISTNs.
    brain_modes : tuple of str
        ISTN modes of the brain part (``"unidirectional"``, ``"cyclegan"``).
    brain_travelling_subjects, site_permutations : int
        Travelling subjects (imaged at both sites) and site-classifier
        permutations of the harmonisation part.
    brain_jobs : int
        joblib workers simulating the brain scans (the data do not depend on it).
    selection_epochs : tuple of int
        ISTN epoch counts compared by the selection part.
    """

    n_train: int = 500
    n_test: int = 250
    targets: tuple[str, ...] = ("B", "C", "D")
    task_nf: int = 16
    task_epochs: int = 12
    fine_tune_epochs: int = 6
    task_lr: float = 1e-3
    istn_nf: int = 8
    istn_epochs: int = 10
    istn_lr: float = 1e-3
    consistency_weight: float = 10.0
    batch_size: int = 32
    brain_n_per_site: int = 120
    brain_shape: int = 32
    brain_n_test: int = 30
    brain_task_epochs: int = 30
    brain_fine_tune_epochs: int = 15
    brain_istn_epochs: int = 10
    brain_nf: int = 8
    brain_batch_size: int = 8
    brain_modes: tuple[str, ...] = ("unidirectional", "cyclegan")
    brain_travelling_subjects: int = 20
    site_permutations: int = 100
    brain_jobs: int = 1
    selection_epochs: tuple[int, ...] = (5, 10, 20)


QUICK = Config(n_train=12, n_test=9, task_nf=2, task_epochs=1, fine_tune_epochs=1, istn_nf=2,
               istn_epochs=1, batch_size=8, brain_n_per_site=6, brain_shape=16, brain_n_test=2,
               brain_task_epochs=1, brain_fine_tune_epochs=1, brain_istn_epochs=1, brain_nf=2,
               brain_batch_size=4, brain_travelling_subjects=2, site_permutations=4,
               selection_epochs=(1, 2))


class Harness:
    """Runs the parts and keeps a clock for progress lines.

    Parameters
    ----------
    config : Config
    out_dir : Path
        Where tables and figures go (created).
    seeds : sequence of int
        The first seed runs every row; the others the key rows.
    """

    def __init__(self, config: Config, out_dir: Path, seeds: list[int]) -> None:
        self.config = config
        self.out_dir = out_dir
        self.seeds = list(seeds)
        self.start = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)

    def progress(self, message: str) -> None:
        """Print a line with the elapsed time."""
        print(f"[{time.perf_counter() - self.start:7.1f} s] {message}", flush=True)

    def classifier(self, seed: int, **changes) -> TaskClassifier:
        """The Morpho-MNIST task model."""
        c = self.config
        options = {"nf": c.task_nf, "lr": c.task_lr, "max_epochs": c.task_epochs,
                   "batch_size": c.batch_size, **changes}
        return TaskClassifier(**options, random_state=seed)

    def adapter(self, seed: int, **options) -> ISTNAdapter:
        """An ISTN adapter with the configured training settings, updated by ``options``."""
        c = self.config
        settings = {"nf": c.istn_nf, "max_epochs": c.istn_epochs, "lr": c.istn_lr,
                    "consistency_weight": c.consistency_weight, "batch_size": c.batch_size}
        return ISTNAdapter(**{**settings, **options}, random_state=seed)

    # ------------------------------------------------------------------ Morpho-MNIST

    def morpho_data(self, domain: str, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Training and test digits of one domain (data seed ``seed``)."""
        c = self.config
        return {split: load_morpho_mnist(domain, split, n, random_state=seed)
                for split, n in (("train", c.n_train), ("test", c.n_test))}

    def fine_tune(self, t_s: TaskClassifier, images: np.ndarray, labels: np.ndarray,
                  seed: int) -> TaskClassifier:
        """A copy of ``t_s`` trained ``fine_tune_epochs`` more on ``images``."""
        return self.classifier(seed, max_epochs=self.config.fine_tune_epochs,
                               init_params=_weights(t_s)).fit(images, labels)

    def retrain(self, mapped: np.ndarray, labels: np.ndarray, t_s: TaskClassifier,
                test: tuple[np.ndarray, np.ndarray], seed: int) -> dict[str, float]:
        """Train on mapped source images from scratch and fine-tuned from ``t_s``; score."""
        scratch = self.classifier(seed).fit(mapped, labels)
        tuned = self.fine_tune(t_s, mapped, labels, seed)
        return {"scratch": task_scores(scratch, *test)["accuracy"],
                "fine_tuned": task_scores(tuned, *test)["accuracy"]}

    def morpho(self) -> pd.DataFrame:
        """The Morpho-MNIST table; writes the per-seed runs, the summary and figures."""
        records = []
        for index, seed in enumerate(self.seeds):
            rows = list(KEY_ROWS) if index else ["no-DA", *ISTN_ROWS, *KEY_ROWS[4:]]
            source = self.morpho_data("A", seed)
            Xa, ya = source["train"]
            t_s = self.classifier(seed).fit(Xa, ya)
            control = self.fine_tune(t_s, Xa, ya, seed)
            for target_name in self.config.targets:
                target = self.morpho_data(target_name, seed)
                (Xt, yt), test = target["train"], target["test"]
                sample_domain = np.r_[np.ones(len(Xa), int), -2 * np.ones(len(Xt), int)]
                for method in rows:
                    clock = time.perf_counter()
                    record = {"target": target_name, "method": method, "seed": seed}
                    if method == "no-DA":
                        record["scratch"] = task_scores(t_s, *test)["accuracy"]
                        record["fine_tuned"] = task_scores(control, *test)["accuracy"]
                    elif method == "oracle":
                        oracle = self.classifier(seed).fit(Xt, yt)
                        record["scratch"] = task_scores(oracle, *test)["accuracy"]
                    elif method in ("DANN", "DeepCORAL"):
                        predicted = skada_predict(
                            method, (Xa, ya), Xt, test[0], nf=self.config.task_nf,
                            lr=self.config.task_lr, max_epochs=self.config.task_epochs,
                            batch_size=self.config.batch_size, random_state=seed)
                        record["scratch"] = float(np.mean(predicted == test[1]))
                    elif method == "histogram matching":
                        record.update(self.retrain(match_histograms(Xa, Xt), ya, t_s, test, seed))
                    else:
                        adapter = self.adapter(seed, **ISTN_ROWS[method])
                        adapter.fit(np.concatenate([Xa, Xt]), sample_domain=sample_domain)
                        record.update(self.retrain(adapter.transform(Xa), ya, t_s, test, seed))
                        if index == 0 and method in FIGURE_ROWS:
                            name = f"morpho-A2{target_name}-{_slug(method)}.png"
                            parts = adapter.explain(source["test"][0][:8])
                            write_png(self.out_dir / name, explanation_grid(parts, test[0][:8]))
                    record["seconds"] = time.perf_counter() - clock
                    records.append(record)
                    self.progress(f"A->{target_name} seed {seed} {method}: "
                                  f"{_format_record(record)}")
                    pd.DataFrame(records).to_csv(self.out_dir / "morpho-mnist-runs.csv",
                                                 index=False)
        summary = summarise(pd.DataFrame(records))
        summary.to_csv(self.out_dir / "morpho-mnist.csv", index=False)
        (self.out_dir / "morpho-mnist.md").write_text(to_markdown(display(summary)))
        return display(summary)

    # ------------------------------------------------------------------ schemes

    def schemes(self) -> pd.DataFrame:
        """A -> B with ``SCHEME_ROW``, every seed: sequential vs simultaneous, uni vs cyclegan.

        Writes the per-seed runs (with no-DA and the oracle of each seed) and
        their summary, as for Morpho-MNIST.
        """
        target_name = self.config.targets[0]
        records = []
        for seed in self.seeds:
            source, target = self.morpho_data("A", seed), self.morpho_data(target_name, seed)
            (Xa, ya), (Xt, yt), test = source["train"], target["train"], target["test"]
            X = np.concatenate([Xa, Xt])
            sample_domain = np.r_[np.ones(len(Xa), int), -2 * np.ones(len(Xt), int)]
            t_s = self.classifier(seed).fit(Xa, ya)
            run = {"target": target_name, "seed": seed}
            records.append({**run, "method": "no-DA",
                            "scratch": task_scores(t_s, *test)["accuracy"]})
            for mode in ("unidirectional", "cyclegan"):
                clock = time.perf_counter()
                adapter = self.adapter(seed, mode=mode, **ISTN_ROWS[SCHEME_ROW])
                adapter.fit(X, sample_domain=sample_domain)
                scores = self.retrain(adapter.transform(Xa), ya, t_s, test, seed)
                records.append({**run, "method": f"sequential, {mode}", **scores,
                                "seconds": time.perf_counter() - clock})
                self.progress(f"schemes seed {seed}: {records[-1]['method']}: "
                              f"{_format_record(records[-1])}")
                clock = time.perf_counter()
                simultaneous = self.adapter(seed, mode=mode, task=self.classifier(seed),
                                            **ISTN_ROWS[SCHEME_ROW])
                simultaneous.fit(X, np.r_[ya, -np.ones(len(Xt), int)],
                                 sample_domain=sample_domain)
                records.append({**run, "method": f"simultaneous, {mode}",
                                "scratch": task_scores(simultaneous.task_, *test)["accuracy"],
                                "seconds": time.perf_counter() - clock})
                self.progress(f"schemes seed {seed}: {records[-1]['method']}: "
                              f"{_format_record(records[-1])}")
            oracle = self.classifier(seed).fit(Xt, yt)
            records.append({**run, "method": "oracle",
                            "scratch": task_scores(oracle, *test)["accuracy"]})
            pd.DataFrame(records).to_csv(self.out_dir / "schemes-runs.csv", index=False)
        summary = summarise(pd.DataFrame(records), SCHEME_METHODS)
        summary.to_csv(self.out_dir / "schemes.csv", index=False)
        (self.out_dir / "schemes.md").write_text(to_markdown(display(summary)))
        return display(summary)

    # ------------------------------------------------------------------ selection

    def selection(self) -> pd.DataFrame:
        """Does an unsupervised score pick good ISTNs? A -> B, ITN only, several epoch counts.

        For every seed and ``selection_epochs``: the :class:`DomainConfusionScorer`
        of the fitted adapter on the unlabelled test images (A test mapped, B
        test) and the accuracy on B of a task model trained from scratch on
        A2B. Writes the runs and, per seed, the epochs the scorer would pick.
        """
        c, target_name = self.config, self.config.targets[0]
        scorer = DomainConfusionScorer()
        records = []
        for seed in self.seeds:
            source, target = self.morpho_data("A", seed), self.morpho_data(target_name, seed)
            (Xa, ya), (Xt, _), test = source["train"], target["train"], target["test"]
            unlabelled = np.concatenate([source["test"][0], test[0]])
            domains = np.r_[np.ones(len(source["test"][0]), int), -2 * np.ones(len(test[0]), int)]
            for epochs in c.selection_epochs:
                adapter = self.adapter(seed, max_epochs=epochs, **ISTN_ROWS[SCHEME_ROW])
                adapter.fit(np.concatenate([Xa, Xt]),
                            sample_domain=np.r_[np.ones(len(Xa), int), -2 * np.ones(len(Xt), int)])
                task = self.classifier(seed).fit(adapter.transform(Xa), ya)
                records.append({
                    "target": target_name, "seed": seed, "istn epochs": epochs,
                    "domain confusion": scorer(adapter, unlabelled, sample_domain=domains),
                    "accuracy": task_scores(task, *test)["accuracy"],
                })
                self.progress(f"selection seed {seed}, {epochs} epochs: " + ", ".join(
                    f"{key} {records[-1][key]:.3f}" for key in ("domain confusion", "accuracy")))
        runs = pd.DataFrame(records)
        runs.to_csv(self.out_dir / "selection-runs.csv", index=False)
        picked = runs.loc[runs.groupby("seed")["domain confusion"].idxmax()]
        best = runs.groupby("seed")["accuracy"].max()
        table = pd.DataFrame({
            "seed": picked["seed"].to_numpy(),
            "picked epochs": picked["istn epochs"].to_numpy(),
            "picked accuracy": picked["accuracy"].to_numpy(),
            "best accuracy": best.loc[picked["seed"]].to_numpy(),
            "spearman (confusion, accuracy)": [
                runs[runs["seed"] == seed][["domain confusion", "accuracy"]]
                .corr(method="spearman").iloc[0, 1] for seed in picked["seed"]],
        })
        write_report(table, self.out_dir / "selection")
        return table

    # ------------------------------------------------------------------ brain

    def brain(self) -> pd.DataFrame:
        """Sex classification and age regression between the two simulated sites.

        Each mode of ``brain_modes`` maps the training images of each site to
        the other: unidirectional ISTNs are fitted once per direction, one
        cyclegan ISTN serves both (``transform`` and ``inverse_transform``).
        """
        c, seed = self.config, self.seeds[0]
        X, sex, age, site = self.brain_data(seed)
        splits = self.brain_splits(site)
        mapped = self.brain_mappings(X, splits, seed)
        tasks: dict[str, tuple[np.ndarray, Callable[..., object]]] = {
            "sex": (sex, self.brain_classifier),
            "age": (age, self.brain_regressor),
        }
        rows = []
        for source_name, target_name in (SITE_NAMES, SITE_NAMES[::-1]):
            s, t = splits[source_name]["train"], splits[target_name]["train"]
            for task_name, (labels, make) in tasks.items():
                t_s = make(seed).fit(X[s], labels[s])
                models = {
                    ("T_S", "", source_name): t_s,
                    ("T_S", "", target_name): t_s,
                    ("T_T (oracle)", "", target_name): make(seed).fit(X[t], labels[t]),
                }
                for mode in c.brain_modes:
                    images = mapped[mode, source_name]
                    models["T_S2T scratch", mode, target_name] = make(seed).fit(images, labels[s])
                    models["T_S2T fine-tuned", mode, target_name] = self.brain_fine_tune(
                        make, t_s, images, labels[s], seed)
                for (model, mode, evaluated_on), fitted in models.items():
                    test = splits[evaluated_on]["test"]
                    rows.append({"task": task_name, "direction": f"{source_name}->{target_name}",
                                 "model": model, "istn": mode, "evaluated_on": evaluated_on,
                                 **task_scores(fitted, X[test], labels[test])})
                self.progress(f"brain {source_name}->{target_name} {task_name}: "
                              + ", ".join(_brain_summary(rows[-len(models):])))
        table = pd.DataFrame(rows)
        write_report(table, self.out_dir / "brain")
        return table

    def brain_data(self, seed: int, travelling_subjects: int = 0):
        """The simulated sites (and travelling subjects, appended last) at the brain shape."""
        c = self.config
        self.progress(f"simulating {c.brain_n_per_site} subjects per site and "
                      f"{travelling_subjects} travelling subjects at {c.brain_shape}^3")
        return simulate_brain_sites(n_per_site=c.brain_n_per_site, shape=(c.brain_shape,) * 3,
                                    random_state=seed, travelling_subjects=travelling_subjects,
                                    n_jobs=c.brain_jobs)

    def brain_splits(self, site: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Training and held-out rows of each site's own subjects (travelling ones excluded)."""
        c, splits = self.config, {}
        for code, name in enumerate(SITE_NAMES):
            rows = np.flatnonzero(site[:len(SITE_NAMES) * c.brain_n_per_site] == code)
            splits[name] = {"train": rows[:-c.brain_n_test], "test": rows[-c.brain_n_test:]}
        return splits

    def brain_mappings(self, X: np.ndarray, splits: dict, seed: int) -> dict:
        """Each site's training images mapped to the other site, per ISTN mode; writes figures."""
        c = self.config
        mapped = {}
        for mode in c.brain_modes:
            pairs = [SITE_NAMES] if mode == "cyclegan" else [SITE_NAMES, SITE_NAMES[::-1]]
            for source_name, target_name in pairs:
                s, t = splits[source_name], splits[target_name]
                adapter = self.brain_adapter(mode, X[s["train"]], X[t["train"]], seed,
                                             f"{source_name}->{target_name}")
                mapped[mode, source_name] = adapter.transform(X[s["train"]])
                directions = [("s2t", source_name, target_name)]
                if mode == "cyclegan":
                    mapped[mode, target_name] = adapter.inverse_transform(X[t["train"]])
                    directions.append(("t2s", target_name, source_name))
                for direction, a, b in directions:
                    parts = adapter.explain(X[splits[a]["test"]][:6], direction=direction)
                    write_png(self.out_dir / f"brain-{a}2{b}-{mode}.png",
                              explanation_grid(parts, X[splits[b]["test"]][:6]))
        return mapped

    def brain_adapter(self, mode: str, source: np.ndarray, target: np.ndarray, seed: int,
                      label: str, labels: np.ndarray | None = None, **options) -> ISTNAdapter:
        """An ITN + affine ISTN fitted from ``source`` to ``target`` volumes.

        ``options`` update the adapter's settings (any ISTNAdapter parameter);
        ``labels``, the source's task labels, are needed with ``task``.
        """
        c = self.config
        clock = time.perf_counter()
        settings = {"nf": c.brain_nf, "max_epochs": c.brain_istn_epochs,
                    "batch_size": c.brain_batch_size, "stn": "affine", "mode": mode}
        adapter = self.adapter(seed, **{**settings, **options})
        y = None if labels is None else np.r_[labels, -np.ones(len(target), int)]
        adapter.fit(np.concatenate([source, target]), y,
                    sample_domain=np.r_[np.ones(len(source), int), -2 * np.ones(len(target), int)])
        self.progress(f"brain {mode} ISTN {label} fitted in {time.perf_counter() - clock:.0f} s")
        return adapter

    def brain_fine_tune(self, make: Callable[..., object], t_s, images: np.ndarray,
                        labels: np.ndarray, seed: int):
        """A copy of ``t_s`` trained ``brain_fine_tune_epochs`` more on ``images``."""
        return make(seed, max_epochs=self.config.brain_fine_tune_epochs,
                    init_params=_weights(t_s)).fit(images, labels)

    def harmonisation(self) -> pd.DataFrame:
        """camcan -> ukbb measured without a task model, per ISTN mode.

        For the held-out camcan subjects, unmapped and mapped by each mode's
        ISTN: a fresh site classifier against the held-out ukbb subjects
        (balanced accuracy, permutation p-value), the intensity Wasserstein
        distance to them and the deformation's Jacobian statistics; for the
        travelling subjects, MAE / PSNR / SSIM against their own ukbb scans.
        """
        c, seed = self.config, self.seeds[0]
        X, _, _, site = self.brain_data(seed, c.brain_travelling_subjects)
        splits = self.brain_splits(site)
        travelling = np.arange(len(SITE_NAMES) * c.brain_n_per_site, len(X))
        source_scans = travelling[site[travelling] == 0]
        target_scans = travelling[site[travelling] == 1]
        source, target = splits[SITE_NAMES[0]], splits[SITE_NAMES[1]]
        maps: dict[str, ISTNAdapter | None] = {"none (S)": None}
        for mode in c.brain_modes:
            maps[mode] = self.brain_adapter(mode, X[source["train"]], X[target["train"]], seed,
                                            f"{SITE_NAMES[0]}->{SITE_NAMES[1]}")
        rows = []
        for name, adapter in maps.items():
            held_out, scans = X[source["test"]], X[source_scans]
            if adapter is not None:
                held_out, scans = adapter.transform(held_out), adapter.transform(scans)
            row = {"istn": name, **site_classification_score(
                held_out, X[target["test"]], cv=min(5, c.brain_n_test),
                n_permutations=c.site_permutations, random_state=seed)}
            row["intensity distance"] = intensity_distance(held_out, X[target["test"]])
            row.update(paired_similarity(scans, X[target_scans]).mean().to_dict())
            if adapter is not None:
                displacement = adapter.explain(X[source["test"]])["displacement"]
                determinant = jacobian_determinant(displacement)
                row["jacobian mean"] = float(determinant.mean())
                row["jacobian sd"] = float(determinant.std())
                row["folding fraction"] = float(folding_fraction(displacement).mean())
            rows.append(row)
            self.progress(f"harmonisation {name}: " + ", ".join(
                f"{key} {value:.3f}" for key, value in row.items() if key != "istn"))
        table = pd.DataFrame(rows)
        table.insert(0, "direction", f"{SITE_NAMES[0]}->{SITE_NAMES[1]}")
        write_report(table, self.out_dir / "harmonisation")
        return table

    def brain_task_options(self, seed: int, **changes) -> dict:
        """Settings of the brain task models, updated by ``changes``."""
        c = self.config
        return {"nf": c.brain_nf, "lr": c.task_lr, "max_epochs": c.brain_task_epochs,
                "batch_size": c.brain_batch_size, "random_state": seed, **changes}

    def brain_classifier(self, seed: int, **changes) -> TaskClassifier:
        """Sex classifier on 3D volumes."""
        return TaskClassifier(**self.brain_task_options(seed, **changes))

    def brain_regressor(self, seed: int, **changes) -> TransformedTargetRegressor:
        """Age regressor on 3D volumes, trained on standardised ages."""
        return TransformedTargetRegressor(TaskRegressor(**self.brain_task_options(seed, **changes)),
                                          transformer=StandardScaler())


def _weights(model) -> dict:
    """A copy of the task model's weights (unwrapping a TransformedTargetRegressor)."""
    if isinstance(model, TransformedTargetRegressor):
        model = model.regressor_
    return {key: value.detach().clone() for key, value in model.module_.state_dict().items()}


def _brain_summary(rows: list[dict]) -> list[str]:
    """Short ``model [mode] on site: score`` strings for a progress line."""
    metric = "accuracy" if "accuracy" in rows[0] else "mae"
    return [f"{row['model']}{' ' + row['istn'] if row['istn'] else ''} on "
            f"{row['evaluated_on']}: {metric} {row[metric]:.3f}" for row in rows]


def _slug(method: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")


def _format_record(record: dict) -> str:
    shown = {k: v for k, v in record.items() if k in ("scratch", "fine_tuned", "seconds")}
    return ", ".join(f"{k} {v:.3f}" if k != "seconds" else f"{v:.0f} s" for k, v in shown.items())


def summarise(runs: pd.DataFrame, methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Mean ± sd over seeds per (target, method), Δ to no-DA and the recovered gap.

    Δ is computed per seed against that seed's no-DA accuracy and then
    averaged; ``recovered`` is mean Δ over the mean gap (oracle - no-DA) of
    the same seeds, left empty (NaN) when that gap is below ``MIN_GAP``
    (no shift to recover).

    Parameters
    ----------
    runs : pandas.DataFrame
        Columns ``target``, ``method``, ``seed``, ``scratch`` and optionally
        ``fine_tuned`` (one row per run), including ``no-DA`` and ``oracle``.
    methods : tuple of str, optional
        The methods in display order; the Morpho-MNIST rows by default.

    Returns
    -------
    pandas.DataFrame
        Columns ``target``, ``method``, ``seeds``, ``scratch``,
        ``scratch_sd``, ``fine_tuned``, ``fine_tuned_sd``, ``Δ_scratch``,
        ``Δ_fine_tuned``, ``recovered_scratch``, ``recovered_fine_tuned``.
    """
    runs = runs.copy()
    if "fine_tuned" not in runs:
        runs["fine_tuned"] = np.nan
    base = runs[runs["method"] == "no-DA"].set_index(["target", "seed"])["scratch"]
    best = runs[runs["method"] == "oracle"].set_index(["target", "seed"])["scratch"]
    key = pd.MultiIndex.from_frame(runs[["target", "seed"]])
    runs["gap"] = best.reindex(key).to_numpy() - base.reindex(key).to_numpy()
    for column in ("scratch", "fine_tuned"):
        runs[f"Δ_{column}"] = runs[column] - base.reindex(key).to_numpy()
    methods = methods or ("no-DA", *ISTN_ROWS, *KEY_ROWS[4:])
    order = {method: i for i, method in enumerate(methods)}
    rows = []
    for (target, method), group in runs.groupby(["target", "method"], sort=False):
        row = {"target": target, "method": method, "seeds": len(group)}
        for column in ("scratch", "fine_tuned"):
            row[column] = group[column].mean()
            row[f"{column}_sd"] = group[column].std(ddof=1) if len(group) > 1 else np.nan
        for column in ("scratch", "fine_tuned"):
            row[f"Δ_{column}"] = group[f"Δ_{column}"].mean()
        gap = group["gap"].mean()
        for column in ("scratch", "fine_tuned"):
            row[f"recovered_{column}"] = row[f"Δ_{column}"] / gap if gap >= MIN_GAP else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table.sort_values(["target", "method"], key=lambda s: s.map(order) if s.name ==
                              "method" else s, kind="stable").reset_index(drop=True)
    return table


def display(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary for reading: ``mean ± sd`` cells, Δ and recovered rounded.

    Parameters
    ----------
    summary : pandas.DataFrame
        What :func:`summarise` returned.

    Returns
    -------
    pandas.DataFrame of str
    """
    def cell(mean: float, sd: float = np.nan, signed: bool = False) -> str:
        if np.isnan(mean):
            return ""
        text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
        return text if np.isnan(sd) else f"{text} ± {sd:.3f}"

    rows = []
    for values in summary.to_dict("records"):
        rows.append({
            "target": values["target"], "method": values["method"], "seeds": values["seeds"],
            "scratch": cell(values["scratch"], values["scratch_sd"]),
            "fine-tuned": cell(values["fine_tuned"], values["fine_tuned_sd"]),
            "Δ scratch": cell(values["Δ_scratch"], signed=True),
            "Δ fine-tuned": cell(values["Δ_fine_tuned"], signed=True),
            "recovered scratch": cell(values["recovered_scratch"]),
            "recovered fine-tuned": cell(values["recovered_fine_tuned"]),
        })
    return pd.DataFrame(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke configuration (a handful of images, 1 epoch, nf 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of data and training; the first runs every row")
    parser.add_argument("--out", type=Path, default=Path("benchmark-output"),
                        help="output folder for tables and figures")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--targets", nargs="+", choices=("B", "C", "D"), default=None,
                        help="Morpho-MNIST target domains (default B C D)")
    parser.add_argument("--n-train", type=int, default=None, help="digits per domain")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the harness from the command line."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = QUICK if args.quick else Config()
    if args.targets:
        config = replace(config, targets=tuple(args.targets))
    if args.n_train:
        config = replace(config, n_train=args.n_train)
    harness = Harness(config, args.out, args.seeds)
    harness.progress(f"configuration: {asdict(config)}; seeds {args.seeds}")
    for part in args.parts:
        table = getattr(harness, part)()
        print(to_markdown(table), flush=True)
    harness.progress(f"done; tables and figures in {args.out}")


if __name__ == "__main__":
    main()
