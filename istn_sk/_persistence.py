"""Saving and loading fitted estimators without pickle.

A model file holds only tensors and plain data (numbers, strings, lists,
dicts), written with ``torch.save`` and read back with
``torch.load(weights_only=True)``, so loading a file from an untrusted
source cannot run code: a file carrying any other object is refused.
Estimators are rebuilt from their parameters, then their weights are loaded.
"""

from __future__ import annotations

import importlib
import os
import pickle
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._atomic import atomic_path
from ._version import __version__

FORMAT = "istn-sk-model/1"
_TRUSTED_CLASS_PREFIXES = ("torch.", "istn_sk.")
_TASK_FIELDS = ("n_channels_", "image_shape_", "n_outputs_", "n_features_in_")


def _class_name(cls: type) -> str:
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not name.startswith(_TRUSTED_CLASS_PREFIXES):
        raise ValueError(f"cannot save a model built on {name}: only torch and istn_sk classes "
                         "are rebuilt on loading; save the module's state_dict yourself")
    return name


def _import_class(name: str) -> type:
    if not name.startswith(_TRUSTED_CLASS_PREFIXES):
        raise ValueError(f"model file names the class {name!r}, which is neither a torch nor an "
                         "istn_sk class; refusing to import it")
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


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
        return {"__class__": _class_name(value)}
    if hasattr(value, "get_params"):
        return {"__estimator__": _class_name(type(value)),
                "params": _estimator_params(value)}
    if isinstance(value, np.random.RandomState):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ValueError(f"cannot save the parameter value {value!r} ({type(value).__name__}) "
                     "as plain data")


def _restore(value):
    if not isinstance(value, dict):
        return value
    if "__sequence__" in value:
        items = [_restore(v) for v in value["items"]]
        return tuple(items) if value["__sequence__"] == "tuple" else items
    if "__dict__" in value:
        return {k: _restore(v) for k, v in value["__dict__"].items()}
    if "__class__" in value:
        return _import_class(value["__class__"])
    if "__estimator__" in value:
        return _import_class(value["__estimator__"])(**{k: _restore(v) for k, v
                                                        in value["params"].items()})
    raise ValueError(f"unreadable parameter record {sorted(value)}")


def _estimator_params(estimator) -> dict:
    """The constructor parameters worth saving: training-time callbacks and seeds are not."""
    from ._task import _TaskMixin

    params = estimator.get_params(deep=False)
    if isinstance(estimator, _TaskMixin):
        keep = ("module", "nf", "lr", "max_epochs", "batch_size", "optimizer", "criterion",
                "image_shape", "spatial_dims", "random_state", "device", "verbose")
        params = {k: params[k] for k in keep}
        params.update({k: v for k, v in estimator.get_params(deep=False).items()
                       if k.startswith("module__")})
    params.pop("callbacks", None)
    params.pop("init_params", None)
    return {k: _plain(v) for k, v in params.items()}


def _task_record(task) -> dict:
    fitted = {name: _plain(getattr(task, name)) for name in _TASK_FIELDS}
    if hasattr(task, "fitted_classes_"):
        fitted["classes"] = task.fitted_classes_.tolist()
    else:
        fitted["target_ndim"] = int(task.target_ndim_)
    return {"class": _class_name(type(task)), "params": _estimator_params(task),
            "fitted": fitted, "state": task.module_.state_dict()}


def _history(net) -> list[dict]:
    """Per-epoch records without the per-batch lists, as builtin numbers and strings."""
    def builtin(value):
        if isinstance(value, (bool, str)):
            return value
        return int(value) if isinstance(value, Integral) else float(value)

    return [{k: builtin(v) for k, v in epoch.items() if isinstance(v, (Integral, float, str))}
            for epoch in net.history]


def _payload(estimator) -> dict:
    from ._adapter import ISTNAdapter
    from ._task import _TaskMixin

    if isinstance(estimator, ISTNAdapter):
        check_is_fitted(estimator)
        net = estimator.net_
        record = {
            "class": _class_name(type(estimator)),
            "params": _estimator_params(estimator),
            "fitted": {"n_channels_": estimator.n_channels_,
                       "image_shape_": list(estimator.image_shape_),
                       "n_features_in_": int(estimator.n_features_in_)},
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
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    payload = _payload(estimator)
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
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


def _restore_task(record: dict):
    task = _import_class(record["class"])(**{k: _restore(v) for k, v in
                                              record["params"].items()})
    fitted = record["fitted"]
    for name in _TASK_FIELDS:
        setattr(task, name, _restore(fitted[name]))
    if "classes" in fitted:
        task.fitted_classes_ = np.asarray(fitted["classes"])
    else:
        task.target_ndim_ = fitted["target_ndim"]
    task.initialize()
    task.module_.load_state_dict(record["state"])
    return task


def load_model(path: str | os.PathLike):
    """Read an estimator written by :func:`save_model`.

    Uses ``torch.load(weights_only=True)``: a file that carries anything but
    tensors and plain data is refused, not executed.

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
        If the file is corrupt, truncated, not an istn-sk model, or untrusted.
    """
    from skorch.history import History

    from ._adapter import ISTNAdapter
    from ._validation import ImageLayout

    path = Path(path)
    payload = _read(path)
    cls = _import_class(payload["class"])
    if not issubclass(cls, ISTNAdapter):
        task = _restore_task(payload)
        task.history_ = History(payload["history"])
        return task
    adapter = cls(**{k: _restore(v) for k, v in payload["params"].items()})
    fitted = payload["fitted"]
    spatial = tuple(fitted["image_shape_"])
    net = adapter._build_net(ImageLayout((), fitted["n_channels_"], spatial))
    net.initialize()
    net.module_.load_state_dict(payload["state"]["module"])
    net.discriminator_.load_state_dict(payload["state"]["discriminator"])
    net.history_ = History(payload["history"])
    adapter.net_, adapter.history_ = net, net.history_
    adapter.n_channels_, adapter.image_shape_ = fitted["n_channels_"], spatial
    adapter.n_features_in_ = fitted["n_features_in_"]
    adapter.task_ = None if payload["task"] is None else _restore_task(payload["task"])
    return adapter
