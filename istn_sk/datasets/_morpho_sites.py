"""Several Morpho-MNIST domains as source sites mapped to one target domain."""

from __future__ import annotations

import os

import numpy as np

from ._morpho_mnist import DOMAINS, _check_choice, load_morpho_mnist


def load_morpho_mnist_sites(
    sources: tuple[str, ...] = ("B", "C", "D"),
    target: str = "A",
    split: str = "train",
    n_samples: int | None = None,
    random_state: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    n_jobs: int | None = 1,
    verbose: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Morpho-MNIST source domains as sites ``1 .. k`` and one target domain, stacked.

    The many-sites-to-one set-up of ``ISTNAdapter.fit(X, sample_domain=sd)``
    (docs/many-sites.md): B, C, D -> A by default.

    Parameters
    ----------
    sources : sequence of {"A", "B", "C", "D"}, default=("B", "C", "D")
        Distinct source domains; the ``i``-th (from 0) gets ``sample_domain = i + 1``.
    target : {"A", "B", "C", "D"}, default="A"
        The target domain, not among ``sources``.
    split, n_samples, random_state, cache_dir, n_jobs, verbose
        As in :func:`~istn_sk.datasets.load_morpho_mnist`; ``n_samples`` is
        per domain.

    Returns
    -------
    X : ndarray of float32, shape (n, 1, 28, 28)
        The sources' rows in the order of ``sources``, then the target's, in [-1, 1].
    y : ndarray of int64, shape (n,)
        True labels of every row; mask the target ones before fitting.
    sample_domain : ndarray of int64, shape (n,)
        ``1 .. k`` for the source rows, ``-1`` for the target rows.

    Raises
    ------
    ValueError
        Unknown domains, no source, a repeated source, or the target among the sources.
    """
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    if not sources:
        raise ValueError("sources must name at least one domain")
    for name in sources:
        _check_choice("sources", name, tuple(DOMAINS))
    _check_choice("target", target, tuple(DOMAINS))
    if len(set(sources)) != len(sources):
        raise ValueError(f"sources must be distinct, got {list(sources)}")
    if target in sources:
        raise ValueError(f"the target {target!r} is also a source ({list(sources)})")
    options = dict(split=split, n_samples=n_samples, random_state=random_state,
                   cache_dir=cache_dir, n_jobs=n_jobs, verbose=verbose)
    parts = [(*load_morpho_mnist(name, **options), code)
             for code, name in [*((i + 1, s) for i, s in enumerate(sources)), (-1, target)]]
    X = np.concatenate([images for images, _, _ in parts])
    y = np.concatenate([labels for _, labels, _ in parts])
    sample_domain = np.concatenate([np.full(len(labels), code, dtype=np.int64)
                                    for _, labels, code in parts])
    return X, y, sample_domain
