"""Options shared by the commands, and settings merged from config file, ``--set`` and options.

A command's settings are the values of its options, keyed by their names
(``--train-set`` is ``train_set``), plus estimator parameters (the
estimators' ``get_params()`` names). Precedence: an option given on the
command line, then ``--set KEY=VALUE``, then the config file, then the
option's default. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import click
from click.core import ParameterSource

#: Option names that are not settings: where the run goes, and the config sources.
NOT_SETTINGS = ("config", "set_values", "out", "force", "resume")
#: Parameters never set from a config file: objects, or set by dedicated options.
NOT_CONFIGURABLE = frozenset({"task", "callbacks", "init_params", "train_split"})
#: Prefixes of skorch's routed parameters (``optimizer__weight_decay``, ...).
ROUTED_PREFIXES = ("optimizer__", "module__", "iterator_train__", "iterator_valid__",
                   "criterion__")


class KeyValue(click.ParamType):
    """``KEY=VALUE`` on the command line, or a ``(key, value)`` pair from a config file."""

    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return tuple(value)
        key, sep, text = str(value).partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key.strip(), text.strip()


KEY_VALUE = KeyValue()


def pairs_to_dict(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``[("a", 1), ("a", 2), ("b", 3)]`` -> ``{"a": [1, 2], "b": 3}``."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            previous = result[key] if isinstance(result[key], list) else [result[key]]
            result[key] = [*previous, value]
        else:
            result[key] = value
    return result


def option_group(*decorators: Callable) -> Callable:
    """One decorator applying ``decorators`` in order (the first is the topmost)."""
    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="No progress report (neither a bar nor progress lines).")


def config_options(function: Callable) -> Callable:
    """``--config`` and ``--set``."""
    return option_group(
        click.option("-c", "--config", type=click.Path(dir_okay=False),
                     help="JSON or YAML file of settings (option names with underscores, "
                          "estimator parameters, or the reference code's keys)."),
        click.option("--set", "set_values", multiple=True, type=KEY_VALUE,
                     help="Set any setting or estimator parameter, e.g. --set lr=1e-4 "
                          "--set cp_spacing=[4,4]; values are read as JSON/YAML."),
    )(function)


def run_options(function: Callable | None = None, *, resumable: bool = False) -> Callable:
    """``--out``, ``--force``, ``--device``, ``--num-workers``.

    With ``resumable`` (``@run_options(resumable=True)``), ``--out`` is not
    required by click: the command requires it unless ``--resume`` is given.
    """
    if function is None:
        return lambda decorated: run_options(decorated, resumable=resumable)
    return option_group(
        click.option("-o", "--out", required=not resumable, type=click.Path(file_okay=False),
                     help="Output folder of this run" + (" (required unless --resume)."
                                                         if resumable else ".")),
        click.option("--force", is_flag=True,
                     help="Write into an existing, non-empty output folder (files of the same "
                          "names are replaced)."),
        click.option("--device", default="cpu", show_default=True,
                     help="Torch device, e.g. cuda or cuda:1 (the reference's --dev)."),
        click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Processes reading images (torch DataLoader workers)."),
    )(function)


image_options = option_group(
    click.option("--image-key", default="image", show_default=True,
                 help="Manifest column of image paths (relative to the manifest)."),
    click.option("--mask-key", help="Manifest column of mask paths (voxels where the mask is 0 "
                                    "are set to 0)."),
    click.option("--normalizer", type=click.Choice(["none", "tanh"]), default="none",
                 show_default=True,
                 help="Applied to stored intensities when reading (undone when writing)."),
)
label_options = option_group(
    click.option("--label-key", help="Manifest column of the task labels."),
    click.option("--site-key", default="site", show_default=True,
                 help="Manifest column naming each image's site (domain)."),
)


def data_options(*names: str) -> Callable:
    """``--<name>-set SPEC`` and ``--<name>-where KEY=VALUE`` for each name, and the columns."""
    decorators = []
    for name in names:
        decorators += [
            click.option(f"--{name}-set", f"{name}_set", metavar="SPEC",
                         help=f"The {name} images: a .tsv/.csv manifest, a folder of image "
                              "files, or a registered dataset name."),
            click.option(f"--{name}-where", f"{name}_where", multiple=True, type=KEY_VALUE,
                         help=f"Keep the {name} manifest's rows whose COLUMN equals VALUE "
                              "(repeatable); for a registered dataset, options of its load."),
        ]
    return option_group(*decorators, image_options, label_options)


#: The estimator parameters with an option of their own: type and help.
ESTIMATOR_OPTIONS = {
    "stn": (str, "Spatial transformer: affine, bspline, none, or a plugin's (`istn-sk plugins`)."),
    "nf": (int, "Base number of filters of the networks (the reference's nf)."),
    "max_epochs": (int, "Training epochs (the reference's epochs)."),
    "batch_size": (int, "Images per training step."),
    "lr": (float, "Adam learning rate (the reference's learning_rate)."),
    "mode": (click.Choice(["unidirectional", "cyclegan"]),
             "One ISTN, or two trained with cycle terms (da_bidirectional_training.py)."),
    "random_state": (int, "Seed: a fixed value gives identical runs on CPU."),
    "precision": (click.Choice(["float32", "bfloat16"]),
                  "Training arithmetic: bfloat16 autocast is faster on CPUs with AVX-512 BF16 "
                  "or AMX and on recent GPUs (README, training-step speed)."),
}


def estimator_options(*names: str) -> Callable:
    """``--<param>`` options for estimator parameters (unset: the estimator's default)."""
    return option_group(*[
        click.option(f"--{name.replace('_', '-')}", name, type=ESTIMATOR_OPTIONS[name][0],
                     default=None, help=ESTIMATOR_OPTIONS[name][1])
        for name in names
    ])


def plain_params(estimator) -> set[str]:
    """Parameters of ``estimator`` that a config file can hold (plain values)."""
    plain = (type(None), bool, int, float, str, tuple, list, dict)
    return {name for name, value in estimator.get_params(deep=False).items()
            if isinstance(value, plain) and not name.startswith("_")} - NOT_CONFIGURABLE


def _from_config(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if param.multiple or param.nargs != 1:
        if isinstance(value, Mapping):
            value = list(value.items())
        elif not isinstance(value, (list, tuple)):
            value = [value]
    try:
        return param.type_cast_value(ctx, value)
    except click.BadParameter as error:
        raise ValueError(f"setting {param.name!r}: {error.message}") from None


def resolve_settings(ctx: click.Context, *, estimator_keys: Collection[str] = (),
                     prefixes: Iterable[str] = (),
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge the command's options, ``--set`` pairs and the config file.

    Parameters
    ----------
    ctx : click.Context
        The running command's context.
    estimator_keys : collection of str
        Estimator parameters this command accepts.
    prefixes : iterable of str
        Accepted key prefixes (routed or nested parameters).
    extra : mapping, optional
        Settings with no option of their own, and their defaults (e.g.
        ``files``, ``thresholds``).

    Returns
    -------
    dict
        Every option's value and every given key; estimator keys left unset
        are absent. Keys the command does not use (reference keys) are
        reported with a note on stderr.
    """
    from istn_sk.io import canonical_config, parse_value, read_config

    options = {param.name: param for param in ctx.command.params
               if param.name not in NOT_SETTINGS}
    known = set(options) | set(estimator_keys) | set(extra or {})
    prefixes = tuple(prefixes)
    given: dict[str, Any] = {}
    if ctx.params.get("config"):
        path = ctx.params["config"]
        given.update(canonical_config(read_config(path), known, origin=str(path),
                                      prefixes=prefixes))
    pairs = {key: parse_value(text) if isinstance(text, str) else text
             for key, text in ctx.params.get("set_values", ())}
    given.update(canonical_config(pairs, known, origin="--set", prefixes=prefixes))
    settings = dict(extra or {})
    settings.update({key: value for key, value in given.items() if key not in options})
    for name, param in options.items():
        from_command_line = ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                               ParameterSource.ENVIRONMENT)
        if from_command_line or name not in given:
            settings[name] = ctx.params[name]
        else:
            settings[name] = _from_config(ctx, param, given[name])
    # no augmentation (the reference's 0) is what every command that does not train does
    unused = sorted(key for key in given if key not in known and not key.startswith(prefixes)
                    and not (key == "augmentation" and given[key] is None))
    if unused:
        click.echo(f"note: {', '.join(unused)}: no effect in `istn-sk {ctx.command.name}` "
                   "(see docs/cli.md)", err=True)
    # an option left at its None default is "not given"; a null given in a config file or
    # with --set is a value (ema_decay=null turns the weight averages off)
    return {key: value for key, value in settings.items()
            if not (value is None and key in estimator_keys and key not in given)}


def check_num_classes(num_classes: Any, *, regression: bool, classes: Collection[Any],
                      where: str) -> None:
    """The reference's ``num_classes`` against a task model's (or its labels') classes.

    ``num_classes`` is the number of outputs of the reference's task
    network: 1 for a regressor and for a binary classifier (one sigmoid
    output), ``k`` for ``k`` classes.

    Raises
    ------
    ValueError
        They disagree (the message says what each means).
    """
    if num_classes is None:
        return
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is not a positive integer")
    if regression:
        if num_classes != 1:
            raise ValueError(f"num_classes={num_classes}, but a regressor has one output "
                             "(num_classes 1)")
        return
    expected = 2 if num_classes == 1 else num_classes
    if len(classes) != expected:
        meaning = "a binary classifier (2 classes)" if num_classes == 1 else f"{expected} classes"
        raise ValueError(f"num_classes={num_classes} means {meaning}, but {where} has "
                         f"{len(classes)}: {', '.join(map(str, sorted(classes, key=str)))}")
