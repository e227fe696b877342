"""The plugin registry: entry-point discovery, lazy loading and in-process registration.

Plugins are found through Python entry points in the groups ``wsss_kit.<kind>`` (read with the
``entrypoints`` package, which parses ``entry_points.txt`` files and imports nothing). This module is
the only place that knows about that mechanism.

Rules:

* discovery never imports a plugin; the object is loaded on first use and cached;
* a plugin that fails to import is *broken*: :func:`list_plugins` reports it with the reason, the
  others keep working, and using it raises :class:`BrokenPluginError` naming the plugin, its
  distribution and version and the cause. "Fails" includes any ``BaseException`` but
  ``KeyboardInterrupt`` (a plugin calling ``sys.exit()`` at import is broken, it does not end the
  program), and an import that does not finish within ``WSSS_KIT_PLUGIN_IMPORT_TIMEOUT`` seconds
  (default 30; ``0`` or ``none`` for no limit): such a plugin is marked broken ("timed out") and
  the others are listed and used as usual;
* ``WSSS_KIT_DISABLE_PLUGINS`` skips installed plugins at discovery: they are listed as
  *disabled*, never imported, and using one raises :class:`DisabledPluginError`. The variable is a
  comma-separated list of entries, each one of::

      name              every installed plugin called ``name``, of any kind and distribution
      kind/name         that kind only (``refiners/weakclip``; singular kinds are accepted)
      dist:name         that distribution's plugin(s) called ``name`` (``tp-x:weakclip``)
      kind/dist:name    both restrictions
      dist:*            everything the distribution provides (``*`` stands for any name)

  Plugins registered in-process with :func:`register` are never disabled;
* two providers of the same kind and name make the bare name ambiguous
  (:class:`AmbiguousPluginError` names both distributions); ``"dist:name"`` selects one. One
  exception keeps configs working when a third-party distribution reuses a first-party name
  (:data:`FIRST_PARTY_DISTS`): the bare name then selects the first-party plugin, with a
  :class:`PluginNameClashWarning` that names both distributions and how to select the other;
* an unknown name raises :class:`UnknownPluginError` listing what exists and the closest matches;
* a plugin object declares ``wsss_api_version = "MAJOR.MINOR"``; it must have the core's major
  version and a minor version no newer than the core's.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, TypeVar

import entrypoints

from .errors import (
    AmbiguousPluginError,
    BrokenPluginError,
    PluginError,
    PluginVersionError,
    UnknownPluginError,
)
from .interfaces import INTERFACES
from .plugin_import import FROM_ENV, TIMEOUT_ENV, ImportGuard, Outcome  # noqa: F401 - TIMEOUT_ENV re-exported
from .version import API_VERSION

__all__ = ["DISABLE_ENV", "FIRST_PARTY_DISTS", "KINDS", "LOCAL_DIST", "TIMEOUT_ENV", "DisabledPluginError",
           "PluginInfo", "PluginNameClashWarning", "Registry", "accepted_kwargs", "check_kind", "check_kwargs",
           "create", "default_registry", "did_you_mean", "disable_rules", "group_of", "list_plugins",
           "normalize_dist", "register"]

KINDS: tuple[str, ...] = tuple(sorted(INTERFACES))
"""The plugin kinds, each read from the entry-point group ``wsss_kit.<kind>``."""

LOCAL_DIST = "local"
"""Distribution name reported for plugins registered in-process with :func:`register`."""

FIRST_PARTY_DISTS: frozenset[str] = frozenset({
    "wsss-kit", "wsss-kit-cams", "wsss-kit-pole", "wsss-kit-weakclip", "wsss-kit-deeplab", "wsss-kit-affinity",
})
"""Distributions of this project; their names win over a third-party plugin of the same name."""

DISABLE_ENV = "WSSS_KIT_DISABLE_PLUGINS"
"""Environment variable listing installed plugins to skip at discovery (see the module docstring)."""

_KIND_ALIASES = {k[:-1]: k for k in KINDS} | {"loss": "losses"}
"""Singular spellings accepted for each kind (``cam``, ``loss``, ``dataset`` ...)."""

T = TypeVar("T")


class DisabledPluginError(PluginError):
    """The plugin is installed but disabled by ``WSSS_KIT_DISABLE_PLUGINS``."""


class PluginNameClashWarning(UserWarning):
    """A third-party plugin uses the name of a first-party one; the bare name selects the first party."""


def group_of(kind: str) -> str:
    """The entry-point group of a plugin kind: ``"cams"`` → ``"wsss_kit.cams"``."""
    return f"wsss_kit.{check_kind(kind)}"


def check_kind(kind: str) -> str:
    """Normalise a kind (singular forms are accepted) or raise listing the valid kinds."""
    if kind in KINDS:
        return kind
    if kind in _KIND_ALIASES:
        return _KIND_ALIASES[kind]
    raise UnknownPluginError(
        f"unknown plugin kind {kind!r}; valid kinds: {', '.join(KINDS)}" + did_you_mean(kind, KINDS)
    )


def normalize_dist(name: str) -> str:
    """PEP 503 normalisation so that ``wsss_kit_cams`` and ``wsss-kit-cams`` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_first_party(dist: str) -> bool:
    """Whether ``dist`` is one of this project's distributions (:data:`FIRST_PARTY_DISTS`)."""
    return normalize_dist(dist) in FIRST_PARTY_DISTS


@dataclass
class PluginInfo:
    """One plugin: where it comes from and whether it loads."""

    kind: str
    name: str
    dist: str
    version: str
    target: str
    """``module:attribute`` the entry point names (or the object's qualified name if local)."""
    status: str = "unloaded"
    """``"unloaded"`` (not imported yet), ``"ok"``, ``"broken"`` or ``"disabled"``."""
    error: str = ""
    """For a broken plugin, the cause (exception type and message); for a disabled one, which
    ``WSSS_KIT_DISABLE_PLUGINS`` entry disabled it."""
    _entry_point: Any = field(default=None, repr=False)
    _obj: Any = field(default=None, repr=False)
    _traceback: str = field(default="", repr=False)

    @property
    def qualified_name(self) -> str:
        """``dist:name``, unique even when two distributions use the same name."""
        return f"{self.dist}:{self.name}"

    def describe(self) -> str:
        return f"{self.kind} plugin {self.name!r} from {self.dist} {self.version}"


# ---------------------------------------------------------------------- WSSS_KIT_DISABLE_PLUGINS
@dataclass(frozen=True)
class DisableRule:
    """One entry of ``WSSS_KIT_DISABLE_PLUGINS``: ``[kind/][dist:]name`` (``name`` may be ``*``)."""

    text: str
    name: str
    kind: str | None = None
    dist: str | None = None

    def matches(self, info: PluginInfo) -> bool:
        return ((self.kind is None or self.kind == info.kind)
                and (self.dist is None or self.dist == info.dist)
                and self.name in ("*", info.name))


def disable_rules(value: str | None = None) -> list[DisableRule]:
    """Parse ``value`` (default: the ``WSSS_KIT_DISABLE_PLUGINS`` environment variable).

    Raises:
        PluginError: an entry has an unknown kind or an empty name, naming the entry.
    """
    if value is None:
        value = os.environ.get(DISABLE_ENV, "")
    rules = []
    for text in (t.strip() for t in value.split(",")):
        if not text:
            continue
        kind, rest = (text.split("/", 1) if "/" in text else (None, text))
        dist, name = (rest.split(":", 1) if ":" in rest else (None, rest))
        if kind is not None:
            try:
                kind = check_kind(kind.strip())
            except UnknownPluginError as exc:
                raise PluginError(f"{DISABLE_ENV} entry {text!r}: {exc}") from None
        name = name.strip()
        if not name or (dist is not None and not dist.strip()):
            raise PluginError(f"{DISABLE_ENV} entry {text!r} names no plugin; expected 'name', 'kind/name', "
                              f"'dist:name' or 'kind/dist:name' ('*' for every name)")
        rules.append(DisableRule(text, name, kind, normalize_dist(dist.strip()) if dist is not None else None))
    return rules


class Registry:
    """Plugins of every kind, indexed from entry points plus in-process registrations.

    Most code uses the module-level functions, which share one default instance.

    Args:
        path: folders to search for installed distributions (default ``sys.path``).
        import_timeout: seconds a plugin import may take (``None``: no limit); by default read from
            ``WSSS_KIT_PLUGIN_IMPORT_TIMEOUT`` at each import (:mod:`wsss_kit.plugin_import`).
        disabled: ``WSSS_KIT_DISABLE_PLUGINS``-style entries; by default read from that variable when
            the index is built (first use, and after :meth:`refresh`).
    """

    def __init__(self, path: Sequence[str] | None = None, *, import_timeout: float | None = FROM_ENV,
                 disabled: str | None = None) -> None:
        self._path = list(path) if path is not None else None
        self._guard = ImportGuard(import_timeout)
        self._disabled = disabled
        self._lock = threading.RLock()
        self._scanned: dict[str, list[PluginInfo]] = {}
        self._local: dict[str, dict[str, PluginInfo]] = {k: {} for k in KINDS}

    # ------------------------------------------------------------------ discovery
    def refresh(self) -> None:
        """Forget the entry-point index (after installing a plugin, or changing
        ``WSSS_KIT_DISABLE_PLUGINS``, in a running process)."""
        with self._lock:
            self._scanned.clear()

    def _scan(self, kind: str) -> list[PluginInfo]:
        with self._lock:
            if kind not in self._scanned:
                rules = disable_rules(self._disabled)
                found = []
                path = self._path if self._path is not None else sys.path
                for ep in entrypoints.get_group_all(group_of(kind), path=path):
                    dist = normalize_dist(ep.distro.name) if ep.distro else "unknown"
                    version = (ep.distro.version if ep.distro else None) or _installed_version(dist)
                    target = ep.module_name + (f":{ep.object_name}" if ep.object_name else "")
                    info = PluginInfo(kind, ep.name, dist, version, target, _entry_point=ep)
                    rule = next((r for r in rules if r.matches(info)), None)
                    if rule is not None:
                        info.status, info.error = "disabled", f"disabled by {DISABLE_ENV} entry {rule.text!r}"
                    found.append(info)
                self._scanned[kind] = found
            return self._scanned[kind]

    def infos(self, kind: str) -> list[PluginInfo]:
        """Every plugin of ``kind`` (entry points first, then in-process), sorted by name."""
        kind = check_kind(kind)
        items = list(self._scan(kind)) + list(self._local[kind].values())
        return sorted(items, key=lambda i: (i.name, i.dist))

    def list(self, kind: str | None = None, load: bool = False) -> list[PluginInfo]:
        """Plugins of one kind or of all kinds, sorted by kind then name.

        With ``load=True`` every plugin (but disabled ones) is imported so that broken ones show as
        broken; an import that takes longer than the time limit is reported as timed out and the
        listing goes on.
        """
        kinds = KINDS if kind is None else (check_kind(kind),)
        out = [info for k in kinds for info in self.infos(k)]
        if load:
            for info in out:
                self._load(info, raise_errors=False)
        return out

    def shadowed_by(self, info: PluginInfo) -> PluginInfo | None:
        """The first-party plugin whose name the third-party ``info`` reuses (the bare name selects it)."""
        if is_first_party(info.dist) or info.dist == LOCAL_DIST:
            return None
        firsts = [i for i in self.infos(info.kind)
                  if i.name == info.name and is_first_party(i.dist) and i.status != "disabled"]
        return firsts[0] if len(firsts) == 1 and info.status != "disabled" else None

    # ------------------------------------------------------------------ lookup
    def resolve(self, kind: str, name: str) -> PluginInfo:
        """Find the plugin ``name`` (or ``dist:name``) of ``kind`` without importing it."""
        kind = check_kind(kind)
        infos = self.infos(kind)
        dist = None
        bare = name
        if ":" in name:
            dist, bare = name.split(":", 1)
            dist = normalize_dist(dist)
        matches = [i for i in infos if i.name == bare and (dist is None or i.dist == dist)]
        usable = [i for i in matches if i.status != "disabled"]
        if matches and not usable:
            raise _disabled_error(matches)
        if len(usable) == 1:
            return usable[0]
        if len(usable) > 1:
            chosen = self._first_party_choice(usable) if dist is None else None
            if chosen is not None:
                return chosen
            providers = ", ".join(f"{m.dist} {m.version} ({m.target})" for m in usable)
            choices = " or ".join(repr(m.qualified_name) for m in usable)
            raise AmbiguousPluginError(
                f"{kind} plugin {bare!r} is provided by more than one distribution: {providers}; "
                f"name one of them as {choices}, or uninstall one"
            )
        names = sorted({i.name for i in infos})
        if dist is not None and any(i.name == bare for i in infos):
            dists = sorted(i.dist for i in infos if i.name == bare)
            raise UnknownPluginError(
                f"{kind} plugin {bare!r} is not provided by distribution {dist!r}; "
                f"it is provided by: {', '.join(dists)}"
            )
        available = ", ".join(names) if names else "none installed"
        raise UnknownPluginError(
            f"unknown {kind} plugin {bare!r}; available: {available}{did_you_mean(bare, names)}. "
            f"Run 'wsss plugins' to see every plugin with its distribution; a plugin must be installed "
            f"(pip install) and declare an entry point in group {group_of(kind)!r}, "
            f"or be registered in-process with wsss_kit.register({kind!r}, name)"
        )

    @staticmethod
    def _first_party_choice(usable: Sequence[PluginInfo]) -> PluginInfo | None:
        """The one first-party provider when every other provider is third-party, with a warning."""
        first = [m for m in usable if is_first_party(m.dist)]
        others = [m for m in usable if not is_first_party(m.dist)]
        if len(first) != 1 or any(m.dist == LOCAL_DIST for m in others):
            return None
        chosen = first[0]
        names = " and ".join(f"{m.dist} {m.version} ({m.target})" for m in others)
        picks = " or ".join(repr(m.qualified_name) for m in others)
        warnings.warn(
            f"{chosen.kind} plugin {chosen.name!r} is provided by the first-party distribution "
            f"{chosen.dist} {chosen.version} and by the third-party {names}; the bare name selects "
            f"{chosen.dist}'s. Select the other as {picks} "
            f"(in a config: type: {chosen.kind}/{others[0].qualified_name}), "
            f"or name {chosen.qualified_name!r} to silence this warning",
            PluginNameClashWarning, stacklevel=4,
        )
        return chosen

    def get(self, kind: str, name: str) -> Any:
        """The plugin's object (class or factory), imported on first use."""
        return self._load(self.resolve(kind, name), raise_errors=True)

    def _load(self, info: PluginInfo, raise_errors: bool) -> Any:
        if info.status == "unloaded":
            self._import(info)
        if info.status in ("broken", "disabled"):
            if not raise_errors:
                return None
            if info.status == "disabled":
                raise _disabled_error([info])
            err_type = PluginVersionError if "interface version" in info.error else BrokenPluginError
            raise err_type(
                f"{info.describe()} (entry point {info.target!r}) failed to load: {info.error}"
                + (f"\n{info._traceback}" if info._traceback else "")
            )
        return info._obj

    def _import(self, info: PluginInfo) -> None:
        """Import ``info``'s entry point (guarded: see :mod:`wsss_kit.plugin_import`) and record the result."""
        hint = f", or skip the plugin with {DISABLE_ENV}={info.kind}/{info.qualified_name}"
        outcome = self._guard.load(f"{info.kind}/{info.qualified_name}", info._entry_point, info.describe(), hint)
        with self._lock:
            if info.status == "unloaded":
                _settle(info, outcome)

    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        """Build a plugin object: look up ``name`` of ``kind`` and call it with ``kwargs``."""
        kind = check_kind(kind)
        info = self.resolve(kind, name)
        factory = self._load(info, raise_errors=True)
        check_kwargs(factory, kwargs, where=f"{kind}/{name}")
        obj = factory(**kwargs)
        iface = INTERFACES[kind]
        if not isinstance(obj, iface):
            raise PluginError(
                f"{info.describe()} built a {type(obj).__qualname__}, which does not implement "
                f"wsss_kit.{iface.__name__}"
            )
        return obj

    # ------------------------------------------------------------------ in-process
    def register(self, kind: str, name: str, obj: Any, *, override: bool = False,
                 api_version: str | None = None) -> PluginInfo:
        kind = check_kind(kind)
        if ":" in name or not name:
            raise PluginError(f"invalid plugin name {name!r}: it must be non-empty and contain no ':'")
        with self._lock:
            if name in self._local[kind] and not override:
                raise PluginError(
                    f"{kind} plugin {name!r} is already registered in this process by "
                    f"{self._local[kind][name].target}; pass override=True to replace it"
                )
            if api_version is not None:
                setattr(obj, "wsss_api_version", api_version)
            elif not hasattr(obj, "wsss_api_version"):
                try:
                    setattr(obj, "wsss_api_version", API_VERSION)
                except (AttributeError, TypeError):
                    pass
            target = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
            info = PluginInfo(kind, name, LOCAL_DIST, "-", target)
            check_api_version(obj, info)
            info.status, info._obj = "ok", obj
            self._local[kind][name] = info
            return info

    def unregister(self, kind: str, name: str) -> None:
        """Remove an in-process registration (entry points cannot be removed)."""
        kind = check_kind(kind)
        with self._lock:
            if self._local[kind].pop(name, None) is None:
                raise UnknownPluginError(f"{kind} plugin {name!r} was not registered in this process")


def _disabled_error(infos: list[PluginInfo]) -> DisabledPluginError:
    what = "; ".join(f"{i.describe()} (entry point {i.target!r}) is {i.error}" for i in infos)
    return DisabledPluginError(f"{what}; remove the entry from {DISABLE_ENV} to use it")


def _settle(info: PluginInfo, outcome: Outcome) -> None:
    if outcome.error:
        info.status, info.error, info._traceback = "broken", outcome.error, outcome.traceback
        return
    try:
        check_api_version(outcome.obj, info)
    except PluginVersionError as err:
        info.status, info.error, info._traceback = "broken", str(err), ""
    else:
        info.status, info._obj = "ok", outcome.obj


def _installed_version(dist: str) -> str:
    # An .egg-info folder (e.g. left by an editable build) carries no version in its name.
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def parse_version(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?\s*", str(text))
    if not m:
        raise ValueError(f"not a MAJOR.MINOR version: {text!r}")
    return int(m.group(1)), int(m.group(2) or 0)


def check_api_version(obj: Any, info: PluginInfo) -> None:
    """Raise :class:`PluginVersionError` unless ``obj.wsss_api_version`` is compatible."""
    declared = getattr(obj, "wsss_api_version", None)
    if declared is None:
        raise PluginVersionError(
            f"{info.describe()} declares no interface version: set wsss_api_version = "
            f"{API_VERSION!r} on {info.target} (the core's interface version is {API_VERSION})"
        )
    try:
        major, minor = parse_version(declared)
    except ValueError:
        raise PluginVersionError(
            f"{info.describe()} declares interface version {declared!r}, expected 'MAJOR.MINOR' such as {API_VERSION!r}"
        ) from None
    core_major, core_minor = parse_version(API_VERSION)
    if major != core_major or minor > core_minor:
        need = "a newer wsss-kit" if (major, minor) > (core_major, core_minor) else "an update of the plugin"
        raise PluginVersionError(
            f"{info.describe()} was written for interface version {declared}, but this wsss-kit "
            f"provides {API_VERSION} (compatible: {core_major}.0 to {API_VERSION}); it needs {need}"
        )


def check_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any], where: str) -> None:
    """Raise ``TypeError`` naming the unknown keywords and the valid ones, before calling ``factory``."""
    valid = accepted_kwargs(factory)
    if valid is None:
        return
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        hints = "".join(did_you_mean(u, valid) for u in unknown)
        raise TypeError(
            f"{where} got unexpected keyword{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; valid keywords: {', '.join(valid) or 'none'}{hints}"
        )


def accepted_kwargs(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword names ``factory`` accepts, or ``None`` when it takes ``**kwargs`` (unknowable)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    names = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.append(p.name)
    return names


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


_DEFAULT = Registry()


def default_registry() -> Registry:
    """The process-wide registry used by :func:`create`, :func:`list_plugins` and :func:`register`."""
    return _DEFAULT


def create(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Build plugin ``name`` of ``kind`` with ``kwargs``, e.g. ``create("cams", "resnet_cam", num_classes=20)``.

    ``name`` may be ``"dist:name"`` to choose between two distributions providing the same name.
    """
    return _DEFAULT.create(kind, name, **kwargs)


def list_plugins(kind: str | None = None, load: bool = False) -> list[PluginInfo]:
    """Installed and registered plugins, sorted by kind and name (without importing them unless ``load``)."""
    return _DEFAULT.list(kind, load=load)


def register(kind: str, name: str, obj: Any = None, *, override: bool = False,
             api_version: str | None = None) -> Any:
    """Register ``obj`` (a class or factory) as plugin ``name`` of ``kind`` in this process.

    Usable directly, ``register("cams", "mine", MyCAM)``, or as a decorator::

        @wsss_kit.register("cams", "mine")
        class MyCAM(wsss_kit.CAMGenerator): ...
    """
    if obj is None:
        def decorator(target: T) -> T:
            _DEFAULT.register(kind, name, target, override=override, api_version=api_version)
            return target
        return decorator
    _DEFAULT.register(kind, name, obj, override=override, api_version=api_version)
    return obj
