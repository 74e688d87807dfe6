"""Model selection without target labels: scorers for GridSearchCV and cross_val_score.

Both read which rows are target from ``sample_domain`` (passed by metadata
routing) or from masked labels (-1, NaN); target labels are never read.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.metadata_routing import MetadataRequest

from ._validation import source_mask


class _DomainAwareScorer:
    """Shared call protocol: ``scorer(estimator, X, y=None, sample_domain=None) -> score``."""

    def get_metadata_routing(self) -> MetadataRequest:
        """Request ``sample_domain`` for scoring, so routing passes it along."""
        request = MetadataRequest(owner=type(self).__name__)
        request.score.add_request(param="sample_domain", alias=True)
        return request

    def __call__(self, estimator, X, y=None, sample_domain=None) -> float | np.ndarray:
        X = np.asarray(X)
        is_source = source_mask(y, sample_domain, n_samples=len(X), min_per_domain=1)
        return self._score(estimator, X[is_source], X[~is_source])

    def _score(self, estimator, source, target) -> float | np.ndarray:
        raise NotImplementedError


def _transformer_and_task(estimator):
    if isinstance(estimator, Pipeline):
        return estimator[:-1], estimator[-1]
    return estimator, estimator


class DomainConfusionScorer(_DomainAwareScorer):
    """How badly a fresh domain classifier tells S2T from T (higher is better).

    The estimator's transform (all steps but the last, for a pipeline) maps
    the source rows to S2T; a standardised logistic regression on the pixels
    is cross-validated to separate S2T from the unmodified target rows. The
    score is ``1 - 2 * |balanced_accuracy - 0.5|``: 1 when the domains are
    indistinguishable, 0 when they separate perfectly.

    Parameters
    ----------
    n_splits : int, default=3
        Folds of the domain classifier's cross-validation.
    random_state : int, default=0
    """

    def __init__(self, n_splits: int = 3, random_state: int = 0) -> None:
        self.n_splits = n_splits
        self.random_state = random_state

    def domain_accuracy(self, estimator, source, target) -> float:
        """Cross-validated balanced accuracy of the domain classifier on (S2T, T)."""
        transformer, _ = _transformer_and_task(estimator)
        s2t = np.asarray(transformer.transform(source)).reshape(len(source), -1)
        features = np.concatenate([s2t, np.asarray(target).reshape(len(target), -1)])
        domains = np.r_[np.zeros(len(s2t)), np.ones(len(target))]
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
        folds = StratifiedKFold(self.n_splits, shuffle=True, random_state=self.random_state)
        predicted = cross_val_predict(classifier, features, domains, cv=folds)
        return float(balanced_accuracy_score(domains, predicted))

    def _score(self, estimator, source, target) -> float:
        return 1.0 - 2.0 * abs(self.domain_accuracy(estimator, source, target) - 0.5)


class PredictionEntropyScorer(_DomainAwareScorer):
    """skada's prediction-entropy score, of the task model on unmodified target rows.

    Defined as :class:`skada.metrics.PredictionEntropyScorer`: the entries
    ``-p * log(p)`` of the predicted class probabilities of the target rows
    are reduced by ``reduction`` (by default their mean over rows *and*
    classes), and the result is negated unless ``greater_is_better``, so by
    default the score is a negative entropy: confident predictions on T
    score higher, 0 at best. ``log(p)`` is the task model's
    ``predict_log_proba`` when it has one, else ``log(p + 1e-7)``; entries
    whose log is ``-inf`` count as 0. For a pipeline the last step predicts
    on the raw target images, following the paper's protocol.

    Parameters
    ----------
    greater_is_better : bool, default=False
        False treats the entropy as a loss (the score is its negative).
    reduction : {"mean", "sum", "none"}, default="mean"
        How the per-entry entropies are reduced; "none" returns the
        ``(n_target, n_classes)`` array.
    """

    def __init__(self, greater_is_better: bool = False, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.greater_is_better = greater_is_better
        self.reduction = reduction

    def _score(self, estimator, source, target):
        _, task = _transformer_and_task(estimator)
        probabilities = task.predict_proba(target)
        if hasattr(task, "predict_log_proba"):
            log_probabilities = task.predict_log_proba(target)
        else:
            log_probabilities = np.log(probabilities + 1e-7)
        entropies = -probabilities * np.where(np.isneginf(log_probabilities), 0.0,
                                              log_probabilities)
        sign = 1.0 if self.greater_is_better else -1.0
        if self.reduction == "none":
            return sign * entropies
        reduce = np.mean if self.reduction == "mean" else np.sum
        return float(sign * reduce(entropies))
