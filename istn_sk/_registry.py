"""The plugin registry: named STNs, losses, datasets, augmentations, regularisers, content losses.

The plugin manager is built in pytest's order: hook specifications first,
then the ``istn_sk`` entry points of installed distributions (unless the
environment variable ``ISTN_SK_DISABLE_PLUGIN_AUTOLOAD`` is set), then the
built-in plugins of :mod:`istn_sk.plugins`. Each registration hook is called
once per plugin with a :class:`Register` that remembers who provided what.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from numbers import Real
from typing import Any

import pluggy

from . import hookspecs
from ._version import __version__

DISABLE_AUTOLOAD_ENV = "ISTN_SK_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN_PLUGINS = (
    "istn_sk.plugins.spatial_transformers",
    "istn_sk.plugins.losses",
    "istn_sk.plugins.datasets",
    "istn_sk.plugins.augmentations",
    "istn_sk.plugins.regularisers",
    "istn_sk.plugins.content_losses",
)

KIND_HOOKS = {
    "spatial_transformer": "istn_sk_register_spatial_transformers",
    "loss": "istn_sk_register_losses",
    "dataset": "istn_sk_register_datasets",
    "augmentation": "istn_sk_register_augmentations",
    "regulariser": "istn_sk_register_regularisers",
    "content_loss": "istn_sk_register_content_losses",
}


class PluginError(ValueError):
    """A plugin name is unknown, or two plugins claim the same name."""


@dataclass(frozen=True)
class Entry:
    """One named factory in the registry.

    Attributes
    ----------
    kind : str
        ``"spatial_transformer"``, ``"loss"`` or ``"dataset"``.
    name : str
        The name users pass, e.g. ``"bspline"``.
    factory : callable
        What the plugin registered.
    provider : str
        The distribution (or plugin name) that registered it.
    version : str
        The provider's version, empty when unknown.
    description : str
        One line for listings.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    provider: str
    version: str
    description: str


class Register:
    """The object a registration hook receives; ``add`` records one factory.

    Parameters
    ----------
    registry : Registry
        Where entries go.
    kind : str
        Which kind of factory this hook registers.
    provider, version : str
        Who is registering, for listings and for duplicate-name errors.
    """

    def __init__(self, registry: Registry, kind: str, provider: str, version: str) -> None:
        self._registry = registry
        self._kind = kind
        self._provider = provider
        self._version = version

    def add(self, name: str, factory: Callable[..., Any], *, description: str = "") -> None:
        """Register ``factory`` under ``name``.

        Parameters
        ----------
        name : str
            Name users select it by; must be unique within its kind.
        factory : callable
            See the hook specification for the factory's signature.
        description : str, default=""
            One line shown by ``istn-sk plugins``.

        Raises
        ------
        PluginError
            If ``name`` is already registered for this kind.
        """
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self._provider}: a {self._kind} name must be a non-empty string")
        if not callable(factory):
            raise PluginError(
                f"{self._provider}: the {self._kind} {name!r} factory is not callable")
        entry = Entry(self._kind, name, factory, self._provider, self._version, description)
        self._registry._add(entry)


class Registry:
    """Every registered factory, by kind and name.

    Parameters
    ----------
    plugin_manager : pluggy.PluginManager
        A manager with istn-sk's hook specifications and its plugins loaded.
    """

    def __init__(self, plugin_manager: pluggy.PluginManager) -> None:
        self.plugin_manager = plugin_manager
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KIND_HOOKS}
        distributions = {id(plugin): dist for plugin, dist in plugin_manager.list_plugin_distinfo()}
        for kind, hook_name in KIND_HOOKS.items():
            for impl in getattr(plugin_manager.hook, hook_name).get_hookimpls():
                provider, version = _provider_of(impl, distributions)
                register = Register(self, kind, provider, version)
                impl.function(**{arg: register for arg in impl.argnames})

    def _add(self, entry: Entry) -> None:
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            raise PluginError(
                f"{entry.kind} {entry.name!r} is registered twice: by {existing.provider} "
                f"and by {entry.provider}"
            )
        self._entries[entry.kind][entry.name] = entry

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self._entries[_check_kind(kind)])

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        """Entries of one kind, or of every kind, sorted by kind and name."""
        kinds = list(KIND_HOOKS) if kind is None else [_check_kind(kind)]
        for each in kinds:
            for name in sorted(self._entries[each]):
                yield self._entries[each][name]

    def get(self, kind: str, name: str, *, parameter: str | None = None) -> Entry:
        """The entry registered as ``name``.

        Parameters
        ----------
        kind : str
            ``"spatial_transformer"``, ``"loss"``, ``"dataset"``, ``"augmentation"``,
            ``"regulariser"`` or ``"content_loss"``.
        name : str
            The registered name.
        parameter : str, optional
            The user-facing parameter that carried ``name``, for the message.

        Raises
        ------
        PluginError
            If nothing is registered under ``name``; the message lists the
            registered names and the closest match.
        """
        entries = self._entries[_check_kind(kind)]
        if name in entries:
            return entries[name]
        known = sorted(entries)
        where = f"{parameter}={name!r}" if parameter else repr(name)
        message = f"unknown {kind} {where}; registered: {', '.join(known) or 'none'}"
        close = difflib.get_close_matches(str(name), known, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        raise PluginError(message)


def _check_kind(kind: str) -> str:
    if kind not in KIND_HOOKS:
        raise PluginError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KIND_HOOKS)}")
    return kind


def _provider_of(impl: pluggy.HookImpl, distributions: dict[int, Any]) -> tuple[str, str]:
    dist = distributions.get(id(impl.plugin))
    if dist is not None:
        return dist.project_name, dist.version
    if impl.plugin_name in BUILTIN_PLUGINS:
        return "istn-sk", __version__
    return impl.plugin_name, ""


def make_plugin_manager(*, autoload: bool | None = None) -> pluggy.PluginManager:
    """Build a plugin manager with the hook specifications and all plugins.

    Parameters
    ----------
    autoload : bool, optional
        Load the ``istn_sk`` entry points of installed distributions. By
        default they are loaded unless ``ISTN_SK_DISABLE_PLUGIN_AUTOLOAD`` is
        set to a non-empty value.

    Returns
    -------
    pluggy.PluginManager
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        manager.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
    for module_name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(module_name), name=module_name)
    return manager


_registry: Registry | None = None


def get_registry(*, refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use.

    Parameters
    ----------
    refresh : bool, default=False
        Rebuild it, e.g. after installing a plugin or changing
        ``ISTN_SK_DISABLE_PLUGIN_AUTOLOAD``.

    Returns
    -------
    Registry
    """
    global _registry
    if _registry is None or refresh:
        _registry = Registry(make_plugin_manager())
    return _registry


def weighted_factories(kind: str, weights, parameter: str) -> list[tuple[str, Callable, float]]:
    """``(name, factory, weight)`` for each ``{name: weight}`` entry, checked.

    For the parameters that take registered names with weights (``dis_regularisers``,
    ``content_losses``); ``weights`` must already be a mapping.

    Raises
    ------
    ValueError
        A weight is not a non-negative finite number.
    PluginError
        A name is not registered for ``kind``.
    """
    registry = get_registry()
    checked = []
    for name, weight in weights.items():
        factory = registry.get(kind, name, parameter=parameter).factory
        if not isinstance(weight, Real) or isinstance(weight, bool) \
                or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"{parameter}[{name!r}] must be a non-negative number, "
                             f"got {weight!r}")
        checked.append((name, factory, float(weight)))
    return checked
