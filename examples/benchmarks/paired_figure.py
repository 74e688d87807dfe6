"""Explanation figure against the paired truth: A digits, their S2T, and their true T rendering.

Fits the adapter with the suite's defaults (task model trained alongside) on
one seed's A and target training digits, then draws ``explain`` on the first
fractured and swollen A *test* digits with, as the last row, the same digits
rendered in the target domain with the same fractures and swellings
(``load_morpho_mnist(target, "test", digits_of="A")``)::

    python examples/benchmarks/paired_figure.py docs/figures --target B --seed 0

``--setting`` (JSON) overrides adapter options and ``--suffix`` names the file
``morpho-A2<target>-paired<suffix>.png``, e.g. ``--setting
'{"content_losses": {"patch_nce": 1.0}}' --suffix -patch-nce``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from suite import ADAPTER, STN_TARGETS, TASK, splits

from istn_sk import ISTNAdapter, TaskClassifier
from istn_sk.datasets import load_morpho_mnist
from istn_sk.figures import explanation_grid, save_figure


def main() -> None:
    """Parse the command line, fit, and write ``OUT/morpho-A2<target>-paired<suffix>.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--target", default="B")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--setting", type=json.loads, default={},
                        help="adapter options as JSON, over the suite's defaults")
    parser.add_argument("--suffix", default="", help="appended to the file name")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (Xs, ys), (Xt, _), (Xs_test, ys_test), _ = splits("A", args.target, args.seed, 1000, 250)
    truth = load_morpho_mnist(args.target, "test", 250, random_state=args.seed, digits_of="A")[0]
    params = {**ADAPTER, "stn": STN_TARGETS.get(args.target), **args.setting}
    adapter = ISTNAdapter(**params, task=TaskClassifier(**TASK, random_state=args.seed),
                          random_state=args.seed)
    X = np.concatenate([Xs, Xt])
    sd = np.r_[np.ones(len(Xs), int), -2 * np.ones(len(Xt), int)]
    adapter.fit(X, np.r_[ys, -np.ones(len(Xt), int)], sample_domain=sd)
    rows = np.r_[np.flatnonzero(ys_test == 1)[:4], np.flatnonzero(ys_test == 2)[:4]]
    figure = explanation_grid(adapter.explain(Xs_test[rows]), truth[rows],
                              target_label=f"true {args.target}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = save_figure(args.out / f"morpho-A2{args.target}-paired{args.suffix}.png", figure)
    print(f"{path}: columns 0-3 fractured, 4-7 swollen A test digits", flush=True)


if __name__ == "__main__":
    main()
