"""The paper's protocol as a table: T_S(S), T_S(T), T_S2T(T), the oracle T_T(T), Δ and recovery.

Target labels are read only to score, and to train the oracle (the upper
bound a labelled target set would give).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone, is_classifier

from ._atomic import atomic_path

DEFAULT_THRESHOLDS = (1.0, 2.5, 5.0, 10.0)


def threshold_accuracies(y_true, y_pred, thresholds=DEFAULT_THRESHOLDS) -> dict[str, float]:
    """Share of absolute errors below each threshold (the reference code's regression accuracy).

    Returns
    -------
    dict
        ``{"acc@<threshold>": share}``.
    """
    y_true = np.asarray(y_true, dtype=float).ravel()
    errors = np.abs(np.asarray(y_pred, dtype=float).ravel() - y_true)
    return {f"acc@{t:g}": float(np.mean(errors < t)) for t in thresholds}


def prediction_scores(y_true, y_pred, *, regression: bool,
                      thresholds=DEFAULT_THRESHOLDS) -> dict[str, float]:
    """Accuracy of class predictions, or MAE and threshold accuracies of regression ones."""
    if not regression:
        return {"accuracy": float(np.mean(np.asarray(y_pred) == np.asarray(y_true)))}
    y_true_values = np.asarray(y_true, dtype=float).ravel()
    error = np.abs(np.asarray(y_pred, dtype=float).ravel() - y_true_values)
    return {"mae": float(error.mean()), **threshold_accuracies(y_true, y_pred, thresholds)}


def task_scores(estimator, X, y, thresholds=DEFAULT_THRESHOLDS) -> dict[str, float]:
    """Accuracy for a classifier; MAE and threshold accuracies for a regressor."""
    return prediction_scores(y, estimator.predict(X), regression=not is_classifier(estimator),
                             thresholds=thresholds)


def domain_shift_report(task, adapter, source, target, *, source_test=None, target_test=None,
                        fine_tune: bool = False, thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Run the protocol and return its table.

    1. ``T_S``: a clone of ``task`` trained on labelled source images.
    2. The adapter is fitted on source and target images (no labels) and maps
       the source images to S2T.
    3. ``T_S2T``: a clone of ``task`` trained on S2T with the source labels,
       from scratch or fine-tuned from ``T_S`` (``fine_tune=True``).
    4. ``T_T``: the oracle, a clone of ``task`` trained on labelled target
       images.
    Each model is scored on the *unmodified* target test images (and ``T_S``
    also on the source test images).

    Parameters
    ----------
    task : TaskClassifier or TaskRegressor (unfitted)
    adapter : ISTNAdapter (unfitted)
    source, target : tuple (X, y)
        Training images and labels of each site.
    source_test, target_test : tuple (X, y), optional
        Held-out images of each site; the training sets are used when omitted.
    fine_tune : bool, default=False
        Start T_S2T from T_S's weights (``init_params``).
    thresholds : sequence of float
        Regression accuracy thresholds.

    Returns
    -------
    pandas.DataFrame
        One row per (model, evaluated on) with the metrics, then a ``Δ`` row
        (T_S2T(T) - T_S(T)) and a ``recovered`` row (Δ over the oracle's gap
        T_T(T) - T_S(T); 1 means full recovery). For regressors, a smaller
        MAE is better, so Δ of MAE is negative when adaptation helps.
    """
    (Xs, ys), (Xt, yt) = source, target
    Xs_test, ys_test = source_test if source_test is not None else source
    Xt_test, yt_test = target_test if target_test is not None else target
    sample_domain = np.r_[np.ones(len(Xs), dtype=int), -2 * np.ones(len(Xt), dtype=int)]
    t_s = clone(task).fit(Xs, ys)
    fitted_adapter = clone(adapter).fit(np.concatenate([Xs, Xt]), sample_domain=sample_domain)
    s2t = fitted_adapter.transform(Xs)
    scheme = clone(task)
    if fine_tune:
        scheme.set_params(init_params={k: v.detach().clone()
                                       for k, v in t_s.module_.state_dict().items()})
    t_s2t = scheme.fit(s2t, ys)
    oracle = clone(task).fit(Xt, yt)
    rows = [
        {"model": "T_S", "evaluated_on": "S", **task_scores(t_s, Xs_test, ys_test, thresholds)},
        {"model": "T_S", "evaluated_on": "T", **task_scores(t_s, Xt_test, yt_test, thresholds)},
        {"model": "T_S2T", "evaluated_on": "T",
         **task_scores(t_s2t, Xt_test, yt_test, thresholds)},
        {"model": "T_T (oracle)", "evaluated_on": "T",
         **task_scores(oracle, Xt_test, yt_test, thresholds)},
    ]
    table = pd.DataFrame(rows)
    metrics = [column for column in table.columns if column not in ("model", "evaluated_on")]
    before, after, best = (table.iloc[i][metrics].astype(float) for i in (1, 2, 3))
    gap = best - before
    recovered = (after - before) / gap.where(gap.abs() > 1e-12)
    table.loc[len(table)] = {"model": "Δ", "evaluated_on": "T_S2T(T) - T_S(T)",
                             **(after - before).to_dict()}
    table.loc[len(table)] = {"model": "recovered", "evaluated_on": "Δ / (T_T(T) - T_S(T))",
                             **recovered.to_dict()}
    table.attrs["fine_tune"] = fine_tune
    return table


def to_markdown(table: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured markdown table: :meth:`pandas.DataFrame.to_markdown` (tabulate).

    Parameters
    ----------
    table : pandas.DataFrame
        Written without its index; missing values are empty cells.
    floatfmt : str, default=".3f"
        Format specification of the float cells (as for :func:`format`).

    Returns
    -------
    str
        The table, ending with a newline.
    """
    cells = table.astype(object).where(table.notna(), None)
    return cells.to_markdown(index=False, floatfmt=floatfmt, missingval="") + "\n"


def write_report(table: pd.DataFrame, path_stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md``; each is written whole, then renamed into place."""
    stem = Path(path_stem)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    for path, text in ((csv_path, table.to_csv(index=False)), (md_path, to_markdown(table))):
        with atomic_path(path) as temporary:
            temporary.write_text(text)
    return csv_path, md_path
