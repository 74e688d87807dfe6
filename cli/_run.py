"""A run's output folder: config actually used, models, history, pictures."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:   # not POSIX: an exclusively created lock file instead
    fcntl = None

#: Settings holding paths, written absolute to config.json so it re-runs from anywhere.
PATH_SETTINGS = ("train_set", "test_set", "task_model", "adapter", "inputs", "files", "config")
#: History keys that are not curves (besides integer counts and flags).
NOT_CURVES = ("dur",)


def ensure_new_folder(path: str | Path, *, force: bool) -> Path:
    """Create ``path``; an existing non-empty folder is an error unless ``force``.

    Raises
    ------
    FileExistsError
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FileExistsError(f"{path} already exists and is not empty; pass --force to write "
                              "into it (files of the same names are replaced)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _absolute(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_absolute(item) for item in value]
    if isinstance(value, str) and value and Path(value).exists():
        return str(Path(value).resolve())
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            grouped: dict[str, list] = {}   # repeated keys (--where a=1 --where a=2) keep all
            for key, item in value:
                grouped.setdefault(str(key), []).append(_jsonable(item))
            return {key: items[0] if len(items) == 1 else items for key, items in grouped.items()}
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def history_rows(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch records of a skorch history, without per-batch lists."""
    return [{key: _jsonable(value) for key, value in epoch.items()
             if isinstance(value, (bool, int, float, str, np.generic))} for epoch in history]


#: Hidden file a run holds a lock on while it writes into its folder.
LOCK_NAME = ".istn-sk.lock"


def _has_entries(folder: Path) -> bool:
    """Whether ``folder`` holds anything besides a run's lock file."""
    return any(entry.name != LOCK_NAME for entry in folder.iterdir())


def _refuse_non_empty(path: Path) -> None:
    raise FileExistsError(f"{path} already exists and is not empty; pass --force to write "
                          "into it (files of the same names are replaced)")


def _lock(folder: Path) -> int:
    """Hold the lock of ``folder`` (an open descriptor); another run's lock is an error.

    An ``flock`` is released by the system when its process ends, however it
    ends, so a killed run's folder can be resumed; without ``fcntl`` the lock
    file is created exclusively instead.

    Raises
    ------
    FileExistsError
        When another run holds it.
    """
    path = folder / LOCK_NAME
    busy = FileExistsError(f"another istn-sk run is writing into {folder}; wait for it to end "
                           "or choose another --out")
    if fcntl is None:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            raise FileExistsError(f"{busy} (if no run is, remove {path})") from None
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise busy from None
        if _same_file(path, handle):   # not a lock file its owner removed meanwhile
            return handle
        os.close(handle)


def _same_file(path: Path, handle: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle).st_ino
    except FileNotFoundError:
        return False


def _make_folder(path: Path) -> bool:
    """Create ``path`` and its parents; whether ``path`` itself was created by this call.

    Raises
    ------
    FileExistsError
        If ``path`` is a file.
    """
    for _ in range(100):   # another run undoing itself may remove an empty parent meanwhile
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
            return True
        except FileNotFoundError:
            continue
        except FileExistsError:
            if not path.is_dir():
                raise FileExistsError(f"{path} exists and is not a folder") from None
            return False
    raise FileNotFoundError(f"{path.parent} keeps being removed while creating {path}")


class RunFolder:
    """One command's output folder, locked while the command writes into it.

    Two runs never write into one folder at once (the second is refused),
    and undoing a failed run removes only what that run created.

    Parameters
    ----------
    path : path-like
    force : bool
        Write into an existing non-empty folder, replacing files of the same names.

    Raises
    ------
    FileExistsError
        If ``path`` is a file, a non-empty folder (without ``force``), or
        the folder of a run still writing.
    """

    def __init__(self, path: str | Path, *, force: bool) -> None:
        self.path = Path(path)
        self.force = force
        absolute = self.path.absolute()
        if absolute.exists() and not absolute.is_dir():
            raise FileExistsError(f"{path} exists and is not a folder")
        if absolute.is_dir() and not force and _has_entries(absolute):
            _refuse_non_empty(self.path)
        #: The parent folders this run creates, innermost first.
        self.created_parents = [p for p in absolute.parents if not p.exists()]
        #: Whether this run created the folder itself.
        self.created = _make_folder(absolute)
        self._lock: int | None = _lock(absolute)
        #: Whether the folder was there and empty (a failed run empties it again).
        self.was_empty = not self.created and not _has_entries(absolute)
        if not (self.created or self.was_empty or force):   # written meanwhile
            self.close()
            _refuse_non_empty(self.path)

    def discard(self) -> None:
        """Undo a failed run.

        Removes the folder it created and then those of its parents it
        created that are empty (another run may be writing beside it), or
        empties the folder it found empty.
        """
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            for parent in self.created_parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
        elif self.was_empty:
            for entry in self.path.iterdir():
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the folder's lock (and remove the lock file)."""
        if self._lock is None:
            return
        path = self.path / LOCK_NAME
        if _same_file(path, self._lock):
            path.unlink(missing_ok=True)
        os.close(self._lock)
        self._lock = None

    def file(self, *parts: str) -> Path:
        """A path inside the run folder; its parent folders are created."""
        path = self.path.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_json(self, name: str, value: Any) -> Path:
        """Write ``value`` as indented JSON."""
        path = self.file(name)
        path.write_text(json.dumps(_jsonable(value), indent=2) + "\n")
        return path

    def write_config(self, settings: Mapping[str, Any]) -> Path:
        """``config.json``: the settings used, runnable again with ``--config``."""
        used = {key: _absolute(value) if key in PATH_SETTINGS else value
                for key, value in settings.items() if key != "config"}
        return self.write_json("config.json", dict(sorted(used.items())))

    def save_model(self, estimator, name: str) -> Path:
        """Write a fitted estimator with :func:`istn_sk.save_model`."""
        from istn_sk import save_model

        return save_model(estimator, self.file(name), overwrite=self.force)

    def write_history(self, history: Sequence[Mapping[str, Any]], stem: str = "history") -> Path:
        """``<stem>.csv`` and ``<stem>.json`` (one record per epoch) and the learning curves."""
        import pandas as pd

        rows = history_rows(history)
        pd.DataFrame(rows).to_csv(self.file(f"{stem}.csv"), index=False)
        self.write_json(f"{stem}.json", rows)
        return self.write_learning_curves(rows, f"report/{stem}-curves.png")

    def write_learning_curves(self, rows: Sequence[Mapping[str, Any]], name: str) -> Path:
        """Every floating-point history key: losses on one axes, validation scores below."""
        from istn_sk.figures import learning_curves, save_figure

        keys = [key for key in dict.fromkeys(k for row in rows for k in row)
                if key not in NOT_CURVES
                and all(isinstance(row.get(key, 0.0), float) for row in rows)]
        return save_figure(self.file(name), learning_curves(rows, keys))

    def write_explanation(self, parts: Mapping[str, np.ndarray], target: np.ndarray | None = None,
                          name: str = "report/explanation.png") -> Path:
        """The S, ITN, S2T, difference, deformation (and T) grid of ``explain``'s first 8 images."""
        from istn_sk.figures import explanation_grid, save_figure

        return save_figure(self.file(name), explanation_grid(dict(parts), target))

    def copy_files(self, files: Sequence[str]) -> None:
        """Copy the config's ``files`` into ``files/`` (the reference's ``files`` key)."""
        for name in files:
            source = Path(name)
            if not source.is_file():
                raise FileNotFoundError(f"files: {source} does not exist")
            shutil.copy2(source, self.file("files", source.name))


#: ``ctx.meta`` key of the open run: the command group discards it when the command fails
#: with an error, and closes it (releases its lock) however the command ends.
RUN_META_KEY = "istn_sk.run"


def open_run(ctx, settings: Mapping[str, Any], *, resume: bool = False) -> RunFolder:
    """Create the command's ``--out`` folder; copy ``files`` and write ``config.json`` first.

    A run that fails with an error leaves nothing behind: the command group
    calls :meth:`RunFolder.discard` (see ``cli/main.py``); one stopped by a
    signal keeps its folder. With ``resume``, the folder is the interrupted
    run's, which already holds ``config.json`` and ``files``.
    """
    run = RunFolder(ctx.params["out"], force=ctx.params["force"] or resume)
    ctx.meta[RUN_META_KEY] = run
    if not resume:
        run.copy_files(settings.get("files", ()))
        run.write_config(settings)
    return run
