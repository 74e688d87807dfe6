"""Dataset providers registered with the plugin registry, and registry look-ups.

A provider has ``make(out_dir, **options) -> Path`` (write the data set to a
folder, return its manifest) and ``load(**options) -> (X, y, sample_domain)``
(source rows ``sample_domain == 1`` first, then target rows ``-2``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._brain import load_brain_sites, make_brain_sites, simulate_brain_sites
from ._brain_scanner import SITES, site_index
from ._cache import prepare_out_dir, write_table
from ._morpho_mnist import (
    DOMAINS,
    SOURCE_DOMAIN,
    SPLITS,
    TARGET_DOMAIN,
    load_morpho_mnist,
    load_morpho_mnist_domains,
)

MORPHO_MANIFEST_COLUMNS = ("id", "image", "label", "digit", "domain", "split")


class MorphoMNIST:
    """The ``"morpho-mnist"`` data set: domains A-D of Morpho-MNIST."""

    def make(
        self,
        out_dir: str | os.PathLike[str],
        domains: tuple[str, ...] = tuple(DOMAINS),
        splits: tuple[str, ...] = tuple(SPLITS),
        n_samples: int | None = None,
        random_state: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        n_jobs: int | None = 1,
        verbose: int = 0,
        overwrite: bool = False,
    ) -> Path:
        """Write digits as 8-bit PNGs and a TSV manifest.

        Images go to ``<domain>/<split>/<id>.png`` (0 background, 255 ink);
        ``manifest.tsv`` has the columns ``id``, ``image`` (relative to the
        manifest), ``label`` (0 healthy, 1 fractured, 2 swollen), ``digit``
        (MNIST class), ``domain`` and ``split``.

        Parameters
        ----------
        out_dir : path-like
            Destination; must be empty unless ``overwrite`` is True.
        domains : tuple of str, default=("A", "B", "C", "D")
        splits : tuple of str, default=("train", "test")
        n_samples, random_state, cache_dir, n_jobs, verbose
            As in :func:`istn_sk.datasets.load_morpho_mnist`, per domain and split.
        overwrite : bool, default=False
            Write into a non-empty folder.

        Returns
        -------
        pathlib.Path
            The manifest.

        Raises
        ------
        FileExistsError
            ``out_dir`` is not empty and ``overwrite`` is False.
        """
        import pandas as pd
        from skimage.io import imsave

        out_dir = prepare_out_dir(out_dir, overwrite)
        rows = []
        for domain in domains:
            for split in splits:
                X, y, digits = load_morpho_mnist(
                    domain,
                    split,
                    n_samples=n_samples,
                    random_state=random_state,
                    cache_dir=cache_dir,
                    n_jobs=n_jobs,
                    verbose=verbose,
                    return_digits=True,
                )
                folder = out_dir / domain / split
                folder.mkdir(parents=True, exist_ok=True)
                pixels = np.round((X[:, 0] + 1.0) * 127.5).astype(np.uint8)
                for i, (image, label, digit) in enumerate(zip(pixels, y, digits, strict=True)):
                    name = f"{domain}-{split}-{i:04d}"
                    imsave(folder / f"{name}.png", image, check_contrast=False)
                    rows.append((name, f"{domain}/{split}/{name}.png", label, digit, domain, split))
        table = pd.DataFrame(rows, columns=list(MORPHO_MANIFEST_COLUMNS))
        return write_table(out_dir / "manifest.tsv", table)

    def load(self, **options: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source and target domains; see :func:`istn_sk.datasets.load_morpho_mnist_domains`."""
        return load_morpho_mnist_domains(**options)


class BrainSites:
    """The ``"brain-sites"`` data set: simulated multi-site 3D T1 MRI, sex labels."""

    def make(self, out_dir: str | os.PathLike[str], **options: Any) -> Path:
        """Write NIfTI files and ``manifest.tsv``; see :func:`istn_sk.datasets.make_brain_sites`."""
        return make_brain_sites(out_dir, **options)

    def load(
        self,
        manifest: str | os.PathLike[str] | None = None,
        source: str | list[str] | tuple[str, ...] = SITES[0].name,
        target: str = SITES[1].name,
        **options: Any,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sex-labelled images of one or several source sites and a target site.

        Parameters
        ----------
        manifest : path-like, optional
            Load a folder written by ``make``; otherwise simulate in memory
            with ``options`` (see :func:`istn_sk.datasets.simulate_brain_sites`).
        source : str or sequence of str
            A site (``"camcan"``, ``"ukbb"``, ``"site2"``, ...) or several, for
            a fit on many source sites. Simulated data get as many sites as the
            highest one named needs, unless ``n_sites`` is given.
        target : str
            Another site.
        **options
            Passed to :func:`istn_sk.datasets.simulate_brain_sites`.

        Returns
        -------
        X : ndarray of float32, shape (n, 1, D, H, W)
            Source rows first (site by site, in ``source``'s order), in [-1, 1].
        y : ndarray of int64
            Sex (0 female, 1 male) of every row; mask the target ones before fitting.
        sample_domain : ndarray of int64
            ``k`` for the rows of the ``k``-th source site (1 with one source
            site), ``-(n_sources + 1)`` for target rows (-2 with one).
        """
        sources = [source] if isinstance(source, str) else list(source)
        indices = {}
        for role, name in [*(("source", name) for name in sources), ("target", target)]:
            if site_index(name) is None:
                raise ValueError(f"unknown {role} site {name!r}; choose from "
                                 f"{[site.name for site in SITES]} or site2, site3, ...")
            indices[name] = site_index(name)
        if len(set(sources)) != len(sources) or target in sources:
            raise ValueError(f"source and target sites must all differ, got source={source!r}, "
                             f"target={target!r}")
        if manifest is not None:
            if options:
                raise TypeError(f"options {sorted(options)} do not apply to a manifest")
            X, y, _, site = load_brain_sites(manifest)
        else:
            options.setdefault("n_sites", max(2, max(indices.values()) + 1))
            X, y, _, site = simulate_brain_sites(**options)
        parts = [np.flatnonzero(site == indices[name]) for name in [*sources, target]]
        for name, rows in zip([*sources, target], parts, strict=True):
            if not len(rows):
                raise ValueError(f"site {name!r} has no images here (sites present: "
                                 f"{sorted(set(site.tolist()))} by index)")
        domains = [SOURCE_DOMAIN if len(sources) == 1 else k + 1 for k in range(len(sources))]
        domains.append(TARGET_DOMAIN if len(sources) == 1 else -(len(sources) + 1))
        sample_domain = np.concatenate([np.full(len(rows), domain)
                                        for rows, domain in zip(parts, domains, strict=True)])
        return X[np.concatenate(parts)], y[np.concatenate(parts)], sample_domain.astype(np.int64)


def _entry(name: str) -> Any:
    from .._registry import get_registry

    return get_registry().get("dataset", name, parameter="name").factory()


def load(name: str, **options: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load a registered data set by name.

    Parameters
    ----------
    name : str
        E.g. ``"morpho-mnist"`` or ``"brain-sites"``.
    **options
        Passed to the provider's ``load``.

    Returns
    -------
    X, y, sample_domain : ndarray
        Source rows (``sample_domain == 1``) then target rows (``-2``).

    Raises
    ------
    istn_sk._registry.PluginError
        No data set is registered under ``name``.
    """
    return _entry(name).load(**options)


def make(name: str, out_dir: str | os.PathLike[str], **options: Any) -> Path:
    """Write a registered data set to ``out_dir`` and return its manifest.

    Parameters
    ----------
    name : str
        E.g. ``"morpho-mnist"`` or ``"brain-sites"``.
    out_dir : path-like
        Destination folder.
    **options
        Passed to the provider's ``make``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    istn_sk._registry.PluginError
        No data set is registered under ``name``.
    """
    return _entry(name).make(out_dir, **options)
