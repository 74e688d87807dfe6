"""Files of generated datasets: the cache folder, output folders and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._atomic import atomic_path

if TYPE_CHECKING:
    import pandas as pd

CACHE_ENV = "ISTN_SK_DATA"
DEFAULT_CACHE = Path("~/.cache/istn-sk")


def get_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder generated datasets are cached in, created if missing.

    Parameters
    ----------
    cache_dir : path-like, optional
        Explicit folder. By default the environment variable ``ISTN_SK_DATA``
        if set, else ``~/.cache/istn-sk``.

    Returns
    -------
    pathlib.Path
    """
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    path = Path(cache_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays to a compressed ``.npz`` file atomically."""
    with atomic_path(path, make_parents=True) as temporary:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays of a ``.npz`` file written by :func:`save_arrays`, or None if absent."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def prepare_out_dir(out_dir: str | os.PathLike[str], overwrite: bool) -> Path:
    """Create ``out_dir``, refusing a non-empty one unless ``overwrite`` is True.

    Raises
    ------
    FileExistsError
        ``out_dir`` holds files and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True to write into it")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def write_table(path: Path, table: pd.DataFrame) -> Path:
    """Write a data frame as a tab-separated file atomically; return ``path``."""
    with atomic_path(path, make_parents=True) as temporary:
        table.to_csv(temporary, sep="\t", index=False)
    return path
