"""Config files (JSON or YAML) and the reference code's config keys."""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

#: Reference config keys whose istn-sk name differs.
REFERENCE_ALIASES = {
    "cyc_weight": "consistency_weight",
    "learning_rate": "lr",
    "epochs": "max_epochs",
    "input_shape": "image_shape",
    "itn_path": "adapter",
    "stn_path": "adapter",
}

#: Every key of the reference code's config files (``config_*.json``).
REFERENCE_KEYS = frozenset({
    "augmentation", "batch_size", "cp_spacing", "cyc_loss", "cyc_weight", "dataset_name",
    "dis_loss", "early_stopping_epochs", "epochs", "files", "finetune", "gan_loss",
    "idt_loss", "input_shape", "itn_path", "label_key", "learning_rate", "max_displacement",
    "nf", "normalizer", "num_classes", "siteA_name", "siteA_train", "siteA_val", "siteB_name",
    "siteB_train", "siteB_val", "stn", "stn_path", "task_model", "test_set", "thresholds",
    "train_set", "val_interval",
})

#: The file of a ``fit`` run that ``itn_path``/``stn_path`` (and ``adapter``) name
#: when they name the run's folder.
ADAPTER_FILE = "adapter.pt"
#: Path keys whose 0, false or empty value means "none" (the reference's ``"task_model": 0``).
_OPTIONAL_PATHS = ("task_model", "itn_path", "stn_path")
_NONE_STRINGS = ("none", "None", "null")


def _unset(value: Any) -> bool:
    return value is None or value is False or value == "" or (
        isinstance(value, (int, float)) and value == 0)


def _adapter_path(value: Any) -> Any:
    """A run folder names its ``adapter.pt``."""
    if isinstance(value, str) and Path(value).is_dir():
        return str(Path(value) / ADAPTER_FILE)
    return value


def _same_file(a: Any, b: Any) -> bool:
    return (isinstance(a, str) and isinstance(b, str)
            and os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b)))


class _AmbiguousBooleanError(ValueError):
    """A YAML 1.1 boolean word (``yes``, ``no``, ``on``, ``off``) written without quotes."""


def _strict_boolean(loader, node):
    if node.value.lower() in ("true", "false"):
        return loader.construct_yaml_bool(node)
    meaning = node.value.lower() in ("yes", "on")
    raise _AmbiguousBooleanError(
        f"line {node.start_mark.line + 1}: YAML reads {node.value} as the boolean "
        f"{str(meaning).lower()}; quote it (\"{node.value}\") if it is text (a site, an STN "
        f"or loss name), or write {str(meaning).lower()} if it is a boolean")


@functools.cache
def _yaml_loader():
    """PyYAML's safe loader, refusing the YAML 1.1 booleans other than true and false."""
    import yaml

    loader = type("StrictBooleanLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("tag:yaml.org,2002:bool", _strict_boolean)
    return loader


def parse_value(text: str) -> Any:
    """A command-line value as JSON, else YAML, else the text itself.

    ``"4"`` -> 4, ``"1e-4"`` -> 0.0001, ``"[8, 8]"`` -> [8, 8], ``"true"`` -> True,
    ``"bspline"`` -> ``"bspline"``.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float, list, dict)) else text


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (``.yaml``, ``.yml``) config file: one mapping.

    In YAML, only ``true`` and ``false`` are booleans: the YAML 1.1 words
    ``yes``, ``no``, ``on`` and ``off`` (unquoted, any case) are refused, as
    they would turn a site called ``no`` or ``stn: off`` into a boolean.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Unparsable, not a mapping, another suffix, or an unquoted ``yes``,
        ``no``, ``on`` or ``off`` (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    suffix = path.suffix.lower()
    text = path.read_text()
    if suffix == ".json":
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: invalid JSON: {error}") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            config = yaml.load(text, Loader=_yaml_loader())
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: invalid YAML: {' '.join(str(error).split())}") from None
        except _AmbiguousBooleanError as error:
            raise _AmbiguousBooleanError(f"{path}, {error}") from None
    else:
        raise ValueError(f"{path}: a config file is .json, .yaml or .yml")
    if config is None:
        return {}
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise ValueError(f"{path}: a config file holds one mapping of names to values")
    return config


def _reference_value(key: str, value: Any) -> Any:
    if key in ("stn", "normalizer") and (value is None or value in _NONE_STRINGS):
        return "none"
    if key == "finetune" and value in (0, 1):
        return bool(value)
    return value


def _augmentation_policy(value: Any, origin: str) -> str | None:
    """The reference's 0/1 (or false/true) as no policy / ``"reference"``; names pass through."""
    if value is None or value is False or (type(value) is int and value == 0):
        return None
    if value is True or (type(value) is int and value == 1):
        return "reference"
    if isinstance(value, str):
        return value
    raise ValueError(f"{origin}: augmentation must be 0/1, true/false or the name of a "
                     f"registered augmentation policy, got {value!r}")


def canonical_config(config: Mapping[str, Any], known: Collection[str], *,
                     origin: str, prefixes: Iterable[str] = ()) -> dict[str, Any]:
    """Rename reference keys to istn-sk's names and reject unknown keys.

    Parameters
    ----------
    config : mapping
        Keys and values as read (a config file, or ``--set`` pairs).
    known : collection of str
        The istn-sk names that apply; reference keys (:data:`REFERENCE_KEYS`)
        are always accepted.
    origin : str
        The file or option the keys came from, for messages.
    prefixes : iterable of str, optional
        Any key starting with one of these is accepted too (routed
        parameters such as ``optimizer__weight_decay``).

    Returns
    -------
    dict
        Keys renamed by :data:`REFERENCE_ALIASES`; ``None``/``"None"`` for
        ``stn`` and ``normalizer`` become ``"none"``; 0/1 for ``finetune``
        become booleans; ``augmentation`` 1/true becomes the policy
        ``"reference"`` (the reference code's shift and flip) and 0/false
        None; ``task_model``, ``itn_path``
        and ``stn_path`` set to 0, false or ``""`` (the reference's "none")
        are left out; ``itn_path``/``stn_path``/``adapter`` naming a folder
        (a ``fit`` run) name its ``adapter.pt``.

    Raises
    ------
    ValueError
        An unknown key (the message suggests the closest known one), two
        keys naming the same setting with different values (for
        ``itn_path`` and ``stn_path``: different files, as istn-sk keeps
        the ITN and the STN in one adapter file), or an ``augmentation``
        that is neither 0/1, a boolean nor a policy name.
    """
    prefixes = tuple(prefixes)
    accepted = set(known) | REFERENCE_KEYS
    result: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in config.items():
        if key not in accepted and not (prefixes and key.startswith(prefixes)):
            message = f"{origin}: unknown key {key!r}"
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            raise ValueError(message + (f" (did you mean {close[0]!r}?)" if close else ""))
        if key in _OPTIONAL_PATHS and _unset(value):
            continue
        name = REFERENCE_ALIASES.get(key, key)
        value = _reference_value(name, value)
        if name == "augmentation":
            value = _augmentation_policy(value, origin)
        if name == "adapter":
            value = _adapter_path(value)
            if name in result and not _same_file(result[name], value) and result[name] != value:
                raise ValueError(
                    f"{origin}: {given_as[name]!r} and {key!r} both set {name!r}, to different "
                    f"files ({result[name]}, {value}): istn-sk keeps the ITN and the STN in one "
                    f"file, the {ADAPTER_FILE} of an `istn-sk fit` run; name it, or the run's "
                    "folder, with either key or both")
            if name in result:
                continue
        if name in result and result[name] != value:
            raise ValueError(f"{origin}: {given_as[name]!r} and {key!r} both set {name!r}, "
                             f"to different values")
        result[name] = value
        given_as[name] = key
    return result
