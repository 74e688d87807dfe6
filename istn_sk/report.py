"""One self-contained HTML page per run: settings, data, curves, figures, tables, versions.

:func:`write_html_report` builds it in one call from a fitted
:class:`~istn_sk.ISTNAdapter` and its data (and/or a run folder written by
the ``istn-sk`` command line); :func:`write_run_report` records a run's data
summary and harmonisation measures in its folder and (re)writes its
``report.html``, which is what ``istn-sk report RUN_DIR`` calls.

The page holds every picture as a base64 PNG ``data:`` URI and its style
sheet inline: no other file, no network access, no JavaScript. Every text
(settings, file names, table cells) is HTML-escaped.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path

__all__ = ["DataSummary", "build_html_report", "data_summary", "harmonisation_measures",
           "is_run_folder", "software_versions", "write_html_report", "write_run_report"]

#: The page a run folder holds.
REPORT_NAME = "report.html"
#: What marks a folder as an ``istn-sk`` run (every command writes it first).
RUN_CONFIG = "config.json"
#: A run's data summary and software versions (:func:`write_run_report`).
SUMMARY_NAME = "report/summary.json"
#: A run's harmonisation measures (:func:`harmonisation_measures`).
HARMONISATION_NAME = "harmonisation.csv"
#: Protocol tables a run folder may hold, and what wrote each.
PROTOCOL_TABLES = {"report.csv": "the whole protocol (istn-sk protocol)",
                   "evaluation.csv": "task models scored per site (istn-sk evaluate)"}
#: Distributions whose versions the page lists.
PACKAGES = ("istn-sk", "torch", "numpy", "scikit-learn", "skorch", "scipy", "pandas",
            "matplotlib")
_CAPTIONS = {
    "explanation": "S → S2T for the first source images. Rows: the source image S, the ITN "
                   "output, S2T, the difference S2T - S (diverging scale), the deformation as a "
                   "warped grid, the displacement magnitude |u| in voxels, the Jacobian "
                   "determinant det J (< 1 shrinks, ≤ 0 folds) and, when shown, target images T.",
}


def software_versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages an ``istn-sk`` run depends on.

    Returns
    -------
    dict of str to str
        ``python``, ``platform`` and one entry per package of :data:`PACKAGES`
        (``"not installed"`` when missing).
    """
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _split(data: Any) -> tuple[np.ndarray, Any]:
    """``X`` and ``y`` of an ``(X, y)`` pair, or ``X`` and ``None``."""
    if isinstance(data, tuple) and len(data) == 2:
        return np.asarray(data[0]), data[1]
    return np.asarray(data), None


class DataSummary:
    """Per-domain image counts, shape and value range, accumulated batch by batch.

    Examples
    --------
    >>> import numpy as np
    >>> summary = DataSummary()
    >>> summary.add("source", np.zeros((4, 1, 8, 8)), labels=[0, 1, 1, 0])
    >>> summary.table()["images"].tolist()
    [4]
    """

    def __init__(self) -> None:
        self._stats: dict[str, dict[str, Any]] = {}

    def add(self, domain: str, images, labels=None) -> None:
        """Count ``images`` ``(n, C, *spatial)`` (and their ``labels``) under ``domain``."""
        images = np.asarray(images)
        stats = self._stats.setdefault(str(domain), {
            "images": 0, "shape": images.shape[1:], "dtype": str(images.dtype), "min": np.inf,
            "max": -np.inf, "sum": 0.0, "voxels": 0, "labels": []})
        stats["images"] += len(images)
        if stats["shape"] != images.shape[1:]:
            stats["shape"] = None   # shapes differ between batches
        finite = images[np.isfinite(images)] if images.size else images
        if finite.size:
            stats["min"] = min(stats["min"], float(finite.min()))
            stats["max"] = max(stats["max"], float(finite.max()))
            stats["sum"] += float(finite.sum(dtype=float))
            stats["voxels"] += finite.size
        if labels is not None:
            stats["labels"].extend(np.asarray(labels).ravel().tolist())

    def table(self):
        """A :class:`pandas.DataFrame`: one row per domain."""
        import pandas as pd

        rows = []
        for domain, stats in self._stats.items():
            shape = stats["shape"]
            rows.append({"domain": domain, "images": stats["images"],
                         "labels": _labels_text(stats["labels"]),
                         "image shape": "varies" if shape is None else " x ".join(map(str, shape)),
                         "dtype": stats["dtype"],
                         "min": stats["min"] if stats["voxels"] else np.nan,
                         "max": stats["max"] if stats["voxels"] else np.nan,
                         "mean": stats["sum"] / stats["voxels"] if stats["voxels"] else np.nan})
        frame = pd.DataFrame(rows)
        if len(frame) and not frame["labels"].astype(bool).any():
            frame = frame.drop(columns="labels")
        return frame


def _labels_text(labels: list) -> str:
    """Counts per class (at most 12 classes), else the range of the values."""
    import pandas as pd

    values = pd.Series([v for v in labels if v == v and v is not None], dtype=object)  # NaN
    if values.empty:
        return ""
    counts = values.value_counts(sort=False).sort_index()
    if len(counts) <= 12:
        return ", ".join(f"{label}: {count}" for label, count in counts.items())
    numbers = pd.to_numeric(values, errors="coerce")
    return f"{len(values)} labels, {numbers.min():.4g} to {numbers.max():.4g}"


def data_summary(domains: Mapping[str, Any]):
    """Image counts, shape, dtype and value range per domain.

    Parameters
    ----------
    domains : mapping of str to array-like or (X, y)
        Images ``(n, C, *spatial)`` per domain name, optionally with labels.

    Returns
    -------
    pandas.DataFrame
        Columns ``domain``, ``images``, ``labels`` (counts per class, or the
        range of regression targets), ``image shape``, ``dtype``, ``min``,
        ``max``, ``mean``.
    """
    summary = DataSummary()
    for name, data in domains.items():
        X, y = _split(data)
        summary.add(name, X, y)
    return summary.table()


def harmonisation_measures(adapter, source, target, *, max_images: int = 64,
                           random_state: int | None = 0):
    """How far the adapter brings source images to the target site, without labels.

    Parameters
    ----------
    adapter : fitted ISTNAdapter
    source, target : array-like or (X, y)
        Source and target images; the first ``max_images`` of each are used.
    max_images : int, default=64
    random_state : int or None, default=0
        Seeds the site classifier's folds and permutations.

    Returns
    -------
    pandas.DataFrame
        One row per measure (``measure``, ``S vs T`` before adaptation,
        ``S2T vs T`` after, ``n``): the intensity Wasserstein distance
        (:func:`~istn_sk.harmonisation.intensity_distance`), with 10 or more
        images per set the balanced accuracy of a site classifier
        (:func:`~istn_sk.harmonisation.site_classification_score`, 0.5 is
        chance), the mean displacement magnitude and the folding fraction.
    """
    import pandas as pd

    from .harmonisation import folding_fraction, intensity_distance, site_classification_score

    xs, xt = _split(source)[0][:max_images], _split(target)[0][:max_images]
    parts = adapter.explain(xs)
    s2t, displacement = parts["output"], parts["displacement"]
    n = f"{len(xs)} S, {len(xt)} T"
    rows = [{"measure": "intensity distance to T (Wasserstein)",
             "S vs T": intensity_distance(xs, xt), "S2T vs T": intensity_distance(s2t, xt),
             "n": n}]
    if min(len(xs), len(xt)) >= 10:
        before, after = (site_classification_score(images, xt, n_permutations=20,
                                                   random_state=random_state)
                         for images in (xs, s2t))
        rows.append({"measure": "site classifier balanced accuracy (0.5 = chance)",
                     "S vs T": before["balanced_accuracy"],
                     "S2T vs T": after["balanced_accuracy"], "n": n})
    rows += [{"measure": "mean displacement |u| (voxels)", "S vs T": 0.0,
              "S2T vs T": float(np.linalg.norm(displacement, axis=1).mean()), "n": n},
             {"measure": "folding fraction (det J ≤ 0)", "S vs T": 0.0,
              "S2T vs T": float(folding_fraction(displacement).mean()), "n": n}]
    return pd.DataFrame(rows)


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder an ``istn-sk`` command wrote (it holds ``config.json``)."""
    return (Path(path) / RUN_CONFIG).is_file()


def build_html_report(*, adapter=None, source=None, target=None,
                      run_dir: str | os.PathLike | None = None, table=None, harmonisation=None,
                      settings: Mapping[str, Any] | None = None, title: str | None = None) -> str:
    """The report page as a string; see :func:`write_html_report` for the parameters."""
    from ._report_content import collect, render

    return render(collect(adapter=adapter, source=source, target=target, run_dir=run_dir,
                          table=table, harmonisation=harmonisation, settings=settings),
                  title=title)


def write_html_report(path: str | os.PathLike, *, adapter=None, source=None, target=None,
                      run_dir: str | os.PathLike | None = None, table=None, harmonisation=None,
                      settings: Mapping[str, Any] | None = None, title: str | None = None,
                      overwrite: bool = False) -> Path:
    """Write one self-contained HTML report of a fitted adapter and/or a run folder.

    Parameters
    ----------
    path : path-like
        The ``.html`` file, written whole to a temporary file, then renamed
        (missing parent folders are created).
    adapter : fitted ISTNAdapter, optional
        Its parameters are the settings, its ``history_`` the learning curves;
        with ``source`` its explanation figure is drawn.
    source, target : array-like or (X, y), optional
        Source and target images ``(n, C, *spatial)`` (and labels): the data
        summary, the explanation figure's images and, with ``adapter``, the
        harmonisation measures.
    run_dir : path-like, optional
        A folder written by ``istn-sk``: its ``config.json``, data summary,
        ``history.json``, ``report/*.png``, protocol table (``report.csv`` or
        ``evaluation.csv``) and ``harmonisation.csv`` are shown (what
        ``adapter``/``source``/``target`` give is used where the folder
        lacks it).
    table : pandas.DataFrame, optional
        A protocol table, e.g. :func:`istn_sk.evaluate.domain_shift_report`'s.
    harmonisation : pandas.DataFrame, mapping, bool or None, default=None
        Measures to show; ``None`` computes :func:`harmonisation_measures`
        when ``adapter``, ``source`` and ``target`` are given, ``False``
        leaves them out.
    settings : mapping, optional
        Settings shown instead of the run's config or the adapter's parameters.
    title : str, optional
    overwrite : bool, default=False
        Replace an existing file at ``path``.

    Returns
    -------
    Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and not ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    page = build_html_report(adapter=adapter, source=source, target=target, run_dir=run_dir,
                             table=table, harmonisation=harmonisation, settings=settings,
                             title=title)
    with atomic_path(path, make_parents=True) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return path


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2, default=str) + "\n")


def write_run_report(run_dir: str | os.PathLike, *, command: str | None = None,
                     data: DataSummary | Mapping[str, Any] | None = None, adapter=None,
                     source=None, target=None) -> Path:
    """Record a run's summary in its folder and (re)write its ``report.html``.

    Without keywords, rebuilds the page from what the folder holds (what
    ``istn-sk report RUN_DIR`` does).

    Parameters
    ----------
    run_dir : path-like
        A folder written by an ``istn-sk`` command.
    command : str, optional
        The command that wrote it, recorded with the software versions in
        ``report/summary.json``.
    data : DataSummary or mapping, optional
        The run's data (see :func:`data_summary`), recorded there too.
    adapter, source, target : optional
        A fitted adapter and its source and target images:
        :func:`harmonisation_measures` are written to ``harmonisation.csv``.

    Returns
    -------
    Path
        The ``report.html``.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` is not a run folder.
    """
    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        raise FileNotFoundError(f"{run_dir} is not an istn-sk run folder (no {RUN_CONFIG} in it)")
    if command is not None or data is not None:
        frame = (None if data is None else data.table() if isinstance(data, DataSummary)
                 else data_summary(data))
        rows = [] if frame is None else [
            {key: None if isinstance(value, float) and value != value else value
             for key, value in row.items()} for row in frame.to_dict("records")]
        _write_json(run_dir / SUMMARY_NAME, {
            "command": command, "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": rows, "versions": software_versions()})
    if adapter is not None and source is not None and target is not None:
        measures = harmonisation_measures(adapter, source, target)
        with atomic_path(run_dir / HARMONISATION_NAME) as temporary:
            temporary.write_text(measures.to_csv(index=False))
    return write_html_report(run_dir / REPORT_NAME, run_dir=run_dir, overwrite=True)


def _scalar_history(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch records of a (skorch) history, without per-batch lists."""
    return [{key: value.item() if isinstance(value, np.generic) else value
             for key, value in epoch.items()
             if isinstance(value, (bool, int, float, str, np.generic))} for epoch in history]
