"""Measure how much the simulated site shift hurts a sex classifier.

A stand-in task classifier (standardised voxels of the images average-pooled
``--pool`` times per axis, then L2-regularised logistic regression) is trained
on one site and evaluated by 5-fold cross-validation within that site and on
all of the other site. A domain classifier of the same kind predicts the site
from pooled data (5-fold cross-validation). Run with one thread::

    OMP_NUM_THREADS=1 python examples/calibrate_brain_shift.py --n-per-site 150
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from istn_sk.datasets import SITE_NAMES, simulate_brain_sites


def pool(X: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool ``(n, 1, D, H, W)`` volumes by ``factor`` and flatten them."""
    n, _, *shape = X.shape
    cropped = X[:, 0, : shape[0] // factor * factor, : shape[1] // factor * factor]
    cropped = cropped[..., : shape[2] // factor * factor]
    d, h, w = (s // factor for s in shape)
    blocks = cropped.reshape(n, d, factor, h, factor, w, factor)
    return blocks.mean(axis=(2, 4, 6)).reshape(n, -1)


def classifier(C: float) -> Pipeline:
    """The stand-in classifier."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-site", type=int, default=150)
    parser.add_argument("--shape", type=int, default=64)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--C", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()

    start = time.perf_counter()
    X, y_sex, _, site = simulate_brain_sites(
        n_per_site=args.n_per_site, shape=args.shape, random_state=args.seed, n_jobs=args.n_jobs
    )
    elapsed = time.perf_counter() - start
    print(
        f"simulated {len(X)} subjects at {args.shape}^3 in {elapsed:.1f} s "
        f"({elapsed / len(X) * args.n_jobs:.2f} s per subject per worker)"
    )
    features = pool(X, args.pool)
    folds = StratifiedKFold(5, shuffle=True, random_state=args.seed)
    for train_site in (0, 1):
        test_site = 1 - train_site
        train, test = site == train_site, site == test_site
        within = cross_val_score(classifier(args.C), features[train], y_sex[train], cv=folds)
        model = classifier(args.C).fit(features[train], y_sex[train])
        across = model.score(features[test], y_sex[test])
        print(
            f"sex, trained on {SITE_NAMES[train_site]}: within-site "
            f"{within.mean():.3f} +- {within.std():.3f}, on {SITE_NAMES[test_site]} "
            f"{across:.3f}, drop {100 * (within.mean() - across):.1f} points"
        )
    domain = cross_val_score(classifier(args.C), features, site, cv=folds)
    print(f"site classifier: {domain.mean():.3f} +- {domain.std():.3f}")


if __name__ == "__main__":
    main()
