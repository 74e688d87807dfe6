"""Classical harmonisation baselines on the simulated brain sites, in the harness's splits.

For each direction (camcan -> ukbb, ukbb -> camcan) and each baseline of
:mod:`istn_sk.normalisation`:

``none``
    The images as simulated (already z-scored per image inside the mask
    before their ``tanh``).
``z-score``, ``WhiteStripe``, ``WhiteStripe (tau 0.1)``
    Every image normalised on its own (so each site independently).
``Nyul``
    Standard scale fitted on the target site's training images; every image
    (both sites) mapped onto it.
``ComBat``
    Voxel-wise ComBat (``arctanh`` of the voxels inside the union of the
    training masks as features), fitted on both sites' training images with
    age and sex as kept covariates and the target site as reference (its
    images are unchanged); source images are mapped with their own age and
    sex. Voxels outside each image's mask stay background.
``ISTN`` (``--istn``)
    The harness's unidirectional ITN + affine ISTN (slow on CPU; any other
    ISTNAdapter settings with ``--istn-options JSON``); every mapped scan is
    cut to its own brain mask warped by the same deformation
    (:func:`mapped_inside_the_brain`).
``ISTN (alongside)``, ``ISTN (joint)`` (``--methods``)
    The same ISTN with a sex classifier trained alongside on each batch's
    S2T with the source's labels (the simultaneous scheme); with ``joint``
    its loss is also back-propagated into the ISTN (the task-driven scheme,
    ``task_weight=1``). Target labels are never read. The row adds that
    model's accuracy on the target test scans (``sex accuracy alongside``).
``ISTN + z-score`` (``--methods``)
    The ISTN's output put through the pre-processing the scans had (each
    image z-scored inside its brain, :class:`~istn_sk.normalisation.ZScoreNormaliser`):
    the ISTN moves every scan's global intensity, which the site classifier sees.

All three intensity normalisers are invariant to an affine change of each
image's intensities, so running them on the standardised simulated images
is running them on the raw scanner intensities (up to the ``tanh`` clip).

Measures (masks are ``X != 0``, the brain): the site classifier's balanced
accuracy (source test vs target test, permutation p-value), the site effect
(:func:`~istn_sk.harmonisation.site_effect` inside the voxels of every test
brain: its excess over sampling noise and its smooth share), the intensity
Wasserstein distance inside the masks, travelling subjects' MAE / PSNR /
SSIM / correlation against their own target scan inside both scans' masks
(and a figure of one travelling subject per direction,
``travelling-<source>2<target>.png``)
(MAE, PSNR and SSIM reward flattened contrast, the correlation does not),
``oracle``'s task models trained on the target site itself (its row has
only the task measures),
the ISTN's Jacobian statistics and folding on the source test scans, and
the sex accuracy and age MAE of task models trained on the normalised source
training images, scored on the normalised target test images (the gap) and
on the normalised source test images (``on source``: does the biological
signal survive the mapping?) (``--task-epochs``; 0 skips them). The data, splits and task models are
those of ``reproduce.py``'s brain harness (its ``Harness`` is reused).

Run: ``OMP_NUM_THREADS=1 python examples/benchmarks/brain_baselines.py --out results``
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import QUICK, Config, Harness

from istn_sk.datasets import SITE_NAMES
from istn_sk.evaluate import task_scores, to_markdown, write_report
from istn_sk.figures import save_figure
from istn_sk.harmonisation import (
    folding_fraction,
    intensity_distance,
    jacobian_determinant,
    paired_similarity,
    site_classification_score,
    site_effect,
)
from istn_sk.io._plot import new_figure
from istn_sk.nn import Warp
from istn_sk.normalisation import (
    ComBatHarmoniser,
    NyulNormaliser,
    WhiteStripeNormaliser,
    ZScoreNormaliser,
)

EDGE = 1e-6
METHODS = ("oracle", "none", "z-score", "WhiteStripe", "WhiteStripe (tau 0.1)", "Nyul", "ComBat",
           "ISTN", "ISTN + z-score", "ISTN (alongside)", "ISTN (joint)")
#: The ISTN methods with a sex classifier trained alongside, and its loss's weight in the ISTN's.
TASK_WEIGHTS = {"ISTN (alongside)": 0.0, "ISTN (joint)": 1.0}


def combat_images(X, mask, site, covariates, fit_rows, reference: int) -> np.ndarray:
    """Voxel-wise ComBat of every image (see the module docstring)."""
    voxels = mask[fit_rows].any(axis=0)
    features = np.arctanh(np.clip(X[:, voxels], -1 + EDGE, 1 - EDGE)).astype(np.float64)
    harmoniser = ComBatHarmoniser(reference_site=reference).fit(
        features[fit_rows], sites=site[fit_rows], covariates=covariates[fit_rows])
    result = X.copy()
    result[:, voxels] = np.tanh(harmoniser.transform(features, sites=site,
                                                     covariates=covariates))
    return np.where(mask, result, X).astype(X.dtype)


def normalised(method: str, X, mask, site, covariates, fit_rows, target: int,
               harness: Harness, seed: int, istn_options: dict | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """All images after ``method`` towards site ``target``, their masks, and deformation measures.

    The deformation measures (Jacobian mean / sd, folding fraction over the
    source scans) are empty for the intensity methods, which move nothing.
    """
    if method == "none":
        return X, mask, {}
    if method == "z-score":
        return ZScoreNormaliser().fit_transform(X, mask=mask), mask, {}
    if method.startswith("WhiteStripe"):
        tau = 0.1 if "0.1" in method else 0.05
        return WhiteStripeNormaliser(tau=tau).fit_transform(X, mask=mask), mask, {}
    if method == "Nyul":
        rows = fit_rows[site[fit_rows] == target]
        return NyulNormaliser().fit(X[rows], mask=mask[rows]).transform(X, mask=mask), mask, {}
    if method == "ComBat":
        return combat_images(X, mask, site, covariates, fit_rows, target), mask, {}
    if method == "ISTN" or method in TASK_WEIGHTS:
        source_rows = fit_rows[site[fit_rows] != target]
        options = dict(istn_options or {})
        if method in TASK_WEIGHTS:
            options.update(task=harness.brain_classifier(seed), task_weight=TASK_WEIGHTS[method],
                           labels=covariates[source_rows, 1].astype(int))
        adapter = harness.brain_adapter("unidirectional", X[source_rows],
                                        X[fit_rows[site[fit_rows] == target]], seed,
                                        f"{method} towards {SITE_NAMES[target]}", **options)
        Y, Y_mask, displacement = mapped_inside_the_brain(adapter, X, mask, site != target)
        determinant = jacobian_determinant(displacement)
        measures = {"jacobian mean": float(determinant.mean()),
                    "jacobian sd": float(determinant.std()),
                    "folding fraction": float(folding_fraction(displacement).mean())}
        if method in TASK_WEIGHTS:
            measures["task model alongside"] = adapter.task_
        return Y, Y_mask, measures
    raise ValueError(f"unknown method {method!r}")


def mapped_inside_the_brain(adapter, X: np.ndarray, mask: np.ndarray, rows: np.ndarray,
                            sample_domain: np.ndarray | None = None
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` with ``rows`` mapped by ``adapter``, kept inside their warped brain masks.

    Returns the images, their masks and the mapped rows' displacement fields.

    ``sample_domain`` (one source site per row of ``X``) is needed after a
    fit on several source sites; each mapped row goes through its own site.

    The ITN changes background voxels too (the simulated scans have exact 0
    outside the brain), and the STN moves the brain, so each mapped scan is
    cut to its own brain mask warped by the same deformation (linear
    interpolation, > 0.5): the measures then compare brains with brains, as
    they do for the intensity baselines, whose background stays 0.
    """
    parts = adapter.explain(X[rows], sample_domain=None if sample_domain is None
                            else sample_domain[rows])
    with torch.no_grad():
        warped = Warp()(torch.from_numpy(mask[rows].astype(np.float32)),
                        torch.from_numpy(parts["displacement"])).numpy() > 0.5
    result, masks = X.copy(), mask.copy()
    result[rows] = np.where(warped, parts["output"], 0.0)
    masks[rows] = warped
    return result, masks, parts["displacement"]


def travelling_figure(pairs: dict[str, tuple[np.ndarray, np.ndarray]], title: str):
    """One travelling subject under each method: S mapped, T as the method leaves it, |S - T|.

    ``pairs`` maps a method to the subject's source and target volumes
    ``(1, D, H, W)``; each row shows the central sagittal and axial slices (MNI axis order),
    grey levels from the row's target scan (1st to 99th percentile inside the
    brain), the difference on a shared scale.
    """
    figure = new_figure(figsize=(9.0, 1.6 * len(pairs) + 0.4), layout="constrained")
    axes = figure.subplots(len(pairs), 6, squeeze=False)
    figure.suptitle(title)
    for row, (method, (source, target)) in enumerate(pairs.items()):
        inside = target[target != 0]
        low, high = np.percentile(inside, [1, 99]) if inside.size else (-1.0, 1.0)
        for plane, cut in enumerate((lambda v: v[0, v.shape[1] // 2],
                                     lambda v: v[0, :, :, v.shape[3] // 2])):
            for column, (image, name, options) in enumerate((
                    (cut(source), "S", {"cmap": "gray", "vmin": low, "vmax": high}),
                    (cut(target), "T", {"cmap": "gray", "vmin": low, "vmax": high}),
                    (np.abs(cut(source) - cut(target)), "|S - T|",
                     {"cmap": "magma", "vmin": 0.0, "vmax": 0.5 * (high - low)}))):
                ax = axes[row, 3 * plane + column]
                ax.imshow(np.rot90(image), **options)
                ax.set_xticks([]), ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"{name} ({'sagittal' if plane == 0 else 'axial'})",
                                 fontsize=8)
        axes[row, 0].set_ylabel(method, fontsize=8)
    return figure


def oracle_scores(harness: Harness, X, sex, age, target: dict, task_epochs: int
                  ) -> dict[str, float]:
    """Sex accuracy and age MAE of task models trained and scored on the target site."""
    seed = harness.seeds[0]
    scores = {}
    for task, labels, make, key in (("sex accuracy", sex, harness.brain_classifier, "accuracy"),
                                    ("age MAE", age, harness.brain_regressor, "mae")):
        model = make(seed, max_epochs=task_epochs).fit(X[target["train"]],
                                                       labels[target["train"]])
        scores[task] = task_scores(model, X[target["test"]], labels[target["test"]])[key]
    return scores


def run(harness: Harness, methods: list[str], task_epochs: int,
        istn_options: dict | None = None) -> pd.DataFrame:
    """The table: one row per direction and method."""
    c, seed = harness.config, harness.seeds[0]
    X, sex, age, site = harness.brain_data(seed, c.brain_travelling_subjects)
    mask = X != 0
    splits = harness.brain_splits(site)
    travelling = np.arange(len(SITE_NAMES) * c.brain_n_per_site, len(X))
    covariates = np.c_[age, sex].astype(np.float64)
    fit_rows = np.concatenate([splits[name]["train"] for name in SITE_NAMES])
    rows = []
    methods = sorted(methods, key=lambda m: (m == "oracle", METHODS.index(m)))
    for source_name, target_name in (SITE_NAMES, SITE_NAMES[::-1]):
        pictured, istn = {}, None
        s, t = splits[source_name], splits[target_name]
        target = SITE_NAMES.index(target_name)
        source_scans = travelling[site[travelling] != target]
        target_scans = travelling[site[travelling] == target]
        for method in methods:
            row = {"direction": f"{source_name}->{target_name}", "method": method}
            if method == "oracle":
                row.update(oracle_scores(harness, X, sex, age, t, task_epochs))
                rows.append(row)
                continue
            if method == "ISTN + z-score":
                if istn is None:
                    istn = normalised("ISTN", X, mask, site, covariates, fit_rows, target,
                                      harness, seed, istn_options)
                Y, Y_mask, deformation = istn
                Y = ZScoreNormaliser().fit_transform(Y, mask=Y_mask)
            else:
                Y, Y_mask, deformation = normalised(method, X, mask, site, covariates,
                                                    fit_rows, target, harness, seed,
                                                    istn_options)
                if method == "ISTN":
                    istn = Y, Y_mask, deformation
            score = site_classification_score(Y[s["test"]], Y[t["test"]],
                                              cv=min(5, c.brain_n_test),
                                              n_permutations=c.site_permutations,
                                              random_state=seed)
            row["site balanced accuracy"] = score["balanced_accuracy"]
            row["site p-value"] = score["p_value"]
            every_brain = Y_mask[s["test"]].all(axis=(0, 1)) & Y_mask[t["test"]].all(axis=(0, 1))
            effect = site_effect(Y[s["test"]], Y[t["test"]], mask=every_brain)
            row["site effect excess"] = effect["excess_rms"]
            row["site effect smooth share"] = effect["smooth_share"]
            row["intensity distance"] = intensity_distance(
                Y[s["test"]], Y[t["test"]], mask_a=Y_mask[s["test"]], mask_b=Y_mask[t["test"]])
            if len(travelling):
                pictured[method] = (Y[source_scans[0]], Y[target_scans[0]])
                both = Y_mask[source_scans] & Y_mask[target_scans]
                similarity = paired_similarity(Y[source_scans], Y[target_scans], mask=both)
                row.update({f"travelling {k}": v for k, v in similarity.mean().items()})
            deformation = dict(deformation)
            alongside = deformation.pop("task model alongside", None)
            row.update(deformation)
            if alongside is not None:
                row["sex accuracy alongside"] = task_scores(alongside, X[t["test"]],
                                                            sex[t["test"]])["accuracy"]
            if task_epochs:
                for task, labels, make, key in (("sex accuracy", sex, harness.brain_classifier,
                                                 "accuracy"),
                                                ("age MAE", age, harness.brain_regressor, "mae")):
                    model = make(seed, max_epochs=task_epochs).fit(Y[s["train"]],
                                                                   labels[s["train"]])
                    row[task] = task_scores(model, Y[t["test"]], labels[t["test"]])[key]
                    row[f"{task} on source"] = task_scores(model, Y[s["test"]],
                                                           labels[s["test"]])[key]
            rows.append(row)
            harness.progress(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else str(v)
                                       for k, v in row.items()))
        if pictured:
            save_figure(harness.out_dir / f"travelling-{source_name}2{target_name}.png",
                        travelling_figure(pictured, f"A travelling subject, {source_name} -> "
                                                    f"{target_name} (seed {seed})"))
    table = pd.DataFrame(rows)
    write_report(table, harness.out_dir / "brain-baselines")
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reproduce.py's tiny configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmark-output"))
    parser.add_argument("--task-epochs", type=int, default=5,
                        help="epochs of the sex / age task models (0: no task models)")
    parser.add_argument("--istn", action="store_true", help="add the ISTN row (slow on CPU)")
    parser.add_argument("--methods", nargs="+", choices=METHODS,
                        help="score only these methods (default: all; ISTN with --istn)")
    parser.add_argument("--istn-options", type=json.loads, default={},
                        help='ISTNAdapter settings over the harness\'s, as JSON, e.g. '
                             '\'{"max_epochs": 20}\'')
    parser.add_argument("--n-per-site", type=int, help="simulated subjects per site "
                        "(default the harness's 120)")
    parser.add_argument("--n-test", type=int, help="held-out subjects per site (default 30)")
    parser.add_argument("--shape", type=int, help="cube side of the volumes (default 32)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes simulating the scans (the data do not depend on it)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run from the command line; writes brain-baselines.{csv,md} into ``--out``."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = QUICK if args.quick else Config()
    if args.quick:
        config = replace(config, brain_n_per_site=12, brain_n_test=5, brain_shape=24,
                         brain_travelling_subjects=2)
    methods = list(args.methods or [m for m in METHODS if not m.startswith("ISTN")])
    if args.n_per_site:
        config = replace(config, brain_n_per_site=args.n_per_site)
    if args.n_test:
        config = replace(config, brain_n_test=args.n_test)
    if args.shape:
        config = replace(config, brain_shape=args.shape)
    config = replace(config, brain_jobs=args.jobs)
    if args.istn and "ISTN" not in methods:
        methods.append("ISTN")
    harness = Harness(config, args.out, [args.seed])
    table = run(harness, methods, 1 if args.quick else args.task_epochs, args.istn_options)
    print(to_markdown(table), flush=True)


if __name__ == "__main__":
    main()
