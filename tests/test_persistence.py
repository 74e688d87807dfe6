"""Model files: round trips, no silent overwrite, and refusal of corrupt or untrusted files."""

import numpy as np
import pytest
import torch

from istn_sk import (
    ISTNAdapter,
    TaskClassifier,
    TaskRegressor,
    load_model,
    make_shifted_shapes,
    save_model,
)

TINY = dict(nf=4, max_epochs=2, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def data():
    return make_shifted_shapes(24, (12, 12), random_state=0)


@pytest.mark.parametrize("params", [
    dict(stn="affine"),
    dict(stn="bspline", cp_spacing=(3, 4), mode="cyclegan", gan_loss="mse"),
    dict(itn=False, stn="affine", stn_options={"max_translation": 0.1}),
])
def test_adapter_round_trip_gives_identical_transforms(data, tmp_path, params):
    X, _, sd = data
    adapter = ISTNAdapter(**TINY, **params).fit(X, sample_domain=sd)
    loaded = load_model(save_model(adapter, tmp_path / "adapter.pt"))
    assert loaded.get_params() == adapter.get_params()
    np.testing.assert_array_equal(loaded.transform(X), adapter.transform(X))
    assert loaded.history_[:, "dis_loss"] == adapter.history_[:, "dis_loss"]
    if params.get("mode") == "cyclegan":
        np.testing.assert_array_equal(loaded.inverse_transform(X), adapter.inverse_transform(X))


def test_adapter_with_a_simultaneous_task_keeps_it(data, tmp_path):
    X, y, sd = data
    adapter = ISTNAdapter(task=TaskClassifier(nf=4), **TINY).fit(X, y, sample_domain=sd)
    loaded = load_model(save_model(adapter, tmp_path / "adapter.pt"))
    np.testing.assert_array_equal(loaded.task_.predict_proba(X), adapter.task_.predict_proba(X))
    assert isinstance(loaded.task, TaskClassifier) and loaded.task.nf == 4


def test_task_round_trips_keep_predictions_and_labels(data, tmp_path):
    X, y, sd = data
    names = np.array(["healthy", "fractured", "swollen"])[y]
    clf = TaskClassifier(**TINY).fit(X, names, sample_domain=sd)
    loaded = load_model(save_model(clf, tmp_path / "clf.pt"))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert list(loaded.classes_) == list(clf.classes_)
    reg = TaskRegressor(**TINY).fit(X, 20.0 + y, sample_domain=sd)
    loaded_reg = load_model(save_model(reg, tmp_path / "reg.pt"))
    np.testing.assert_array_equal(loaded_reg.predict(X), reg.predict(X))


def test_existing_files_are_not_overwritten_silently(data, tmp_path):
    X, _, sd = data
    adapter = ISTNAdapter(**TINY).fit(X, sample_domain=sd)
    path = tmp_path / "adapter.pt"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_model(adapter, path)
    assert path.read_bytes() == b"precious"
    save_model(adapter, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.pt"]


def test_unfitted_and_foreign_estimators_are_refused(tmp_path):
    with pytest.raises(Exception, match="not fitted"):
        save_model(ISTNAdapter(), tmp_path / "a.pt")
    with pytest.raises(TypeError, match="not LogisticRegression"):
        from sklearn.linear_model import LogisticRegression
        save_model(LogisticRegression(), tmp_path / "a.pt")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_truncated_and_foreign_files_are_named(data, tmp_path):
    X, _, sd = data
    good = save_model(ISTNAdapter(**TINY).fit(X, sample_domain=sd), tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.pt is not a readable istn-sk model file"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="is not an istn-sk model file"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt does not exist"):
        load_model(tmp_path / "missing.pt")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_payload_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    crafted = tmp_path / "crafted.pt"
    torch.save({"format": "istn-sk-model/1", "class": "istn_sk._adapter.ISTNAdapter",
                "payload": _Payload(marker)}, crafted)
    with pytest.raises(ValueError, match=r"refusing to load .*crafted\.pt"):
        load_model(crafted)
    assert not marker.exists()
