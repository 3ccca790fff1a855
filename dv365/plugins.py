"""The plugin manager: built-in and installed plugins, and the registries they fill.

Plugins are loaded in this order:

1. the built-in plugins (:data:`DEFAULT_PLUGINS`), modules of dv365 itself that register the
   built-in encoders, backbones and metrics through the same hooks as everyone else;
2. the plugins of installed distributions, found through the ``dv365`` entry-point group::

       [project.entry-points.dv365]
       softmix = "dv365_softmix"        # a module with @dv365.hookimpl functions

Two environment variables control step 2:

* ``DV365_DISABLE_PLUGIN_AUTOLOAD`` (any non-empty value but ``0``): load no installed plugin.
* ``DV365_PLUGINS=name1,name2``: load only these entry points (by entry-point name or
  distribution name); naming one that is not installed is an error.

After loading, :meth:`pluggy.PluginManager.check_pending` makes a ``@hookimpl`` whose name is
not a hook (a misspelling) fail loudly, and the registration hooks fill one
:class:`Registry` per kind. Registries map a name to a :class:`Registration`: the factory, its
options model, and the plugin it came from.

The kinds are one table, :data:`PLUGIN_KINDS`: each row names the kind, its registration hook
(declared in :mod:`dv365.hookspecs`), the :class:`Plugins` attribute of its registry and the
keywords its ``register`` takes. Adding a kind is one row here plus its hookspec.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterator

import pluggy
from pydantic import BaseModel, ConfigDict

from dv365 import hookspecs
from dv365.errors import Dv365Error, NotFoundError

ENTRY_POINT_GROUP = "dv365"
DISABLE_AUTOLOAD_ENV = "DV365_DISABLE_PLUGIN_AUTOLOAD"
ALLOWLIST_ENV = "DV365_PLUGINS"

# Built-in plugins, imported by name. They register through the hooks like outside plugins.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "dv365.model.encoders",
    "dv365.model.backbones",
    "dv365.model.metrics",
    "dv365.export.codecs",
    "dv365.stores",
    "dv365.downstream.adapters",
    "dv365.experiments.kinds",
)



@dataclass(frozen=True)
class PluginKind:
    """One kind of plugin-provided thing and how it is registered.

    ``hook`` is the registration hookspec (its implementations get a ``register`` callback);
    ``plural`` names the kind's registry on :class:`Plugins` (``plugins.encoders``) and in
    ``dv365 plugins``. ``takes_options``: ``register`` accepts ``options=`` (a pydantic model
    a config section is validated against). ``applies_to``: ``register`` accepts
    ``applies_to=`` (task kinds), defaulting to this tuple; ``None``: it does not.
    """

    name: str
    plural: str
    hook: Callable[..., None]
    takes_options: bool = True
    applies_to: tuple[str, ...] | None = None

    @property
    def hook_name(self) -> str:
        return self.hook.__name__


PLUGIN_KINDS: tuple[PluginKind, ...] = (
    PluginKind("encoder", "encoders", hookspecs.dv365_register_encoders),
    PluginKind("backbone", "backbones", hookspecs.dv365_register_backbones),
    PluginKind("adapter", "adapters", hookspecs.dv365_register_adapters),
    PluginKind("experiment", "experiments", hookspecs.dv365_register_experiments),
    PluginKind("metric", "metrics", hookspecs.dv365_register_metrics, takes_options=False,
               applies_to=("binary",)),
    PluginKind("codec", "codecs", hookspecs.dv365_register_codecs, takes_options=False),
    PluginKind("store", "stores", hookspecs.dv365_register_stores, takes_options=False),
)
KINDS: tuple[str, ...] = tuple(kind.name for kind in PLUGIN_KINDS)
_KIND_OF_PLURAL = {kind.plural: kind for kind in PLUGIN_KINDS}


def lazy_factory(module: str, attribute: str) -> Callable[..., Any]:
    """A factory calling ``module.attribute`` with its arguments, the module imported at the
    first call: registration hooks run in every command, so a plugin's networks (and torch)
    load only when one is built."""

    def factory(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), attribute)(*args, **kwargs)

    return factory


class PluginError(Dv365Error):
    """A plugin is broken or two plugins disagree (misspelled hook, duplicate name)."""

    exit_code = 2


# What plugin code may raise that dv365 reports as the plugin's failure: any exception, and
# SystemExit, which would otherwise end the process with the plugin's exit status.
_PLUGIN_FAILURES = (Exception, SystemExit)
_BUILTIN = "builtin "


def _failure_text(exc: BaseException) -> str:
    """``Type: message`` on one line (a plugin's message may span several)."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _naming_failures(function: Callable[..., Any], failed: str) -> Callable[..., Any]:
    """``function`` raising a :class:`PluginError` that starts with ``failed`` (naming the
    plugin and what of it failed) instead of whatever else it raised; dv365's own errors
    pass."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Dv365Error:
            raise
        except _PLUGIN_FAILURES as exc:
            raise PluginError(f"{failed}: {_failure_text(exc)}") from exc

    return guarded


class NoOptions(BaseModel):
    """The options of a plugin that takes none: any key is an error."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Registration:
    """One registered encoder/backbone/adapter/metric."""

    kind: str
    name: str
    factory: Callable[..., Any]
    origin: str
    doc: str = ""
    options: type[BaseModel] = NoOptions
    # Metrics only: the task kinds the metric is computed for.
    applies_to: tuple[str, ...] = ()


@dataclass
class Registry:
    """Name -> :class:`Registration` for one kind of plugin-provided thing."""

    plugin_kind: PluginKind
    entries: dict[str, Registration] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.plugin_kind.name

    def registrar(self, origin: str) -> Callable[..., None]:
        """The ``register`` callback handed to one plugin's registration hook (the
        signatures are the ``Register*`` protocols of :mod:`dv365.hookspecs`)."""
        kind = self.plugin_kind

        def register(name: str, factory: Callable[..., Any], *,
                     options: type[BaseModel] | None = None, doc: str | None = None,
                     applies_to: tuple[str, ...] | list[str] | None = None) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"{origin} registered a {kind.name} with an invalid name "
                                  f"{name!r}")
            if not callable(factory):
                raise PluginError(f"{origin} registered {kind.name} {name!r} with a factory "
                                  "that is not callable")
            if options is not None and not kind.takes_options:
                raise PluginError(f"{origin} registered {kind.name} {name!r} with options; "
                                  f"a {kind.name} takes none")
            if options is not None and not (isinstance(options, type)
                                            and issubclass(options, BaseModel)):
                raise PluginError(f"{origin} registered {kind.name} {name!r} with options "
                                  "that are not a pydantic model class")
            if applies_to is not None and kind.applies_to is None:
                raise PluginError(f"{origin} registered {kind.name} {name!r} with applies_to; "
                                  f"a {kind.name} does not apply to task kinds")
            previous = self.entries.get(name)
            if previous is not None:
                raise PluginError(
                    f"{kind.name} {name!r} is registered twice: by {previous.origin} and by "
                    f"{origin}",
                    hint="uninstall one of them, or restrict plugins with DV365_PLUGINS")
            if doc is None:
                doc = (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
            task_kinds = tuple(applies_to) if applies_to is not None else (
                kind.applies_to or ())
            if not origin.startswith(_BUILTIN):
                factory = _naming_failures(
                    factory, f"{kind.name} {name!r} of plugin {origin} failed")
            self.entries[name] = Registration(kind.name, name, factory, origin, doc,
                                              options or NoOptions, task_kinds)

        return register

    def get(self, name: str, *, where: str | None = None) -> Registration:
        """The registration called ``name``; a :class:`NotFoundError` suggests close names."""
        try:
            return self.entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.entries), n=1)
            hint = f"did you mean {close[0]!r}?" if close else (
                f"registered: {', '.join(sorted(self.entries)) or 'none'}; see `dv365 plugins`")
            raise NotFoundError(f"no {self.kind} named {name!r}", where=where,
                                hint=hint) from None

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __iter__(self) -> Iterator[Registration]:
        return iter(self.entries[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)


@dataclass
class Plugins:
    """A loaded plugin manager and the registries its plugins filled.

    Each kind's registry is also an attribute named by the kind's ``plural``
    (``plugins.encoders``, ``plugins.backbones``, ``plugins.adapters``, ``plugins.metrics``).
    """

    manager: pluggy.PluginManager
    registries: dict[str, Registry]  # kind name -> registry, in PLUGIN_KINDS order

    def registry(self, kind: str) -> Registry:
        """The registry of a kind (``"encoder"``, ...); a ``KeyError`` for an unknown kind."""
        return self.registries[kind]

    def __getattr__(self, name: str) -> Registry:
        # Only called for attributes not found otherwise: the registries by plural.
        kind = _KIND_OF_PLURAL.get(name)
        if kind is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self.registries[kind.name]

    @property
    def hook(self) -> Any:
        return self.manager.hook


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip()
    return value not in ("", "0")


def _allowlist() -> set[str] | None:
    raw = os.environ.get(ALLOWLIST_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _origin(manager: pluggy.PluginManager, plugin: object) -> str:
    for plugin_, dist in manager.list_plugin_distinfo():
        if plugin_ is plugin:
            return f"{dist.project_name} {dist.version}"
    name = manager.get_name(plugin) or repr(plugin)
    return f"{_BUILTIN}{name}" if name in DEFAULT_PLUGINS else name


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    # One entry point at a time, so that a plugin failing at import is named.
    allow = _allowlist()
    found: set[str] = set()
    for dist in metadata.distributions():
        dist_name = dist.metadata["name"] or ""
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            if allow is not None:
                wanted = {ep.name, dist_name, dist_name.replace("_", "-")} & allow
                if not wanted:
                    continue
                found |= wanted
            try:
                manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
            except _PLUGIN_FAILURES as exc:
                raise PluginError(
                    f"plugin {dist_name} {dist.version} (entry point {ep.name!r}) failed at "
                    f"import: {_failure_text(exc)}", where=ENTRY_POINT_GROUP,
                    hint=f"set {DISABLE_AUTOLOAD_ENV}=1 to skip installed plugins") from exc
    missing = allow - found if allow is not None else set()
    if missing:
        raise PluginError(f"{ALLOWLIST_ENV} names {', '.join(sorted(missing))} but no installed "
                          f"distribution provides a {ENTRY_POINT_GROUP!r} entry point of that "
                          "name", where=ALLOWLIST_ENV)


def _check_hook_names(manager: pluggy.PluginManager) -> None:
    # pluggy's check_pending only sees functions marked @hookimpl; a dv365_-prefixed function
    # that is not a hook is almost surely a misspelling too (marked or not).
    known = {name for name in dir(hookspecs) if name.startswith("dv365_")}
    for plugin in manager.get_plugins():
        for attr in dir(plugin):
            if attr.startswith("dv365_") and attr not in known and callable(
                    getattr(plugin, attr, None)):
                close = difflib.get_close_matches(attr, sorted(known), n=1)
                raise PluginError(
                    f"plugin {_origin(manager, plugin)} implements unknown hook {attr!r}",
                    hint=f"did you mean {close[0]!r}?" if close else
                    "hook names are listed in docs/plugins.md")


def load_plugins(*, extra: tuple[object, ...] = (), autoload: bool | None = None) -> Plugins:
    """Build a plugin manager and fill the registries.

    ``extra`` plugins (modules or objects) are registered after the built-ins, as if
    installed (tests and notebooks use this). ``autoload=None`` follows
    ``DV365_DISABLE_PLUGIN_AUTOLOAD``; ``False`` never loads entry points.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if manager.has_plugin(name):
            name = f"{name}-{id(plugin)}"
        try:
            manager.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(f"cannot register plugin {plugin!r}: {exc}") from exc
    if autoload is None:
        autoload = not _env_flag(DISABLE_AUTOLOAD_ENV)
    if autoload:
        try:
            _load_entry_points(manager)
        except PluginError:
            raise
        except _PLUGIN_FAILURES as exc:
            raise PluginError(f"loading installed plugins failed: {type(exc).__name__}: "
                              f"{exc}", hint=f"set {DISABLE_AUTOLOAD_ENV}=1 to skip them") from exc
    _check_hook_names(manager)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {_origin(manager, exc.plugin)}: {exc}",
                          hint="hook names are listed in docs/plugins.md") from None

    plugins = Plugins(manager, {kind.name: Registry(kind) for kind in PLUGIN_KINDS})
    for kind in PLUGIN_KINDS:
        registry, hook_name = plugins.registry(kind.name), kind.hook_name
        # Each implementation is called on its own so that every registration knows which
        # plugin made it (for `dv365 plugins` and for duplicate-name errors).
        # Registration order: built-ins first, so a duplicate error names the built-in first.
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            origin = _origin(manager, impl.plugin)
            _call_hookimpl(impl, origin, hook_name, register=registry.registrar(origin))
    return plugins


def _call_hookimpl(impl: pluggy.HookImpl, origin: str, hook_name: str, **kwargs: Any) -> None:
    # A broken plugin is named instead of a traceback (or, for SystemExit, a silent exit).
    _naming_failures(impl.function, f"plugin {origin} failed in {hook_name}")(
        **{name: kwargs[name] for name in impl.argnames})


def add_commands(plugins: Plugins, cli: Any) -> None:
    """Run every plugin's ``dv365_add_commands(cli)`` on the Click group ``cli``; one that
    fails, or replaces a command already there, is a :class:`PluginError` naming it."""
    for impl in plugins.hook.dv365_add_commands.get_hookimpls():
        origin = _origin(plugins.manager, impl.plugin)
        before = dict(cli.commands)
        _call_hookimpl(impl, origin, "dv365_add_commands", cli=cli)
        replaced = sorted(name for name, command in before.items()
                          if cli.commands.get(name) is not command)
        if replaced:
            raise PluginError(f"plugin {origin} replaces the command "
                              f"{', '.join(map(repr, replaced))}",
                              hint="a plugin adds commands under new names")


_cached: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugins (built once, on first use)."""
    global _cached
    if _cached is None:
        _cached = load_plugins()
    return _cached


def reset_plugins() -> None:
    """Forget the process-wide plugins (after installing one, or changing the env vars)."""
    global _cached
    _cached = None

