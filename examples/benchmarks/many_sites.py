"""Many sites to one: Morpho-MNIST B, C and D mapped to A, three ways, several seeds.

For each seed, with ``n`` training digits per site (source labels only; A's
labels are read for nothing but the oracle and the scores):

* ``pooled_unmapped``: a task model trained on the pooled B, C, D digits;
* ``conditioned`` / ``independent``: one ``ISTNAdapter(multi_source=...)`` on the
  three sources and A, with the task model trained alongside (``alongside``) and a
  fresh task model on the pooled S2T (``scratch``);
* ``per_site_pairs``: three two-site adapters (B -> A, C -> A, D -> A, the suite's
  defaults), a fresh task model on their pooled S2T;
* ``oracle``: a task model trained on labelled A.

Every accuracy is on the unmodified A test digits. ``scratch_B``, ``scratch_C``
and ``scratch_D`` are fresh task models trained on one source site's digits
alone: as they are (``pooled_unmapped`` row, the two-site no-DA baselines) and
mapped by the conditioned adapter (``conditioned`` row). The site classifiers
(:func:`~istn_sk.harmonisation.multi_site_classification_score`) read the
held-out test digits of every site (250 each): ``site_bacc`` tells B, C, D and A
apart (chance 0.25), ``site_bacc_vs_target`` the pooled sources from A (chance
0.5); raw in the ``pooled_unmapped`` row, mapped by the method in the adapters'
rows. ``--methods`` picks the adapters (all by default). Each seed appends one row
per method to ``OUT/many-sites.csv`` (a file with fewer columns, written before,
gains the new ones, empty in its old rows)::

    python examples/benchmarks/many_sites.py OUT --seeds 0 1 2 --n-train 500
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from suite import ADAPTER, STN_TARGETS, TASK, accuracy

from istn_sk import ISTNAdapter, TaskClassifier
from istn_sk.datasets import load_morpho_mnist, load_morpho_mnist_sites
from istn_sk.harmonisation import multi_site_classification_score

SOURCES = ("B", "C", "D")
METHODS = ("conditioned", "independent", "per_site_pairs")
HELD_OUT = 250


def site_scores(held_out: np.ndarray, held_out_sites: np.ndarray, seed: int) -> dict[str, float]:
    """The two site classifiers of the module docstring on the held-out digits."""
    four = multi_site_classification_score(held_out, held_out_sites, random_state=seed)
    two = multi_site_classification_score(held_out, held_out_sites < 0, random_state=seed)
    return {"site_bacc": four["balanced_accuracy"],
            "site_bacc_vs_target": two["balanced_accuracy"]}


def per_site_accuracies(images: np.ndarray, y: np.ndarray, sd: np.ndarray, seed: int,
                        X_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """``scratch_<site>``: a fresh task model on each source site's ``images`` alone."""
    return {f"scratch_{domain}": accuracy(TaskClassifier(**TASK, random_state=seed).fit(
        images[sd == site], y[sd == site]), X_test, y_test)
        for site, domain in enumerate(SOURCES, start=1)}


def run_seed(seed: int, n_train: int, max_epochs: int,
             methods: tuple[str, ...] = METHODS) -> list[dict]:
    """Every method of the module docstring (the adapters in ``methods``) for one seed."""
    X, y, sd = load_morpho_mnist_sites(SOURCES, "A", n_samples=n_train, random_state=seed)
    X_test, y_test = load_morpho_mnist("A", "test", HELD_OUT, random_state=seed)
    held_out, _, held_out_sd = load_morpho_mnist_sites(SOURCES, "A", "test", HELD_OUT,
                                                       random_state=seed)
    source = sd > 0
    params = {**ADAPTER, "stn": "affine", "max_epochs": max_epochs}
    rows = []

    def add(method: str, **scores) -> None:
        rows.append({"method": method, "seed": seed, "n_train": n_train,
                     "threads": torch.get_num_threads(), **scores})

    add("pooled_unmapped", scratch=accuracy(
        TaskClassifier(**TASK, random_state=seed).fit(X[source], y[source]), X_test, y_test),
        **per_site_accuracies(X, y, sd, seed, X_test, y_test),
        **site_scores(held_out, held_out_sd, seed))
    add("oracle", scratch=accuracy(
        TaskClassifier(**TASK, random_state=seed).fit(X[~source], y[~source]), X_test, y_test))
    masked = np.where(source, y, -1)
    for mode in [method for method in ("conditioned", "independent") if method in methods]:
        start = time.perf_counter()
        adapter = ISTNAdapter(**params, multi_source=mode, random_state=seed,
                              task=TaskClassifier(**TASK, random_state=seed))
        adapter.fit(X, masked, sample_domain=sd)
        fit_s = time.perf_counter() - start
        s2t = adapter.transform(X, sample_domain=sd)
        scratch = TaskClassifier(**TASK, random_state=seed).fit(s2t[source], y[source])
        per_site = per_site_accuracies(s2t, y, sd, seed, X_test, y_test) \
            if mode == "conditioned" else {}
        add(mode, alongside=accuracy(adapter.task_, X_test, y_test),
            scratch=accuracy(scratch, X_test, y_test), fit_s=fit_s, **per_site,
            **site_scores(adapter.transform(held_out, sample_domain=held_out_sd),
                          held_out_sd, seed))
    if "per_site_pairs" in methods:
        start = time.perf_counter()
        mapped, mapped_held_out = [], held_out.copy()
        for site, domain in enumerate(SOURCES, start=1):
            rows_of_pair = (sd == site) | ~source
            pair = ISTNAdapter(**{**params, "stn": STN_TARGETS.get(domain)}, random_state=seed,
                               task=TaskClassifier(**TASK, random_state=seed))
            pair.fit(X[rows_of_pair], masked[rows_of_pair], sample_domain=sd[rows_of_pair])
            mapped.append(pair.transform(X[sd == site]))
            mapped_held_out[held_out_sd == site] = pair.transform(held_out[held_out_sd == site])
        fit_s = time.perf_counter() - start
        scratch = TaskClassifier(**TASK, random_state=seed).fit(np.concatenate(mapped),
                                                                y[source])
        add("per_site_pairs", scratch=accuracy(scratch, X_test, y_test), fit_s=fit_s,
            **site_scores(mapped_held_out, held_out_sd, seed))
    return rows


def append_rows(rows: list[dict], path: Path) -> None:
    """Append ``rows`` to the CSV at ``path``, widening its columns if they are new."""
    table = pd.DataFrame(rows)
    if path.exists():
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    table.to_csv(path, index=False)


def main() -> None:
    """Parse the command line and append the rows of every seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--max-epochs", type=int, default=ADAPTER["max_epochs"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="adapters to run (the baselines always run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "many-sites.csv"
    for seed in args.seeds:
        rows = run_seed(seed, args.n_train, args.max_epochs, tuple(args.methods))
        append_rows(rows, path)
        for row in rows:
            scores = " ".join(f"{key} {value:.3f}" for key, value in row.items()
                              if isinstance(value, float))
            print(f"{row['method']} seed {seed}: {scores}", flush=True)


if __name__ == "__main__":
    main()
