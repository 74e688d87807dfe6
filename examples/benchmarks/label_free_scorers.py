"""Label-free model-selection candidates, scored on one snapshot of a training run.

Every function here sees the source labels and unlabelled target images only;
the shift suite (``suite.py``) calls :func:`snapshot_scores` after each epoch
and records the true target accuracy beside them, so their Spearman
correlation with it can be measured (``summarise_selection.py``). Every score
is oriented so that higher should mean better.

* ``mapped_source_acc``: the task model's accuracy on mapped source
  validation digits, with their source labels (the reference code's epoch
  selection);
* ``neg_entropy``: minus the mean prediction entropy on target digits;
* ``snd``: skada's ``SoftNeighborhoodDensity`` on the target predictions;
* ``dev``: skada's ``DeepEmbeddedValidation`` (minus its weighted risk), with
  the task model's encoder features;
* ``iwv``: skada's ``ImportanceWeightedScorer`` (importance-weighted accuracy
  of the mapped source validation digits, weights from kernel densities of
  the pixels);
* ``domain_confusion``: istn-sk's ``DomainConfusionScorer`` between the
  mapped source validation digits and the target digits;
* ``reverse_validation``: a logistic regression trained on the target
  digits' encoder features with the task model's predictions as labels,
  scored on the mapped source validation digits against their labels;
* ``dis_gap``: minus the gap between the discriminator's mean output on
  target and on mapped source digits.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from skada.metrics import DeepEmbeddedValidation, ImportanceWeightedScorer, SoftNeighborhoodDensity
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from istn_sk._batch_norm import recompute_batch_norm
from istn_sk.scoring import DomainConfusionScorer

SCORERS = ("mapped_source_acc", "neg_entropy", "snd", "dev", "iwv", "domain_confusion",
           "reverse_validation", "dis_gap")


class _LayerName:
    layer_name = "encoder"


class SnapshotClassifier(BaseEstimator):
    """The call protocol skada's scorers expect, around one frozen task network.

    Parameters
    ----------
    network : torch.nn.Module
        A task network with an ``encoder`` (eval mode is set here).
    """

    __metadata_request__score = {"sample_weight": True}

    def __init__(self, network) -> None:
        self.network = network

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X=None, y=None, **_) -> SnapshotClassifier:
        """Nothing to fit: the network is a frozen snapshot."""
        return self

    @property
    def module_(self):
        return _LayerName()

    def _run(self, X, features: bool = False) -> np.ndarray:
        self.network.eval()
        with torch.no_grad():
            batch = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
            if features:
                return self.network.encoder(batch).flatten(1).numpy()
            return torch.softmax(self.network(batch), dim=1).numpy()

    def predict_proba(self, X, **_) -> np.ndarray:
        return self._run(X)

    def predict(self, X, **_) -> np.ndarray:
        return self.predict_proba(X).argmax(1)

    def predict_features(self, X) -> np.ndarray:
        return self._run(X, features=True)

    def score(self, X, y, sample_weight=None, **_) -> float:
        hits = (self.predict(X) == np.asarray(y)).astype(float)
        return float(np.average(hits, weights=sample_weight))

    def transform(self, X) -> np.ndarray:
        """The identity: domain confusion compares images already mapped."""
        return X


def snapshot(net, source_train: torch.Tensor):
    """``(istn, task network)`` as ``transform`` would use them after this epoch.

    Copies the ISTN and the task network, loads the weight averages when the
    run keeps them, and recomputes the ISTN's batch-norm statistics on the
    mapped source domain, as ``fit`` does at its end.
    """
    networks = net.networks_in_use()
    istn, task = copy.deepcopy(networks["istn"]["s2t"]), copy.deepcopy(networks["task"])
    recompute_batch_norm(istn, source_train, net.batch_size, net.memory_format)
    return istn.eval(), task.eval()


def snapshot_scores(istn, task, discriminator, source_val: tuple, target: np.ndarray,
                    random_state: int = 0) -> dict[str, float]:
    """Every candidate of :data:`SCORERS` on one snapshot (see the module docstring)."""
    X_val, y_val = source_val
    with torch.no_grad():
        mapped = istn(torch.from_numpy(X_val)).numpy()
    model = SnapshotClassifier(task)
    proba = np.clip(model.predict_proba(target), 1e-12, 1)
    X = np.concatenate([mapped, target])
    y = np.r_[y_val, -np.ones(len(target), int)]
    sd = np.r_[np.ones(len(mapped), int), -2 * np.ones(len(target), int)]
    pseudo = proba.argmax(1)
    reverse = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    if len(np.unique(pseudo)) > 1:
        reverse.fit(model.predict_features(target), pseudo)
        reverse_acc = float(np.mean(reverse.predict(model.predict_features(mapped)) == y_val))
    else:
        reverse_acc = float(np.mean(y_val == pseudo[0]))
    discriminator.eval()
    with torch.no_grad():
        d_mapped = torch.sigmoid(discriminator(torch.from_numpy(mapped))).mean().item()
        d_target = torch.sigmoid(discriminator(torch.from_numpy(target))).mean().item()
    discriminator.train()
    return {
        "mapped_source_acc": float(np.mean(model.predict(mapped) == y_val)),
        "neg_entropy": float(np.mean(np.sum(proba * np.log(proba), 1))),
        "snd": float(SoftNeighborhoodDensity()(model, X, y, sample_domain=sd)),
        "dev": float(DeepEmbeddedValidation(random_state=random_state)(model, X, y,
                                                                      sample_domain=sd)),
        "iwv": float(ImportanceWeightedScorer()(model, X, y, sample_domain=sd)),
        "domain_confusion": float(DomainConfusionScorer(random_state=random_state)(
            model, X, sample_domain=sd)),
        "reverse_validation": reverse_acc,
        "dis_gap": -abs(d_target - d_mapped),
    }
