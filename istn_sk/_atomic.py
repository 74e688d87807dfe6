"""Atomic file writes: write beside the destination, then rename over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike, *, make_parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that replaces ``path`` on success.

    Readers never see a half-written file, and a failure leaves ``path`` as it
    was: the content goes to a temporary file in the same folder, moved over
    ``path`` with :func:`os.replace`; the temporary file is removed on failure.
    Its name ends with ``path``'s name, so writers that choose a format from
    the extension (``.nii.gz``) see the right one.

    Parameters
    ----------
    path : path-like
        Destination.
    make_parents : bool, default=False
        Create missing parent folders first.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=f"-{path.name}")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
