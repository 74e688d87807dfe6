"""Label-free epoch selection: held-out rows, the kept epoch, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from istn_sk import ISTNAdapter, TaskClassifier, TaskRegressor, make_shifted_shapes
from istn_sk._epoch_selection import held_out_rows


@pytest.fixture(scope="module")
def shapes():
    X, y, sd = make_shifted_shapes(60, (16, 16), shift=3.0, random_state=0)
    return X, np.where(sd > 0, y, -1), sd


def _adapter(**options):
    task = TaskClassifier(nf=2, max_epochs=1, batch_size=16, random_state=0)
    return ISTNAdapter(stn="affine", nf=2, max_epochs=4, batch_size=16, random_state=0,
                       task=task, **options)


@pytest.mark.parametrize("criterion", ["prediction_entropy", "mapped_source_accuracy"])
def test_the_kept_epoch_is_the_best_scored_one_and_its_weights_are_restored(shapes, criterion):
    X, y, sd = shapes
    adapter = _adapter(select_epoch=criterion, validation_fraction=0.2).fit(X, y, sample_domain=sd)
    scores = adapter.history_[:, "selection_score"]
    # only the second half competes (epochs 3 and 4 of 4)
    assert len(scores) == 4 and adapter.best_epoch_ == 3 + int(np.argmax(scores[2:]))
    if criterion == "mapped_source_accuracy":
        assert all(0 <= score <= 1 for score in scores)
    else:
        bound = np.log(len(np.unique(y[y >= 0])))   # a uniform prediction's entropy
        assert all(-bound - 1e-6 <= score <= 0 for score in scores)
    again = _adapter(select_epoch=criterion, validation_fraction=0.2).fit(X, y, sample_domain=sd)
    np.testing.assert_array_equal(adapter.transform(X), again.transform(X))   # seeded
    assert _adapter().fit(X, y, sample_domain=sd).best_epoch_ is None


def test_kept_epoch_predicts_as_its_snapshot_scored(shapes):
    X, y, sd = shapes
    adapter = _adapter(select_epoch="prediction_entropy", ema_decay=None,
                       validation_fraction=0.2).fit(X, y, sample_domain=sd)
    proba = np.clip(adapter.task_.predict_proba(X[sd < 0]), 1e-12, 1)
    kept = adapter.history_[adapter.best_epoch_ - 1, "selection_score"]
    # the held-out target rows are a fifth of the target rows: the full set scores close
    assert abs(np.mean(np.sum(proba * np.log(proba), 1)) - kept) < 0.15


def test_held_out_rows_take_the_fraction_of_each_domain():
    is_source = np.r_[np.ones(50, bool), np.zeros(30, bool)]
    held = held_out_rows(0.2, is_source)
    assert held[is_source].sum() == 10 and held[~is_source].sum() == 6
    with pytest.raises(ValueError, match="fewer than 2 training images"):
        held_out_rows(0.4, np.r_[np.ones(2, bool), np.zeros(30, bool)])


@pytest.mark.parametrize(("options", "match"), [
    ({"select_epoch": "accuracy"}, "select_epoch must be None or one of"),
    ({"select_epoch": "prediction_entropy", "validation_fraction": 0.7}, "in \\(0, 0.5\\)"),
    ({"select_epoch": "prediction_entropy", "checkpoint_dir": "somewhere"}, "checkpoint_dir"),
])
def test_bad_selection_settings_are_one_clear_error(shapes, options, match):
    X, y, sd = shapes
    with pytest.raises(ValueError, match=match):
        _adapter(**options).fit(X, y, sample_domain=sd)


def test_selection_needs_a_classifier_trained_alongside(shapes):
    X, y, sd = shapes
    with pytest.raises(ValueError, match="needs task=TaskClassifier"):
        ISTNAdapter(nf=2, max_epochs=1, select_epoch="prediction_entropy").fit(
            X, sample_domain=sd)
    with pytest.raises(ValueError, match="needs task=TaskClassifier"):
        ISTNAdapter(nf=2, max_epochs=1, select_epoch="prediction_entropy",
                    task=TaskRegressor(nf=2)).fit(X, y.astype(float), sample_domain=sd)
