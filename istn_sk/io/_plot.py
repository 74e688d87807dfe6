"""Learning curves and protocol results as matplotlib figures (Agg canvas, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: The adapter's per-epoch loss terms, in the order :func:`learning_curves` draws them.
LOSS_KEYS = ("train_loss", "gan_loss", "idt_loss", "cyc_loss", "joint_loss", "dis_loss",
             "task_loss")
#: Rows of :func:`istn_sk.evaluate.domain_shift_report` that are not scores.
_DERIVED_ROWS = ("Δ", "recovered")


def new_figure(**kwargs: Any) -> Figure:
    """A :class:`~matplotlib.figure.Figure` on its own Agg canvas (keyword arguments as for
    ``Figure``); nothing is registered with pyplot."""
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def _series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    values = [epoch.get(key) for epoch in history]
    return np.array([v if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                     else np.nan for v in values], dtype=float)


def learning_curves(history: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None,
                    *, log_scale: bool = False) -> Figure:
    """Per-epoch losses (and other scores) of a training history.

    Parameters
    ----------
    history : sequence of mapping
        One record per epoch, e.g. ``adapter.history_`` or the rows of
        ``history.csv``; the ``epoch`` entry, when present, is the x value.
    keys : sequence of str, optional
        Series to draw. By default every loss term present: those of
        :data:`LOSS_KEYS`, then any other ``*_loss`` (``valid_loss``).
        Losses share the top axes; other keys (validation scores) share a
        second axes below.
    log_scale : bool, default=False
        Logarithmic loss axis (non-positive values are not drawn).

    Returns
    -------
    matplotlib.figure.Figure
        Write it with :func:`istn_sk.figures.save_figure`.
    """
    present = list(dict.fromkeys(key for epoch in history for key in epoch))
    if keys is None:
        keys = [key for key in LOSS_KEYS if key in present]
        keys += [key for key in present if key.endswith("_loss") and key not in keys]
    keys = [key for key in keys if np.isfinite(_series(history, key)).any()]
    if not keys:
        raise ValueError("nothing to plot: no finite values of the requested series")
    epochs = _series(history, "epoch")
    if not np.isfinite(epochs).all():
        epochs = np.arange(1, len(history) + 1, dtype=float)
    groups = {"loss": [key for key in keys if key.endswith("_loss")],
              "score": [key for key in keys if not key.endswith("_loss")]}
    groups = {name: members for name, members in groups.items() if members}
    figure = new_figure(figsize=(7.0, 3.2 * len(groups)), layout="constrained")
    axes = figure.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, members) in zip(axes, groups.items(), strict=True):
        for key in members:
            values = _series(history, key)
            shown = np.isfinite(values)
            ax.plot(epochs[shown], values[shown], marker="." if shown.sum() < 30 else None,
                    label=key)
        ax.set_ylabel(name)
        if name == "loss" and log_scale:
            ax.set_yscale("log", nonpositive="mask")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", ncols=min(len(members), 4))
    axes[-1].set_xlabel("epoch")
    return figure


def protocol_bars(table: pd.DataFrame, columns: Sequence[str] | None = None,
                  by: str | Sequence[str] | None = None) -> Figure:
    """Protocol results as horizontal bars: mean ± standard deviation over seeds.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per run, e.g. ``docs/suite/suite-runs.csv`` (grouped by
        ``name``, the setting), or :func:`istn_sk.evaluate.domain_shift_report`
        tables, one per seed, concatenated (grouped by model and evaluated
        set; the ``Δ`` and ``recovered`` rows are left out).
    columns : sequence of str, optional
        Scores drawn as bars within each group, e.g. ``["no_da", "alongside",
        "oracle"]``; by default every numeric column except ``by`` and
        ``seed``.
    by : str or sequence of str, optional
        Grouping columns: ``model`` and ``evaluated_on`` where present,
        else ``name``.

    Returns
    -------
    matplotlib.figure.Figure
        One bar per (group, column); the error bar is the sample standard
        deviation over the group's rows (none with one row), and each group
        label gives its number of rows ``n``.
    """
    if by is None:
        by = ["model", "evaluated_on"] if {"model", "evaluated_on"} <= set(table) else ["name"]
    by = [by] if isinstance(by, str) else list(by)
    missing = [key for key in by if key not in table]
    if missing:
        raise ValueError(f"no grouping column {missing} in the table's {list(table)}")
    if "model" in by:
        table = table[~table["model"].isin(_DERIVED_ROWS)]
    if columns is None:
        columns = [c for c in table.select_dtypes("number") if c not in by and c != "seed"]
    columns = list(columns)
    if not columns or table.empty:
        raise ValueError("nothing to plot: no rows or no score columns")
    grouped = table.groupby(by, sort=False)[columns]
    mean, spread, count = grouped.mean(), grouped.std(ddof=1), grouped.size()
    labels = [" · ".join(map(str, key if isinstance(key, tuple) else (key,)))
              + f" (n={n})" for key, n in count.items()]
    height = 0.8 / len(columns)
    positions = np.arange(len(mean))
    figure = new_figure(figsize=(8.0, 1.0 + 0.25 * len(mean) * len(columns) + 0.2 * len(mean)),
                        layout="constrained")
    ax = figure.add_subplot()
    for k, column in enumerate(columns):
        ax.barh(positions - 0.4 + height * (k + 0.5), mean[column], height=height,
                xerr=spread[column].fillna(0.0), capsize=2, label=column)
    ax.set_yticks(positions, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("mean ± sd over seeds")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize="small")
    return figure
