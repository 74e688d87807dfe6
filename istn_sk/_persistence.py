"""Saving and loading fitted estimators without pickle.

A model file holds only tensors and plain data (numbers, strings, lists,
dicts), written with ``torch.save`` and read back with
``torch.load(weights_only=True)``, so unpickling a file from an untrusted
source cannot run code: a file carrying any other object is refused.

Estimators are rebuilt from their parameters, then their weights are loaded.
The classes a file may name form a fixed table
(:func:`~istn_sk._records.rebuildable_classes`): the three estimators and the
task networks, optimizers and losses they are built from; never a function.
Loading first checks the whole record tree against that table and refuses
the file before anything is constructed or called.
"""

from __future__ import annotations

import os
import pickle
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._atomic import atomic_path, save_torch
from ._records import (
    TASK_FIELDS,
    TASK_PARAMS,
    UNSAVED_PARAMS,
    build,
    build_task,
    class_name,
    field,
    lookup,
    plan_adapter,
    plan_task,
)
from ._version import __version__

FORMAT = "istn-sk-model/1"
def _plain(value):
    """Parameters as plain data; estimators and classes become tagged dicts."""
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (tuple, list)):
        return {"__sequence__": type(value).__name__, "items": [_plain(v) for v in value]}
    if isinstance(value, dict):
        return {"__dict__": {str(k): _plain(v) for k, v in value.items()}}
    if isinstance(value, type):
        return {"__class__": class_name(value, "component")}
    if hasattr(value, "get_params"):
        return {"__estimator__": class_name(type(value), "task"),
                "params": _estimator_params(value)}
    if isinstance(value, np.random.RandomState):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ValueError(f"cannot save the parameter value {value!r} ({type(value).__name__}) "
                     "as plain data")


def _estimator_params(estimator) -> dict:
    """The constructor parameters worth saving: training-time callbacks and seeds are not."""
    from ._task import _TaskMixin

    params = estimator.get_params(deep=False)
    if isinstance(estimator, _TaskMixin):
        params = {k: v for k, v in params.items()
                  if k in TASK_PARAMS or k.startswith("module__")}
    return {k: _plain(v) for k, v in params.items() if k not in UNSAVED_PARAMS}


def _task_record(task) -> dict:
    fitted = {name: _plain(getattr(task, name)) for name in TASK_FIELDS}
    if hasattr(task, "fitted_classes_"):
        fitted["classes"] = task.fitted_classes_.tolist()
    else:
        fitted["target_ndim"] = int(task.target_ndim_)
    return {"class": class_name(type(task), "task"), "params": _estimator_params(task),
            "fitted": fitted, "state": task.module_.state_dict()}


def _history(net) -> list[dict]:
    """Per-epoch records without the per-batch lists, as builtin numbers and strings."""
    def builtin(value):
        if isinstance(value, (bool, str)):
            return value
        return int(value) if isinstance(value, Integral) else float(value)

    return [{k: builtin(v) for k, v in epoch.items() if isinstance(v, (Integral, float, str))}
            for epoch in net.history]


def _source_sites(adapter) -> dict:
    """``{"source_sites_": [...]}``, or ``{}`` for an adapter loaded from a file without them."""
    sites = getattr(adapter, "source_sites_", None)
    return {} if sites is None else {"source_sites_": sites.tolist()}


def _payload(estimator) -> dict:
    from ._adapter import ISTNAdapter
    from ._task import _TaskMixin

    if isinstance(estimator, ISTNAdapter):
        check_is_fitted(estimator)
        net = estimator.net_
        record = {
            "class": class_name(type(estimator), "model"),
            "params": _estimator_params(estimator),
            "fitted": {"n_channels_": estimator.n_channels_,
                       "image_shape_": list(estimator.image_shape_),
                       "n_features_in_": int(estimator.n_features_in_),
                       **_source_sites(estimator)},
            "state": {"module": net.module_.state_dict(),
                      "discriminator": net.discriminator_.state_dict()},
            "history": _history(net),
            "task": None if estimator.task_ is None else _task_record(estimator.task_),
        }
    elif isinstance(estimator, _TaskMixin):
        if not getattr(estimator, "initialized_", False) or not hasattr(estimator, "n_outputs_"):
            raise ValueError(f"{type(estimator).__name__} is not fitted: nothing to save")
        record = {**_task_record(estimator), "history": _history(estimator)}
    else:
        raise TypeError(f"save_model saves ISTNAdapter, TaskClassifier and TaskRegressor, "
                        f"not {type(estimator).__name__}")
    return {"format": FORMAT, "istn_sk_version": __version__, **record}


def save_model(estimator, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a fitted estimator to ``path`` (tensors and plain data only).

    Parameters
    ----------
    estimator : ISTNAdapter, TaskClassifier or TaskRegressor
        Fitted. Callbacks and ``init_params`` are not saved (they only
        matter while training); everything needed to transform or predict is.
        Its task network, optimizer and loss must be classes of
        :func:`~istn_sk._records.rebuildable_classes`.
    path : path-like
        Destination file (conventionally ``.pt``).
    overwrite : bool, default=False
        Replace an existing file; otherwise an existing file is an error.

    Returns
    -------
    Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        If a parameter is neither plain data nor a class of the table.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    payload = _payload(estimator)
    with atomic_path(path) as temporary:
        save_torch(payload, temporary)
    return path


def _read(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"refusing to load {path}: it holds objects other than tensors and "
                         f"plain data, which could run code ({error})".splitlines()[0]) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable istn-sk model file (corrupt or truncated?): "
                         f"{error}".splitlines()[0]) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an istn-sk model file (format {FORMAT} expected)")
    return payload


def load_model(path: str | os.PathLike):
    """Read an estimator written by :func:`save_model`.

    Uses ``torch.load(weights_only=True)``: a file that carries anything but
    tensors and plain data is refused, not executed. Every class the file
    names is then looked up in :func:`~istn_sk._records.rebuildable_classes`, and the file is
    refused before any estimator is constructed if one is not there.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ISTNAdapter, TaskClassifier or TaskRegressor
        Ready to transform or predict.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is corrupt, truncated, not an istn-sk model, or names a
        class (or function) outside the table.
    """
    from skorch.history import History

    from ._adapter import ISTNAdapter
    from ._validation import ImageLayout

    path = Path(path)
    payload = _read(path)
    try:
        is_adapter = lookup(payload.get("class"), "model", "", "class") is ISTNAdapter
        plan = plan_adapter(payload) if is_adapter else plan_task(payload, "")
        history = field(payload, "history", "", list)
    except ValueError as error:
        raise ValueError(f"refusing to load {path}: {error}") from None
    if not is_adapter:
        task = build_task(plan)
        task.history_ = History(history)
        return task
    adapter = build(plan["build"])
    spatial = plan["image_shape_"]
    sites = plan["source_sites_"]
    net = adapter._build_net(ImageLayout((), plan["n_channels_"], spatial),
                             n_sites=1 if sites is None else len(sites))
    net.initialize()
    net.module_.load_state_dict(plan["state"]["module"])
    net.discriminator_.load_state_dict(plan["state"]["discriminator"])
    net.history_ = History(history)
    adapter.net_, adapter.history_ = net, net.history_
    adapter.n_channels_, adapter.image_shape_ = plan["n_channels_"], spatial
    adapter.n_features_in_ = plan["n_features_in_"]
    adapter.source_sites_ = None if sites is None else np.asarray(sites)
    adapter.task_ = None if plan["task"] is None else build_task(plan["task"])
    return adapter
