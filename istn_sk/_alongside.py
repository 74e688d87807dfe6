"""Predicting with the task model trained alongside the ISTN (the simultaneous scheme)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils._available_if import available_if
from sklearn.utils.validation import check_is_fitted


def task_to_train_alongside(adapter, X_source, y, is_source):
    """A fresh, initialised clone of ``adapter.task`` and the source targets, or ``(None, None)``.

    Raises
    ------
    ValueError
        ``y`` is missing, or some source row has a masked label.
    """
    if adapter.task is None:
        return None, None
    if y is None:
        raise ValueError("task=... (simultaneous training) needs the source labels in y")
    task = clone(adapter.task)
    _, targets = task.training_data(X_source, np.asarray(y)[is_source])
    if len(targets) != int(is_source.sum()):
        raise ValueError("task=... (simultaneous training) needs a label for every source "
                         "row; some source rows have masked labels (-1 or NaN)")
    task.initialize()
    return task, torch.from_numpy(targets)


def _trains_a_task_model(adapter) -> bool:
    if adapter.task is None:
        raise AttributeError(f"{type(adapter).__name__} predicts only with task=...: the task "
                             "model trained alongside the ISTN (adapter.task_)")
    return True


class TrainedAlongsideMixin:
    """``predict``, ``predict_proba`` and ``score`` through ``task_``, the model trained alongside.

    Available when the adapter is built with ``task=``. Following the paper's
    protocol, images are taken as target images and given to ``task_``
    unmodified; with ``sample_domain``, source rows (``> 0``) are first mapped
    to S2T, as a ``Pipeline`` of the adapter and a task model would. This makes
    the adapter itself the final step of a pipeline (or the estimator of
    ``cross_val_score`` / ``GridSearchCV``) when the model trained alongside
    is the one to keep.
    """

    def _task_input(self, X, sample_domain):
        check_is_fitted(self)
        if sample_domain is None:
            return X
        return self.transform(X, sample_domain=sample_domain)

    @available_if(_trains_a_task_model)
    def predict(self, X, sample_domain=None) -> np.ndarray:
        """Labels (or values) that ``task_`` predicts for ``X`` (target rows unmodified)."""
        return self.task_.predict(self._task_input(X, sample_domain))

    @available_if(_trains_a_task_model)
    def predict_proba(self, X, sample_domain=None) -> np.ndarray:
        """Class probabilities of ``task_`` (a classifier) for ``X``."""
        return self.task_.predict_proba(self._task_input(X, sample_domain))

    @available_if(_trains_a_task_model)
    def score(self, X, y, sample_domain=None) -> float:
        """``task_``'s default score (accuracy, or R²) of ``X`` against ``y``."""
        return float(self.task_.score(self._task_input(X, sample_domain), y))
