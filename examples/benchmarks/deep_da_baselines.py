"""Feature-level deep domain adaptation baselines (skada's DANN and DeepCORAL), suite splits.

The ISTN adapts images; DANN (Ganin et al. 2016) and DeepCORAL (Sun & Saenko
2016) adapt a classifier's features instead. Both are skada's implementations
(DANN with the domain classifier :class:`SigmoidDomainClassifier`, as skada
0.6's default cannot learn), trained here on the shift suite's Morpho-MNIST
splits (``suite.splits``: 1,000 labelled source and 1,000 unlabelled target
training digits per seed) with a task network of the suite's size (its
encoder, flattened, then a linear layer: the features the adaptation loss
aligns), and scored on the unmodified target test digits. ``source_only`` is
the same network and budget without the adaptation loss. Each (method,
target, seed) appends a row to ``OUT/deep-da.csv``::

    python examples/benchmarks/deep_da_baselines.py OUT --targets B D --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skada.deep import DANN, DeepCoral, SourceOnly
from skada.deep.modules import GradientReversalLayer
from suite import TASK, splits
from torch import nn

from istn_sk.nn._encoder import ConvEncoder

METHODS = ("source_only", "dann", "deep_coral")


class FlatFeatureNet(nn.Module):
    """The suite's task encoder, its output flattened (``features``), then a linear layer."""

    def __init__(self, image_shape=(28, 28), n_classes: int = 3, nf: int = 16) -> None:
        super().__init__()
        self.encoder = ConvEncoder(2, 1, image_shape, nf, norm_kind="batch", p_dropout=0.5)
        with torch.no_grad():
            n_features = self.encoder(torch.zeros(2, 1, *image_shape)).flatten(1).shape[1]
        self.features = nn.Flatten()
        self.head = nn.Linear(n_features, n_classes)
        self.n_features = n_features

    def forward(self, x: torch.Tensor, sample_weight=None) -> torch.Tensor:
        """Class scores; ``sample_weight`` (which skada passes along) is not used."""
        return self.head(self.features(self.encoder(x)))


class SigmoidDomainClassifier(nn.Module):
    """DANN's domain classifier (gradient reversal, 100 units, batch norm) ending in a sigmoid.

    skada 0.6's default ``DomainClassifier`` ends its single output in a
    softmax, which is 1 for every input: its BCE sits at the clamp (100) with
    no gradient, so the adaptation loss does nothing (measured here: the same
    predictions for ``reg`` 0, 1 and 100). This one ends in a sigmoid.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(num_features, 100), nn.BatchNorm1d(100),
                                        nn.ReLU(), nn.Linear(100, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, sample_weight=None) -> torch.Tensor:
        """The probability that each feature vector comes from the target domain."""
        return self.classifier(GradientReversalLayer.apply(x, 1.0)).squeeze(1)


def build(method: str, seed: int, reg: float):
    """A skada deep estimator for ``method`` with the suite's task budget."""
    torch.manual_seed(seed)
    module = FlatFeatureNet()
    common = {"layer_name": "features", "max_epochs": TASK["max_epochs"], "lr": TASK["lr"],
              "batch_size": TASK["batch_size"], "optimizer": torch.optim.Adam,
              "train_split": None, "verbose": 0}
    if method == "dann":
        return DANN(module, reg=reg, domain_classifier=SigmoidDomainClassifier(module.n_features),
                    **common)
    if method == "deep_coral":
        return DeepCoral(module, reg=reg, **common)
    return SourceOnly(module, **common)


def run(method: str, source: str, target: str, seed: int, n_train: int, reg: float) -> dict:
    """Train ``method`` on labelled source and unlabelled target digits; score on target test."""
    (Xs, ys), (Xt, _), _, (Xt_test, yt_test) = splits(source, target, seed, n_train, 250)
    X = np.concatenate([Xs, Xt]).astype(np.float32)
    y = np.r_[ys, -np.ones(len(Xt), int)]
    sd = np.r_[np.ones(len(Xs), int), -2 * np.ones(len(Xt), int)]
    estimator = build(method, seed, reg)
    estimator.fit(X, y, sample_domain=sd)
    predicted = estimator.predict(Xt_test.astype(np.float32),
                                  sample_domain=-2 * np.ones(len(Xt_test), int))
    return {"method": method, "source": source, "target": target, "seed": seed,
            "n_train": n_train, "reg": reg, "threads": torch.get_num_threads(),
            "accuracy": float(np.mean(predicted == yt_test))}


def main() -> None:
    """Parse the command line and append one row per (method, target, seed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--source", default="A")
    parser.add_argument("--targets", nargs="+", default=["B", "D"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--reg", type=float, default=1.0, help="weight of the adaptation loss")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "deep-da.csv"
    for target in args.targets:
        for seed in args.seeds:
            for method in args.methods:
                row = run(method, args.source, target, seed, args.n_train, args.reg)
                pd.DataFrame([row]).to_csv(path, mode="a", header=not path.exists(), index=False)
                print(f"{method} {args.source}->{target} seed {seed}: {row['accuracy']:.3f}",
                      flush=True)


if __name__ == "__main__":
    main()
