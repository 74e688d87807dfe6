"""Model files: round trips, no silent overwrite, and refusal of corrupt or untrusted files."""

import functools
import re

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
    dict(itn_options={"coordinates": True, "depth": 1}, precision="bfloat16"),
    dict(itn_options={"bias_field": 2}),
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


def _evil(marker):
    """A record that, if called, writes ``marker`` (``torch.save(obj=1, f=marker)``)."""
    return {"__estimator__": "torch.save", "params": {"obj": 1, "f": str(marker)}}


def _in_dict(record):
    return {"__dict__": {"max_translation": 0.1, "extra": record}}


def _in_sequence(kind):
    return lambda record: {"__dict__": {"extra": {"__sequence__": kind, "items": [1, record]}}}


def _set(*keys, wrap=lambda record: record):
    """A change to a genuine payload: the record (wrapped) goes at ``payload[keys...]``."""
    def change(payload, record):
        target = payload
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = wrap(record)
    return change


CRAFTED = {
    "top-level class": (_set("class"), lambda marker: "torch.save",
                        r"top level: the 'class' record names 'torch\.save'"),
    "top-level class, not torch": (_set("class"), lambda marker: "builtins.eval",
                                   r"top level: the 'class' record names 'builtins\.eval'"),
    "task estimator": (_set("params", "task"), _evil, r"params\['task'\]"),
    "estimator in stn_options": (_set("params", "stn_options", wrap=_in_dict), _evil,
                                 r"params\['stn_options'\]\['extra'\]"),
    "estimator in a list": (_set("params", "stn_options", wrap=_in_sequence("list")), _evil,
                            r"\['extra'\]\[1\]"),
    "estimator in a tuple": (_set("params", "stn_options", wrap=_in_sequence("tuple")), _evil,
                             r"\['extra'\]\[1\]"),
    "torch.hub.load": (_set("params", "task"), lambda marker: {
        "__estimator__": "torch.hub.load",
        "params": {"repo_or_dir": str(marker), "model": "m", "source": "local"}},
        r"'torch\.hub\.load'"),
    "a component built as an estimator": (_set("params", "task"), lambda marker: {
        "__estimator__": "torch.optim.adam.Adam", "params": {"params": []}}, r"params\['task'\]"),
    "function as a class": (_set("params", "task", "params", "optimizer"),
                            lambda marker: {"__class__": "torch.save"},
                            r"params\['task'\]\.params\['optimizer'\]"),
    "foreign class": (_set("params", "stn_options", wrap=_in_dict),
                      lambda marker: {"__class__": "torch.nn.modules.module.Module"},
                      r"'__class__' record"),
    "task record class": (_set("task", "class"), lambda marker: "torch.save", "task"),
    "task record parameter": (_set("task", "params", "module"), _evil,
                              r"task\.params\['module'\]"),
    "task record fitted field": (_set("task", "fitted", "n_outputs_"), _evil,
                                 r"task\.fitted\['n_outputs_'\]"),
    "unsaved task parameter": (_set("task", "params", "callbacks"),
                               lambda marker: {"__sequence__": "list", "items": []},
                               "'callbacks', which model files do not hold"),
    "unknown record": (_set("params", "task"),
                       lambda marker: {"__estimator__": "torch.save", "params": {}, "x": 1},
                       "not a parameter record"),
}


@pytest.fixture(scope="module")
def genuine(data, tmp_path_factory):
    X, y, sd = data
    adapter = ISTNAdapter(task=TaskClassifier(nf=4, optimizer=torch.optim.SGD),
                          stn_options={"max_translation": 0.1}, **TINY).fit(X, y, sample_domain=sd)
    path = save_model(adapter, tmp_path_factory.mktemp("genuine") / "adapter.pt")
    return adapter, path


def _counting(init, built):
    @functools.wraps(init)
    def counted(self, *args, **kwargs):
        built.append(type(self))
        init(self, *args, **kwargs)
    return counted


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_records_are_refused_before_anything_is_built(genuine, tmp_path, monkeypatch,
                                                              case):
    change, record, where = CRAFTED[case]
    marker = tmp_path / "marker"
    payload = torch.load(genuine[1], weights_only=True)
    change(payload, record(marker))
    crafted = tmp_path / "crafted.pt"
    torch.save(payload, crafted)
    built = []
    for cls in (ISTNAdapter, TaskClassifier):
        monkeypatch.setattr(cls, "__init__", _counting(cls.__init__, built))
    with pytest.raises(ValueError, match=r"refusing to load .*crafted\.pt: ") as error:
        load_model(crafted)
    assert re.search(where, str(error.value))
    assert built == [] and not marker.exists() and sorted(tmp_path.iterdir()) == [crafted]


def test_a_genuine_file_loads_and_predicts_identically(genuine, data):
    adapter, path = genuine
    X, _, _ = data
    loaded = load_model(path)
    assert loaded.task_.optimizer is torch.optim.SGD
    assert loaded.stn_options == {"max_translation": 0.1}
    np.testing.assert_array_equal(loaded.transform(X), adapter.transform(X))
    np.testing.assert_array_equal(loaded.task_.predict_proba(X), adapter.task_.predict_proba(X))


class _OwnOptimizer(torch.optim.SGD):
    pass


def test_classes_outside_the_table_are_refused_when_saving(data, tmp_path):
    X, y, sd = data
    clf = TaskClassifier(optimizer=_OwnOptimizer, **TINY).fit(X, y, sample_domain=sd)
    with pytest.raises(ValueError, match=r"cannot save a model built on .*_OwnOptimizer"):
        save_model(clf, tmp_path / "clf.pt")
    assert list(tmp_path.iterdir()) == []


def test_files_from_before_a_parameter_load_with_what_they_were_trained_with(data, tmp_path):
    # an adapter file written before content_losses / dis_coordinates / identity_on /
    # lr_schedule existed: no content loss, its discriminator has no coordinate channels,
    # its task model decayed no rate
    X, y, sd = data
    adapter = ISTNAdapter(task=TaskClassifier(nf=4, lr_schedule="constant"), dis_coordinates=False,
                          identity_on="istn", content_losses=None, **TINY).fit(X, y,
                                                                              sample_domain=sd)
    payload = torch.load(save_model(adapter, tmp_path / "new.pt"), weights_only=True)
    for key in ("content_losses", "dis_coordinates", "identity_on"):
        del payload["params"][key]
    del payload["task"]["params"]["lr_schedule"]
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert (loaded.content_losses, loaded.dis_coordinates, loaded.identity_on) == (None, False,
                                                                                  "istn")
    assert loaded.task_.lr_schedule == "constant"
    np.testing.assert_array_equal(loaded.transform(X), adapter.transform(X))
    coordinates = ISTNAdapter(dis_coordinates=True, **TINY).fit(X, sample_domain=sd)
    assert load_model(save_model(coordinates, tmp_path / "c.pt")).dis_coordinates is True
