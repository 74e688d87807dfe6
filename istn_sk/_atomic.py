"""Atomic file writes: write beside the destination, then rename over it."""

from __future__ import annotations

import io
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _create_beside(path: Path) -> Path:
    """A new empty file in ``path``'s folder, with the mode a plain ``open`` would give.

    A new file gets ``0o666`` less the umask (the kernel applies it); when
    ``path`` exists, the file gets ``path``'s permission bits, as opening
    ``path`` for writing would keep them.
    """
    temporary = path.with_name(f".tmp-{secrets.token_hex(8)}-{path.name}")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if path.exists():
            os.chmod(handle, stat.S_IMODE(path.stat().st_mode))
    finally:
        os.close(handle)
    return temporary


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's data and metadata to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def atomic_path(path: str | os.PathLike, *, make_parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that replaces ``path`` on success.

    Readers never see a half-written file, and a failure leaves ``path`` as it
    was: the content goes to a temporary file in the same folder, flushed to
    disk (``fsync``), moved over ``path`` with :func:`os.replace`, and the
    folder is flushed too, so the rename survives a crash; the temporary file
    is removed on failure. Its name ends with ``path``'s name, so writers that
    choose a format from the extension (``.nii.gz``) see the right one. The
    result has the permissions a plain ``open(path, "w")`` would give: those
    of the file it replaces, or ``0o666`` less the umask for a new file.

    Parameters
    ----------
    path : path-like
        Destination.
    make_parents : bool, default=False
        Create missing parent folders first.

    Yields
    ------
    Path
        Where to write the content.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _create_beside(path)
    try:
        try:
            yield temporary
            _fsync(temporary)
            os.replace(temporary, path)
        except OSError as error:
            kept = "was left as it was" if path.exists() else "was not created"
            raise type(error)(error.errno, f"could not write {path}: "
                              f"{error.strerror or error}; {path.name} {kept}") from error
        _fsync(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def save_torch(payload: object, path: str | os.PathLike) -> None:
    """``torch.save`` ``payload`` to ``path`` through memory.

    ``torch.save`` writing to a file reports a failed write (a full disk, a
    file-size limit) as a ``RuntimeError`` about stream positions, losing the
    cause. Serialising into memory first and writing the bytes with ``open``
    raises the ``OSError`` itself (``ENOSPC``, ``EFBIG``), which
    :func:`atomic_path` turns into one message naming the destination.

    Parameters
    ----------
    payload : object
        What ``torch.save`` accepts.
    path : path-like
        Where to write (normally the path :func:`atomic_path` yields).
    """
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with open(path, "wb") as stream:
        stream.write(buffer.getbuffer())
