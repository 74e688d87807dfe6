"""Does A -> C (slant only) shift a task model? The suite's task network against a paper-style head.

The paper's Morpho-MNIST classifier (its Appendix C) ends in a convolution
that maps the last 4x4 feature map to 1x1, so it keeps where features are;
the library's ``TaskNetwork`` averages its last map over positions. If slant
hurt only a position-aware head, that would explain why A -> C shows no shift
here. This trains both on 1,000 A digits (the suite's task budget) and scores
each on the test digits of every domain; one row per (head, seed) goes to
``OUT/slant-shift.csv``::

    python examples/benchmarks/slant_shift.py OUT --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from suite import TASK
from torch import nn

from istn_sk import TaskClassifier
from istn_sk.datasets import load_morpho_mnist
from istn_sk.nn._encoder import ConvEncoder


class PositionAwareHead(nn.Module):
    """The suite's encoder, then one convolution covering the whole last map (no averaging)."""

    def __init__(self, spatial_dims: int, in_channels: int, image_shape, n_outputs: int = 3,
                 nf: int = 16) -> None:
        super().__init__()
        self.encoder = ConvEncoder(spatial_dims, in_channels, tuple(image_shape), nf,
                                   norm_kind="batch", p_dropout=0.5)
        with torch.no_grad():
            last = self.encoder(torch.zeros(2, in_channels, *image_shape)).shape[2:]
        self.head = nn.Conv2d(self.encoder.out_channels, n_outputs, kernel_size=tuple(last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``(n, n_outputs)``."""
        return self.head(self.encoder(x)).flatten(1)


def main() -> None:
    """Parse the command line and append one row per (head, seed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "slant-shift.csv"
    for seed in args.seeds:
        X, y = load_morpho_mnist("A", "train", args.n_train, random_state=seed)
        for head, module in (("global mean (TaskNetwork)", None),
                             ("position-aware 4x4 -> 1x1", PositionAwareHead)):
            options = {} if module is None else {"module": module}
            model = TaskClassifier(**TASK, **options, random_state=seed).fit(X, y)
            row = {"head": head, "seed": seed}
            for domain in "ABCD":
                X_test, y_test = load_morpho_mnist(domain, "test", 250, random_state=seed)
                row[domain] = float(np.mean(model.predict(X_test) == y_test))
            pd.DataFrame([row]).to_csv(path, mode="a", header=not path.exists(), index=False)
            print(row, flush=True)


if __name__ == "__main__":
    main()
