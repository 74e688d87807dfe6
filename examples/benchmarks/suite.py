"""The shift suite: one adapter setting, Morpho-MNIST A -> B / C / D, several seeds.

For each target domain and seed it fits ``ISTNAdapter(**setting)`` on unlabelled
source and target training digits (with the source labels when the setting
trains the task model alongside, ``"alongside": true``), then scores on the
*unmodified* target test digits:

* ``alongside``: the task model trained alongside (``adapter.task_``);
* ``scratch``: a fresh task model trained on the final S2T (the ``Pipeline`` path);
  ``scratch_shift`` the same with the ``shift`` augmentation policy;
* ``handover``: the model trained alongside, fine-tuned 6 epochs on the final S2T;
* ``no_da`` / ``oracle``: a task model trained on S / on labelled T (per seed,
  cached in the output folder);
* content kept: a T oracle's accuracy on the mapped source *test* digits against
  their source labels (``oracle_on_s2t``), and the fraction of fractured /
  swollen digits it still finds fractured / swollen (``fractures_kept``,
  ``swellings_kept``; Morpho-MNIST labels 1 and 2);
* paired truth: SSIM and MAE of the mapped source test digits against the true
  target rendering of the same digits with the same perturbations
  (``load_morpho_mnist(target, "test", digits_of=source)``; ``paired_ssim``,
  ``paired_mae``), and of the unmapped source digits (``unmapped_ssim``,
  ``unmapped_mae``). Training stays unpaired.

``--histogram-matching`` runs the intensity baseline instead (``scratch`` and
``finetuned``: ``T_S`` fine-tuned 6 epochs on the matched digits); give it its own
``OUT``, as its rows have other columns. Each run appends one row to
``OUT/suite.csv``. Run::

    python examples/benchmarks/suite.py OUT --name full_range \\
        --setting '{"itn_output": "full_range", "alongside": true}' --targets B D --seeds 0 1 2

``--epoch-scores`` also appends the label-free selection candidates of every
epoch (:mod:`label_free_scorers`) to ``OUT/epochs.csv``. Torch uses
``--threads`` threads (results depend on the thread count through the order of
floating-point sums; the brief asks for 1 and 2).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from baselines import match_histograms
from label_free_scorers import SnapshotClassifier, snapshot, snapshot_scores
from skorch.callbacks import Callback

from istn_sk import ISTNAdapter, TaskClassifier
from istn_sk.datasets import load_morpho_mnist
from istn_sk.harmonisation import paired_similarity

TASK = {"nf": 16, "lr": 1e-3, "max_epochs": 12, "batch_size": 32}
ADAPTER = {"stn": None, "nf": 8, "lr": 1e-3, "consistency_weight": 10.0, "max_epochs": 20,
           "batch_size": 32}
STN_TARGETS = {"C": "affine", "D": "affine"}
SHOWN = ("alongside", "scratch", "scratch_shift", "handover", "finetuned", "oracle_on_s2t",
         "no_da", "oracle", "dis_loss", "gan_loss", "fit_s")


def accuracy(model, X, y) -> float:
    """Fraction of ``X`` that ``model`` labels as ``y``."""
    return float(np.mean(model.predict(X) == y))


def splits(source: str, target: str, seed: int, n_train: int, n_test: int) -> tuple:
    """``(X, y)`` of the source and target training digits, then of their test digits."""
    return tuple(load_morpho_mnist(domain, split, n, random_state=seed)
                 for domain, split, n in ((source, "train", n_train), (target, "train", n_train),
                                          (source, "test", n_test), (target, "test", n_test)))


def reference_scores(out: Path, source: str, target: str, seed: int, n_train: int,
                     data: dict) -> dict[str, float]:
    """No-adaptation and oracle accuracies on the target test set, cached per seed."""
    cache = out / "references.csv"
    table = pd.read_csv(cache) if cache.exists() else pd.DataFrame(
        columns=["source", "target", "seed", "n_train", "no_da", "oracle"])
    hit = table[(table.source == source) & (table.target == target) & (table.seed == seed)
                & (table.n_train == n_train)]
    if len(hit):
        return {"no_da": float(hit.no_da.iloc[0]), "oracle": float(hit.oracle.iloc[0])}
    Xs, ys, Xt, yt, Xt_test, yt_test = data
    no_da = accuracy(TaskClassifier(**TASK, random_state=seed).fit(Xs, ys), Xt_test, yt_test)
    oracle = accuracy(TaskClassifier(**TASK, random_state=seed).fit(Xt, yt), Xt_test, yt_test)
    row = {"source": source, "target": target, "seed": seed, "n_train": n_train,
           "no_da": no_da, "oracle": oracle}
    pd.concat([table, pd.DataFrame([row])]).to_csv(cache, index=False)
    return {"no_da": no_da, "oracle": oracle}


class EpochDiagnostics(Callback):
    """Per epoch: the true target accuracy of the model trained alongside, and label-free scores.

    Measurement only (``target_acc`` reads target test labels, which no fit
    ever sees). Each epoch's snapshot is what ``transform`` and ``predict``
    would use had training stopped there (weight averages loaded, batch-norm
    statistics recomputed); the label-free candidates of
    :mod:`label_free_scorers` see the mapped source *test* digits with their
    labels and ``n_target`` unlabelled target training digits.
    """

    def __init__(self, source_train, source_test, target_test, target_train,
                 n_target: int = 300) -> None:
        self.source_train = torch.from_numpy(source_train)
        self.source_test = source_test
        self.target_test = target_test
        self.target_train = target_train[:n_target]
        self.rows: list[dict] = []

    def on_epoch_end(self, net, **kwargs) -> None:
        if net.task_net is None:
            return
        Xt, yt = self.target_test
        istn, task = snapshot(net, self.source_train)
        scores = snapshot_scores(istn, task, net.discriminator_["target"], self.source_test,
                                 self.target_train)
        self.rows.append({"epoch": len(net.history),
                          "target_acc": accuracy(SnapshotClassifier(task), Xt, yt), **scores})


def run_one(setting: dict, source: str, target: str, seed: int, n_train: int,
            out: Path, n_test: int = 250, epoch_scores: bool = False) -> tuple[dict, list[dict]]:
    """Fit one adapter and score every path on the unmodified target test digits.

    With ``epoch_scores`` (and a task model trained alongside) it also returns
    one row per epoch of :class:`EpochDiagnostics`.
    """
    (Xs, ys), (Xt, yt), (Xs_test, ys_test), (Xt_test, yt_test) = splits(
        source, target, seed, n_train, n_test)
    diagnostics = EpochDiagnostics(Xs, (Xs_test, ys_test), (Xt_test, yt_test), Xt)
    references = reference_scores(out, source, target, seed, n_train,
                                  (Xs, ys, Xt, yt, Xt_test, yt_test))
    options = dict(setting)
    alongside = options.pop("alongside", False)
    params = {**ADAPTER, "stn": STN_TARGETS.get(target), **options}
    if alongside:
        params["task"] = TaskClassifier(**TASK, random_state=seed)
    X = np.concatenate([Xs, Xt])
    sd = np.r_[np.ones(len(Xs), int), -2 * np.ones(len(Xt), int)]
    y = np.r_[ys, -np.ones(len(Xt), int)]
    start = time.perf_counter()
    adapter = ISTNAdapter(**params, callbacks=[diagnostics] if epoch_scores else None,
                          random_state=seed)
    adapter.fit(X, y, sample_domain=sd)
    seconds = time.perf_counter() - start
    s2t = adapter.transform(Xs)
    scratch = TaskClassifier(**TASK, random_state=seed).fit(s2t, ys)
    scratch_shift = TaskClassifier(**TASK, augmentation="shift", random_state=seed).fit(s2t, ys)
    handover = (TaskClassifier(**{**TASK, "max_epochs": 6}, random_state=seed,
                               init_params=adapter.task_.module_.state_dict()).fit(s2t, ys)
                if alongside else None)
    history = adapter.history_
    oracle = TaskClassifier(**TASK, random_state=seed).fit(Xt, yt)
    mapped_test = adapter.transform(Xs_test)
    content = oracle.predict(mapped_test)
    truth = load_morpho_mnist(target, "test", n_test, random_state=seed, digits_of=source)[0]
    paired = paired_similarity(mapped_test, truth).mean()
    unmapped = paired_similarity(Xs_test, truth).mean()
    row = {"source": source, "target": target, "seed": seed, "n_train": n_train,
           "threads": torch.get_num_threads(), **references,
           "alongside": accuracy(adapter.task_, Xt_test, yt_test) if alongside else np.nan,
           "scratch": accuracy(scratch, Xt_test, yt_test),
           "scratch_shift": accuracy(scratch_shift, Xt_test, yt_test),
           "handover": accuracy(handover, Xt_test, yt_test) if alongside else np.nan,
           "oracle_on_s2t": float(np.mean(content == ys_test)),
           "fractures_kept": float(np.mean(content[ys_test == 1] == 1)),
           "swellings_kept": float(np.mean(content[ys_test == 2] == 2)),
           "paired_ssim": paired["ssim"], "paired_mae": paired["mae"],
           "unmapped_ssim": unmapped["ssim"], "unmapped_mae": unmapped["mae"],
           "ink_s2t": float(np.mean(s2t > 0)), "ink_t": float(np.mean(Xt > 0)),
           "dis_loss": history[-1, "dis_loss"], "gan_loss": history[-1, "gan_loss"],
           "fit_s": seconds}
    for epoch_row in diagnostics.rows:
        epoch_row.update(source=source, target=target, seed=seed)
    return row, diagnostics.rows


def run_histogram_matching(source: str, target: str, seed: int, n_train: int, out: Path,
                           n_test: int = 250) -> dict:
    """The intensity baseline: source digits histogram-matched to the pooled target digits.

    Scores a fresh task model trained on the matched images (``scratch``) and
    ``T_S`` fine-tuned on them for 6 epochs (``finetuned``), as the harness's
    histogram-matching rows do, and the T oracle's reading of the matched
    source test digits (``oracle_on_s2t``).
    """
    (Xs, ys), (Xt, yt), (Xs_test, ys_test), (Xt_test, yt_test) = splits(
        source, target, seed, n_train, n_test)
    references = reference_scores(out, source, target, seed, n_train,
                                  (Xs, ys, Xt, yt, Xt_test, yt_test))
    matched = match_histograms(Xs, Xt)
    scratch = TaskClassifier(**TASK, random_state=seed).fit(matched, ys)
    t_s = TaskClassifier(**TASK, random_state=seed).fit(Xs, ys)
    finetuned = TaskClassifier(**{**TASK, "max_epochs": 6}, random_state=seed,
                               init_params=t_s.module_.state_dict()).fit(matched, ys)
    oracle = TaskClassifier(**TASK, random_state=seed).fit(Xt, yt)
    content = oracle.predict(match_histograms(Xs_test, Xt))
    return {"source": source, "target": target, "seed": seed, "n_train": n_train,
            "threads": torch.get_num_threads(), **references, "alongside": np.nan,
            "scratch": accuracy(scratch, Xt_test, yt_test), "handover": np.nan,
            "finetuned": accuracy(finetuned, Xt_test, yt_test),
            "oracle_on_s2t": float(np.mean(content == ys_test))}


def main() -> None:
    """Parse the command line and append one row per (target, seed) to ``OUT/suite.csv``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--name", required=True, help="label of the setting in the table")
    parser.add_argument("--setting", default="{}", help="ISTNAdapter options as JSON")
    parser.add_argument("--source", default="A")
    parser.add_argument("--targets", nargs="+", default=["B"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=250)
    parser.add_argument("--histogram-matching", action="store_true",
                        help="run the intensity baseline instead of an adapter")
    parser.add_argument("--epoch-scores", action="store_true",
                        help="record the label-free scores of every epoch in OUT/epochs.csv")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    setting = json.loads(args.setting)
    for target in args.targets:
        for seed in args.seeds:
            if args.histogram_matching:
                result, epochs = run_histogram_matching(args.source, target, seed, args.n_train,
                                                        args.out, args.n_test), []
            else:
                result, epochs = run_one(setting, args.source, target, seed, args.n_train,
                                         args.out, args.n_test, args.epoch_scores)
            row = {"name": args.name, "setting": json.dumps(setting), **result}
            for name, rows in (("suite.csv", [row]), ("epochs.csv", epochs)):
                if rows:
                    path = args.out / name
                    pd.DataFrame(rows).assign(name=args.name).to_csv(
                        path, mode="a", header=not path.exists(), index=False)
            scores = " ".join(f"{key} {row[key]:.3f}" for key in SHOWN
                              if key in row and not np.isnan(row[key]))
            print(f"{args.name} {args.source}->{target} seed {seed}: {scores}", flush=True)

if __name__ == "__main__":
    main()
