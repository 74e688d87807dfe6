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

Every score is the accuracy on the unmodified A test digits. Each seed appends
one row per method to ``OUT/many-sites.csv``::

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

SOURCES = ("B", "C", "D")


def run_seed(seed: int, n_train: int, max_epochs: int) -> list[dict]:
    """Every method of the module docstring for one seed."""
    X, y, sd = load_morpho_mnist_sites(SOURCES, "A", n_samples=n_train, random_state=seed)
    X_test, y_test = load_morpho_mnist("A", "test", 250, random_state=seed)
    source = sd > 0
    params = {**ADAPTER, "stn": "affine", "max_epochs": max_epochs}
    rows = []

    def add(method: str, **scores) -> None:
        rows.append({"method": method, "seed": seed, "n_train": n_train,
                     "threads": torch.get_num_threads(), **scores})

    add("pooled_unmapped", scratch=accuracy(
        TaskClassifier(**TASK, random_state=seed).fit(X[source], y[source]), X_test, y_test))
    add("oracle", scratch=accuracy(
        TaskClassifier(**TASK, random_state=seed).fit(X[~source], y[~source]), X_test, y_test))
    masked = np.where(source, y, -1)
    for mode in ("conditioned", "independent"):
        start = time.perf_counter()
        adapter = ISTNAdapter(**params, multi_source=mode, random_state=seed,
                              task=TaskClassifier(**TASK, random_state=seed))
        adapter.fit(X, masked, sample_domain=sd)
        s2t = adapter.transform(X[source], sample_domain=sd[source])
        scratch = TaskClassifier(**TASK, random_state=seed).fit(s2t, y[source])
        add(mode, alongside=accuracy(adapter.task_, X_test, y_test),
            scratch=accuracy(scratch, X_test, y_test), fit_s=time.perf_counter() - start)
    start = time.perf_counter()
    mapped = []
    for site, domain in enumerate(SOURCES, start=1):
        rows_of_pair = (sd == site) | ~source
        pair = ISTNAdapter(**{**params, "stn": STN_TARGETS.get(domain)}, random_state=seed,
                           task=TaskClassifier(**TASK, random_state=seed))
        pair.fit(X[rows_of_pair], masked[rows_of_pair], sample_domain=sd[rows_of_pair])
        mapped.append(pair.transform(X[sd == site]))
    scratch = TaskClassifier(**TASK, random_state=seed).fit(np.concatenate(mapped), y[source])
    add("per_site_pairs", scratch=accuracy(scratch, X_test, y_test),
        fit_s=time.perf_counter() - start)
    return rows


def main() -> None:
    """Parse the command line and append the rows of every seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--max-epochs", type=int, default=ADAPTER["max_epochs"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "many-sites.csv"
    for seed in args.seeds:
        rows = run_seed(seed, args.n_train, args.max_epochs)
        pd.DataFrame(rows).to_csv(path, mode="a", header=not path.exists(), index=False)
        for row in rows:
            scores = " ".join(f"{key} {row[key]:.3f}" for key in ("alongside", "scratch")
                              if key in row)
            print(f"{row['method']} seed {seed}: {scores}", flush=True)


if __name__ == "__main__":
    main()
