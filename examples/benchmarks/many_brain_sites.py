"""Many brain sites to one: three simulated source sites mapped to one target by one ISTN.

``simulate_brain_sites(n_sites=4)`` gives ``camcan``, ``ukbb``, ``site2`` and
``site3``, with travelling subjects scanned at every site. For each seed, one
``ISTNAdapter(multi_source="conditioned", stn="affine")`` (the brain harness's
ITN + affine settings, :mod:`reproduce`) maps the training images of the three
source sites (``camcan``, ``site2``, ``site3`` for the default target ``ukbb``)
to the target's. Every mapped scan is cut to its own brain mask warped by the
same deformation (:func:`brain_baselines.mapped_inside_the_brain`), and the
masks are ``X != 0``, as in :mod:`brain_baselines`.

Rows, ``mapping`` ``none`` (the images as simulated) or ``conditioned`` (the
source scans mapped by their own site), and ``source`` one source site or
``pooled`` (all three):

``site_bacc``
    ``pooled`` only: balanced accuracy of a linear classifier telling the four
    sites' held-out subjects apart
    (:func:`~istn_sk.harmonisation.multi_site_classification_score`, chance 0.25).
``site_bacc_vs_target``
    The same classifier telling the source's held-out subjects (a site's, or
    the three pooled) from the target's (chance 0.5).
``intensity_distance``
    Wasserstein distance of the voxel intensities inside the masks, held-out
    source subjects against held-out target subjects.
``travelling_mae``, ``travelling_psnr``, ``travelling_ssim``
    Each travelling subject's source scan against the same subject's target
    scan, inside both masks (:func:`~istn_sk.harmonisation.paired_similarity`).
``sex_accuracy``
    ``pooled`` only: a sex classifier (the harness's) trained on the pooled
    source training images and scored on the target's held-out subjects.

Each seed appends its rows to ``OUT/many-brain-sites.csv``::

    OMP_NUM_THREADS=1 python examples/benchmarks/many_brain_sites.py OUT --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brain_baselines import mapped_inside_the_brain
from many_sites import append_rows
from reproduce import QUICK, Config, Harness

from istn_sk.datasets import SITE_NAMES, simulate_brain_sites
from istn_sk.evaluate import task_scores
from istn_sk.harmonisation import (
    intensity_distance,
    multi_site_classification_score,
    paired_similarity,
)

N_SITES = 4
NAMES = (*SITE_NAMES, *(f"site{k}" for k in range(len(SITE_NAMES), N_SITES)))


def site_splits(site: np.ndarray, n_per_site: int, n_test: int) -> dict[int, dict]:
    """Training and held-out rows of each site's own subjects (travelling ones excluded)."""
    splits = {}
    for code in range(N_SITES):
        rows = np.flatnonzero(site[:N_SITES * n_per_site] == code)
        splits[code] = {"train": rows[:-n_test], "test": rows[-n_test:]}
    return splits


def measures(Y: np.ndarray, Y_mask: np.ndarray, site: np.ndarray, splits: dict,
             travelling: np.ndarray, sources: list[int], target: int,
             seed: int) -> list[dict]:
    """The rows of one mapping (``Y``: every image, source scans mapped or not)."""
    test = np.concatenate([splits[code]["test"] for code in range(N_SITES)])
    t_test = splits[target]["test"]
    rows = []
    for scope in ["pooled", *sources]:
        codes = sources if scope == "pooled" else [scope]
        s_test = np.concatenate([splits[code]["test"] for code in codes])
        both = np.r_[s_test, t_test]
        row = {"source": "pooled" if scope == "pooled" else NAMES[scope]}
        if scope == "pooled":
            row["site_bacc"] = multi_site_classification_score(
                Y[test], site[test], random_state=seed)["balanced_accuracy"]
        row["site_bacc_vs_target"] = multi_site_classification_score(
            Y[both], site[both] == target, random_state=seed)["balanced_accuracy"]
        row["intensity_distance"] = intensity_distance(
            Y[s_test], Y[t_test], mask_a=Y_mask[s_test], mask_b=Y_mask[t_test])
        # travelling scans come subject by subject, then site by site
        scans = travelling[np.isin(site[travelling], codes)]
        references = np.repeat(travelling[site[travelling] == target], len(codes))
        similarity = paired_similarity(Y[scans], Y[references],
                                       mask=Y_mask[scans] & Y_mask[references])
        row.update({f"travelling_{key}": value for key, value in similarity.mean().items()})
        rows.append(row)
    return rows


def run_seed(harness: Harness, seed: int, target: int, travelling_subjects: int,
             task_epochs: int) -> list[dict]:
    """Both mappings' rows of one seed."""
    c = harness.config
    harness.progress(f"seed {seed}: simulating {c.brain_n_per_site} subjects per site, "
                     f"{N_SITES} sites, {travelling_subjects} travelling subjects")
    X, sex, _, site = simulate_brain_sites(c.brain_n_per_site, c.brain_shape, seed,
                                           travelling_subjects=travelling_subjects,
                                           n_sites=N_SITES)
    mask = X != 0
    splits = site_splits(site, c.brain_n_per_site, c.brain_n_test)
    travelling = np.arange(N_SITES * c.brain_n_per_site, len(X))
    sources = [code for code in range(N_SITES) if code != target]
    sample_domain = np.where(site == target, -1, site + 1)
    train = np.concatenate([splits[code]["train"] for code in range(N_SITES)])
    s_train = np.concatenate([splits[code]["train"] for code in sources])
    clock = time.perf_counter()
    adapter = harness.adapter(seed, nf=c.brain_nf, max_epochs=c.brain_istn_epochs,
                              batch_size=c.brain_batch_size, stn="affine",
                              multi_source="conditioned")
    adapter.fit(X[train], sample_domain=sample_domain[train])
    fit_s = time.perf_counter() - clock
    harness.progress(f"seed {seed}: conditioned ISTN fitted in {fit_s:.0f} s")
    mapped = mapped_inside_the_brain(adapter, X, mask, site != target, sample_domain)[:2]
    rows = []
    for mapping, (Y, Y_mask) in (("none", (X, mask)), ("conditioned", mapped)):
        found = measures(Y, Y_mask, site, splits, travelling, sources, target, seed)
        model = harness.brain_classifier(seed, max_epochs=task_epochs).fit(Y[s_train],
                                                                            sex[s_train])
        found[0]["sex_accuracy"] = task_scores(model, Y[splits[target]["test"]],
                                               sex[splits[target]["test"]])["accuracy"]
        if mapping == "conditioned":
            found[0]["fit_s"] = fit_s
        for row in found:
            rows.append({"seed": seed, "target": NAMES[target], "mapping": mapping, **row,
                         "n_per_site": c.brain_n_per_site, "n_test": c.brain_n_test,
                         "shape": c.brain_shape, "istn_epochs": c.brain_istn_epochs,
                         "task_epochs": task_epochs, "threads": torch.get_num_threads()})
            harness.progress(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in rows[-1].items()))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--target", choices=NAMES, default="ukbb")
    parser.add_argument("--n-per-site", type=int, default=80, help="subjects per site")
    parser.add_argument("--n-test", type=int, default=30, help="held-out subjects per site")
    parser.add_argument("--travelling", type=int, default=20, help="travelling subjects")
    parser.add_argument("--istn-epochs", type=int, default=Config.brain_istn_epochs)
    parser.add_argument("--task-epochs", type=int, default=5,
                        help="epochs of the sex classifiers (brain_baselines.py's default)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run from the command line; appends every seed's rows to ``OUT/many-brain-sites.csv``."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        config = replace(QUICK, brain_n_per_site=12, brain_n_test=5, brain_shape=24)
        args.travelling, args.task_epochs = 2, 1
    else:
        config = replace(Config(), brain_n_per_site=args.n_per_site, brain_n_test=args.n_test,
                         brain_istn_epochs=args.istn_epochs)
    harness = Harness(config, args.out, args.seeds)
    path = args.out / "many-brain-sites.csv"
    for seed in args.seeds:
        rows = run_seed(harness, seed, NAMES.index(args.target), args.travelling,
                        args.task_epochs)
        append_rows(rows, path)
    print(pd.read_csv(path).to_string(), flush=True)


if __name__ == "__main__":
    main()
