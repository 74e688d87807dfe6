"""A run's output folder: config actually used, models, history, pictures."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
            return {str(key): _jsonable(item) for key, item in value}
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


class RunFolder:
    """One command's output folder.

    Parameters
    ----------
    path : path-like
    force : bool
        Write into an existing non-empty folder, replacing files of the same names.
    """

    def __init__(self, path: str | Path, *, force: bool) -> None:
        absolute = Path(path).absolute()
        #: The outermost folder this run creates (None: it existed), and whether it was empty.
        self.created = next((p for p in reversed((absolute, *absolute.parents))
                             if not p.exists()), None)
        self.was_empty = absolute.is_dir() and not any(absolute.iterdir())
        self.path = ensure_new_folder(path, force=force)
        self.force = force

    def discard(self) -> None:
        """Undo a failed run: remove the folder it created, or empty the folder it found empty."""
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
        elif self.was_empty:
            for entry in self.path.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

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
        """One panel per floating-point history key (losses, validation scores)."""
        from istn_sk.figures import write_png
        from istn_sk.io import line_plot

        keys = [key for key in dict.fromkeys(k for row in rows for k in row)
                if key not in NOT_CURVES
                and all(isinstance(row.get(key, 0.0), float) for row in rows)]
        series = {key: [row.get(key, np.nan) for row in rows] for key in keys}
        return write_png(self.file(name), line_plot(series))

    def write_explanation(self, parts: Mapping[str, np.ndarray], target: np.ndarray | None = None,
                          name: str = "report/explanation.png") -> Path:
        """The S, ITN, S2T, difference, deformation (and T) grid of ``explain``'s first 8 images."""
        from istn_sk.figures import explanation_grid, write_png

        return write_png(self.file(name), explanation_grid(dict(parts), target))

    def copy_files(self, files: Sequence[str]) -> None:
        """Copy the config's ``files`` into ``files/`` (the reference's ``files`` key)."""
        for name in files:
            source = Path(name)
            if not source.is_file():
                raise FileNotFoundError(f"files: {source} does not exist")
            shutil.copy2(source, self.file("files", source.name))


#: ``ctx.meta`` key of the open run, discarded by the command group when the command fails.
RUN_META_KEY = "istn_sk.run"


def open_run(ctx, settings: Mapping[str, Any]) -> RunFolder:
    """Create the command's ``--out`` folder; copy ``files`` and write ``config.json`` first.

    A run that fails leaves nothing behind: the command group calls
    :meth:`RunFolder.discard` (see ``cli/main.py``).
    """
    run = RunFolder(ctx.params["out"], force=ctx.params["force"])
    ctx.meta[RUN_META_KEY] = run
    run.copy_files(settings.get("files", ()))
    run.write_config(settings)
    return run
