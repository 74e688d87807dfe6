"""The records of a model file: which classes it may name, checked before anything is built.

Loading happens in two steps. The *plan* step walks the whole record tree
read from a file, refuses any record that is not one :mod:`._persistence`
writes, and resolves each class name through the fixed table of
:func:`rebuildable_classes`; it constructs and calls nothing. The *build*
step then constructs the planned estimators. A file naming a function, or
any class outside the table, is thus refused before it can have an effect.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

TASK_FIELDS = ("n_channels_", "image_shape_", "n_outputs_", "n_features_in_")
TASK_PARAMS = ("module", "nf", "lr", "max_epochs", "batch_size", "optimizer", "criterion",
               "image_shape", "spatial_dims", "random_state", "device", "verbose",
               "augmentation", "lr_schedule")
UNSAVED_PARAMS = ("callbacks", "init_params")


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def rebuildable_classes() -> dict[str, dict[str, type]]:
    """The only classes a model file may name, by kind, keyed by the name files use.

    Returns
    -------
    dict
        ``"model"``: what a file may hold (ISTNAdapter, TaskClassifier,
        TaskRegressor); ``"task"``: what a task record or an estimator
        parameter may be (TaskClassifier, TaskRegressor); ``"component"``:
        classes given as parameter values (the task networks, torch
        optimizers and losses), instantiated only by the estimator that
        holds them, as in ``fit``.
    """
    from ._adapter import ISTNAdapter
    from ._task import TaskClassifier, TaskNetwork, TaskRegressor
    from .nn import FullyConvolutionalNet

    optim, nn = torch.optim, torch.nn
    components = (TaskNetwork, FullyConvolutionalNet,
                  optim.Adam, optim.AdamW, optim.SGD, optim.RMSprop, optim.Adagrad,
                  optim.Adadelta, optim.Adamax, optim.NAdam, optim.RAdam,
                  nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss, nn.MSELoss, nn.L1Loss,
                  nn.SmoothL1Loss, nn.HuberLoss)
    tasks = {_name(cls): cls for cls in (TaskClassifier, TaskRegressor)}
    return {"model": {_name(ISTNAdapter): ISTNAdapter, **tasks}, "task": tasks,
            "component": {_name(cls): cls for cls in components}}


def class_name(cls: type, kind: str) -> str:
    """The name a model file gives ``cls``, which must be of the table's ``kind``."""
    name = _name(cls)
    if rebuildable_classes()[kind].get(name) is not cls:
        allowed = ", ".join(c.__name__ for c in rebuildable_classes()[kind].values())
        raise ValueError(f"cannot save a model built on {name}: only these classes are rebuilt "
                         f"on loading here: {allowed}; save the module's state_dict yourself")
    return name


@dataclass(frozen=True)
class _Build:
    """An estimator to construct once the whole file has been checked."""

    cls: type
    params: dict


def field(record, key: str, where: str, kind: type | tuple[type, ...] = object):
    """``record[key]``, refused unless ``record`` is a dict holding a ``kind`` there."""
    if not isinstance(record, dict) or key not in record:
        raise ValueError(f"{where or 'top level'} lacks the field {key!r}")
    value = record[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{where or 'top level'}: the field {key!r} is a "
                         f"{type(value).__name__}, which it cannot be")
    return value


def lookup(name, kind: str, where: str, tag: str) -> type:
    """The class of the table's ``kind`` that the ``tag`` record at ``where`` names."""
    table = rebuildable_classes()[kind]
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{where or 'top level'}: the {tag!r} record names {name!r}, which is "
                         f"not one of the classes a model file may name there "
                         f"({', '.join(table)})")
    return table[name]


def _is_saved_param(cls: type, key) -> bool:
    if cls in rebuildable_classes()["task"].values():
        return key in TASK_PARAMS or (isinstance(key, str) and key.startswith("module__"))
    return key in set(cls._get_param_names()).difference(UNSAVED_PARAMS)


def _decode(value, where: str):
    """Check one parameter value and resolve its class names; constructs and calls nothing."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    keys = set(value) if isinstance(value, dict) else None
    if keys == {"__sequence__", "items"} and value["__sequence__"] in ("list", "tuple"):
        items = [_decode(v, f"{where}[{i}]")
                 for i, v in enumerate(field(value, "items", where, list))]
        return tuple(items) if value["__sequence__"] == "tuple" else items
    if keys == {"__dict__"}:
        return {k: _decode(v, f"{where}[{k!r}]")
                for k, v in field(value, "__dict__", where, dict).items()}
    if keys == {"__class__"}:
        return lookup(value["__class__"], "component", where, "__class__")
    if keys == {"__estimator__", "params"}:
        return _plan_estimator(value, "__estimator__", where, "task")
    shown = f" with the keys {sorted(map(repr, keys))}" if keys is not None else ""
    raise ValueError(f"{where}: a {type(value).__name__}{shown} is not a parameter record a "
                     "model file may hold")


# Parameters added after model files were first written, with the value every older
# file was trained with (a newer default would rebuild a different network or training).
BEFORE_THE_PARAMETER = {"content_losses": None, "dis_coordinates": False, "identity_on": "istn",
                        "lr_schedule": "constant"}


def _plan_estimator(record: dict, tag: str, where: str, kind: str) -> _Build:
    cls = lookup(record.get(tag), kind, where, tag)
    params = field(record, "params", where, dict)
    where = f"{where}.params" if where else "params"
    for key in params:
        if not _is_saved_param(cls, key):
            raise ValueError(f"{where}: {cls.__name__} is given the parameter {key!r}, which "
                             "model files do not hold")
    decoded = {k: _decode(v, f"{where}[{k!r}]") for k, v in params.items()}
    older = {k: v for k, v in BEFORE_THE_PARAMETER.items()
             if k not in decoded and _is_saved_param(cls, k)}
    return _Build(cls, {**older, **decoded})


def _check_state(state, where: str) -> None:
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{where} is not a mapping of names to tensors")


def plan_task(record, where: str) -> dict:
    """Check a task record (a whole file, or an adapter's ``task`` field) before building it."""
    estimator = _plan_estimator(record, "class", where, "task")
    fitted = field(record, "fitted", where, dict)
    at = f"{where}.fitted" if where else "fitted"
    plan = {"build": estimator, "fitted": {name: _decode(field(fitted, name, at), f"{at}[{name!r}]")
                                       for name in TASK_FIELDS}}
    if "classes" in fitted:
        plan["classes"] = field(fitted, "classes", at, list)
        if not all(isinstance(c, (bool, int, float, str)) for c in plan["classes"]):
            raise ValueError(f"{at}['classes'] holds values other than labels")
    else:
        plan["target_ndim"] = field(fitted, "target_ndim", at, int)
    plan["state"] = field(record, "state", where, dict)
    _check_state(plan["state"], f"{where}.state" if where else "state")
    return plan


def plan_adapter(payload: dict) -> dict:
    """Check an adapter's file, its task record included, before building anything."""
    estimator = _plan_estimator(payload, "class", "", "model")
    fitted = field(payload, "fitted", "", dict)
    shape = field(fitted, "image_shape_", "fitted", list)
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
        raise ValueError("fitted['image_shape_'] is not a list of sizes")
    state = field(payload, "state", "", dict)
    for part in ("module", "discriminator"):
        _check_state(field(state, part, "state", dict), f"state[{part!r}]")
    task = payload.get("task")
    sites = fitted.get("source_sites_")   # absent from files written before many sites
    if sites is not None and (not isinstance(sites, list) or not sites or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in sites)):
        raise ValueError("fitted['source_sites_'] is not a list of source site ids")
    return {"build": estimator, "n_channels_": field(fitted, "n_channels_", "fitted", int),
            "source_sites_": sites,
            "image_shape_": tuple(shape), "state": state,
            "n_features_in_": field(fitted, "n_features_in_", "fitted", int),
            "task": None if task is None else plan_task(task, "task")}


def build(value):
    """Construct the estimators of a checked parameter value."""
    if isinstance(value, _Build):
        return value.cls(**{k: build(v) for k, v in value.params.items()})
    if isinstance(value, (list, tuple)):
        return type(value)(build(v) for v in value)
    if isinstance(value, dict):
        return {k: build(v) for k, v in value.items()}
    return value


def build_task(plan: dict):
    """The fitted task model a :func:`plan_task` plan describes."""
    task = build(plan["build"])
    for name in TASK_FIELDS:
        setattr(task, name, build(plan["fitted"][name]))
    if "classes" in plan:
        task.fitted_classes_ = np.asarray(plan["classes"])
    else:
        task.target_ndim_ = plan["target_ndim"]
    task.initialize()
    task.module_.load_state_dict(plan["state"])
    return task
