"""Export of fitted networks for deployment: ONNX, safetensors weights, TorchScript.

One call exports one network: an adapter's ISTN of one direction or a task
model's network, in eval mode, on the CPU, in float32. Every file carries
the same JSON description: ``format``, ``istn_sk_version``, ``estimator``;
``direction`` for an adapter's ISTN; ``architecture``, what rebuilds the
network (an adapter's ``adapter_params`` with ``in_channels`` and
``image_shape``, or a task network's class and constructor ``kwargs``);
``input`` and ``output`` (names, and shapes with a ``batch`` axis); and
``classes`` for a classifier (the labels of the logits' columns). It is the
ONNX model's ``metadata_props["istn_sk"]``, the TorchScript archive's extra
file ``istn_sk.json``, the safetensors header's ``istn_sk`` entry, and for
safetensors also the sidecar ``<path>.json``.

torch is imported by the functions that need it, so the command line can
list the formats without importing it.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from importlib import import_module
from pathlib import Path

from ._atomic import atomic_path
from ._version import __version__

FORMATS = ("onnx", "safetensors", "torchscript")
FORMAT = "istn-sk-export/1"
INPUT_NAME = "images"
#: Packages each format needs beyond torch; all come with the ``export`` extra.
_REQUIRES = {"onnx": ("onnx", "onnxscript"), "safetensors": ("safetensors",), "torchscript": ()}
_EXAMPLE_BATCH = 2


def _require(format: str) -> None:
    missing = []
    for name in _REQUIRES[format]:
        try:
            import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"format={format!r} needs {' and '.join(missing)}, which "
                          f"{'is' if len(missing) == 1 else 'are'} not installed: "
                          f"pip install 'istn-sk[export]'")


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _adapter_network(adapter, direction: str | None):
    from sklearn.utils.validation import check_is_fitted

    from ._adapter_params import per_axis

    check_is_fitted(adapter, msg="This ISTNAdapter is not fitted: nothing to export")
    direction = "s2t" if direction is None else direction
    if direction not in adapter.net_.module_:
        raise ValueError(f"direction must be one of {list(adapter.net_.module_)} for this "
                         f"adapter (mode={adapter.mode!r}), got {direction!r}")
    if getattr(adapter.net_.module_[direction], "takes_sites", False):
        raise ValueError(f"this ISTNAdapter maps {len(adapter.source_sites_)} source sites "
                         f"{adapter.source_sites_.tolist()} with a network that takes each "
                         "image's site as a second input; exporting it is not built (fit one "
                         "site per adapter to export)")
    spatial = tuple(adapter.image_shape_)
    images = ["batch", adapter.n_channels_, *spatial]
    architecture = {
        "network": _class_path(type(adapter.net_.module_[direction])),
        "adapter_params": {
            "itn": adapter.itn, "itn_output": adapter.itn_output, "stn": adapter.stn,
            "nf": adapter.nf, "cp_spacing": list(per_axis(adapter.cp_spacing, len(spatial))),
            "max_displacement": adapter.max_displacement,
            "stn_options": dict(adapter.stn_options or {}),
        },
        "in_channels": adapter.n_channels_, "image_shape": list(spatial),
    }
    description = {"direction": direction, "architecture": architecture,
                   "output": {"name": "output", "shape": images}}
    return adapter.net_.module_[direction], images, description


def _task_network(task, direction: str | None):
    from sklearn.exceptions import NotFittedError

    if not getattr(task, "initialized_", False) or not hasattr(task, "n_outputs_"):
        raise NotFittedError(f"This {type(task).__name__} is not fitted: nothing to export")
    if direction is not None:
        raise ValueError(f"direction selects an ISTNAdapter's ISTN; a {type(task).__name__} "
                         f"has one network, so leave direction=None (got {direction!r})")
    spatial = tuple(task.image_shape_)
    kwargs = {"spatial_dims": len(spatial), "in_channels": task.n_channels_,
              "image_shape": list(spatial), "n_outputs": task.n_outputs_,
              "nf": task.nf, **task.get_params_for("module")}
    classifier = hasattr(task, "fitted_classes_")
    description = {
        "architecture": {"network": _class_path(type(task.module_)), "kwargs": kwargs},
        "output": {"name": "logits" if classifier else "prediction",
                   "shape": ["batch", task.n_outputs_]},
    }
    if classifier:
        description["classes"] = task.fitted_classes_.tolist()
    return task.module_, ["batch", task.n_channels_, *spatial], description


def _network(estimator, direction: str | None):
    """The estimator's network to export, its input shape and its description."""
    from ._adapter import ISTNAdapter
    from ._task import _TaskMixin

    if isinstance(estimator, ISTNAdapter):
        module, images, description = _adapter_network(estimator, direction)
    elif isinstance(estimator, _TaskMixin):
        module, images, description = _task_network(estimator, direction)
    else:
        raise TypeError(f"export takes a fitted ISTNAdapter, TaskClassifier or TaskRegressor, "
                        f"not {type(estimator).__name__}")
    description = {"format": FORMAT, "istn_sk_version": __version__,
                   "estimator": type(estimator).__name__, **description,
                   "input": {"name": INPUT_NAME, "shape": images, "dtype": "float32",
                             "range": [-1.0, 1.0]}}
    return module, images, description


def _json_value(value):
    """``json.dumps``'s fallback: numpy scalars and arrays as builtins, nothing else."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot describe the parameter value {value!r} ({type(value).__name__}) "
                    "in JSON")


def _check_destinations(paths: list[Path], overwrite: bool) -> None:
    for path in paths:
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"folder {path.parent} does not exist")


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where a safetensors export's JSON description goes: ``<path>.json``."""
    path = Path(path)
    return path.with_name(f"{path.name}.json")


def _write_onnx(module, example, description: dict, text: str, path: Path) -> None:
    from ._onnx import to_onnx

    program = to_onnx(module, example, input_name=INPUT_NAME,
                      output_name=description["output"]["name"], metadata={"istn_sk": text})
    with atomic_path(path) as temporary:
        program.save(temporary, external_data=False)


def _write_torchscript(module, example, description: dict, text: str, path: Path) -> None:
    import torch

    try:
        with warnings.catch_warnings():   # sizes of the fixed image axes become constants
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(module, (example,))
    except Exception as error:
        raise ValueError(f"torch.jit.trace cannot trace the {description['estimator']}'s "
                         f"network ({type(error).__name__}: {error}); format='onnx' exports "
                         "it") from error
    with atomic_path(path) as temporary:
        torch.jit.save(traced, temporary, _extra_files={"istn_sk.json": text})


def _write_safetensors(module, description: dict, text: str, path: Path) -> None:
    from safetensors.torch import save

    tensors = {key: value.detach().cpu().contiguous()
               for key, value in module.state_dict().items()}
    content = save(tensors, metadata={"format": "pt", "istn_sk": text})
    with atomic_path(path) as temporary:
        temporary.write_bytes(content)
    with atomic_path(sidecar_path(path)) as temporary:
        temporary.write_text(json.dumps(description, indent=2, default=_json_value) + "\n")


def export(estimator, path: str | os.PathLike, format: str = "onnx", *,
           direction: str | None = None, overwrite: bool = False) -> Path:
    """Write a fitted estimator's network for deployment.

    Parameters
    ----------
    estimator : ISTNAdapter, TaskClassifier or TaskRegressor
        Fitted. For an adapter, its ISTN of ``direction`` is exported (the
        discriminators are not); for a task model, its network, which
        returns logits (classifiers; a softmax gives ``predict_proba``) or
        predictions (regressors).
    path : path-like
        Destination file, in an existing folder.
    format : {"onnx", "safetensors", "torchscript"}, default="onnx"
        ``"onnx"``: an ONNX model (opset 20) with input ``images`` and a
        dynamic ``batch`` axis, for onnxruntime and other ONNX runtimes.
        ``"safetensors"``: the network's ``state_dict`` (read back with
        ``safetensors.torch.load_file``, no istn-sk needed) and the sidecar
        ``<path>.json`` describing it (see the module's docstring), with
        the parameters that rebuild the network. ``"torchscript"``:
        ``torch.jit.trace`` of the network, any batch size
        (``torch.jit.load``).
    direction : {"s2t", "t2s"}, optional
        Adapters only: which ISTN; ``"s2t"`` by default, ``"t2s"`` in
        cyclegan mode.
    overwrite : bool, default=False
        Replace existing files; otherwise an existing file is an error.

    Returns
    -------
    Path
        ``path``. Files are written to a temporary file and renamed, so a
        failed export leaves none, nor a partial one.

    Raises
    ------
    NotFittedError
        If the estimator is not fitted.
    ValueError
        If ``format`` is unknown, ``direction`` does not name a network of
        the estimator, or tracing fails (``"torchscript"``).
    ImportError
        If a package the format needs is missing (extra ``istn-sk[export]``).
    FileExistsError
        If a destination exists and ``overwrite`` is False.
    """
    import torch

    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; known formats: "
                         f"{', '.join(FORMATS)}")
    path = Path(path)
    module, images, description = _network(estimator, direction)
    _check_destinations([path, sidecar_path(path)] if format == "safetensors" else [path],
                        overwrite)
    _require(format)
    text = json.dumps(description, default=_json_value)
    module = copy.deepcopy(module).cpu().float().eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros((_EXAMPLE_BATCH, *images[1:]))
    if format == "safetensors":
        _write_safetensors(module, description, text, path)
    elif format == "onnx":
        _write_onnx(module, example, description, text, path)
    else:
        _write_torchscript(module, example, description, text, path)
    return path
