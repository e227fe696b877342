"""The plugin registry: entry-point discovery, lazy loading and in-process registration.

Plugins are found through Python entry points in the groups ``wsss_kit.<kind>`` (read with the
``entrypoints`` package, which parses ``entry_points.txt`` files and imports nothing). This module is
the only place that knows about that mechanism.

Rules:

* discovery never imports a plugin; the object is loaded on first use and cached;
* a plugin that fails to import is *broken*: :func:`list_plugins` reports it with the reason, the
  others keep working, and using it raises :class:`BrokenPluginError` naming the plugin, its
  distribution and version and the cause;
* two providers of the same kind and name make the bare name ambiguous
  (:class:`AmbiguousPluginError` names both distributions); ``"dist:name"`` selects one;
* an unknown name raises :class:`UnknownPluginError` listing what exists and the closest matches;
* a plugin object declares ``wsss_api_version = "MAJOR.MINOR"``; it must have the core's major
  version and a minor version no newer than the core's.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import re
import sys
import threading
import traceback
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
from .version import API_VERSION

KINDS: tuple[str, ...] = tuple(sorted(INTERFACES))
"""The plugin kinds, each read from the entry-point group ``wsss_kit.<kind>``."""

LOCAL_DIST = "local"
"""Distribution name reported for plugins registered in-process with :func:`register`."""

_KIND_ALIASES = {k[:-1]: k for k in KINDS} | {"loss": "losses"}
"""Singular spellings accepted for each kind (``cam``, ``loss``, ``dataset`` ...)."""

T = TypeVar("T")


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
    """``"unloaded"`` (not imported yet), ``"ok"`` or ``"broken"``."""
    error: str = ""
    """For a broken plugin, the cause (exception type and message)."""
    _entry_point: Any = field(default=None, repr=False)
    _obj: Any = field(default=None, repr=False)
    _traceback: str = field(default="", repr=False)

    @property
    def qualified_name(self) -> str:
        """``dist:name``, unique even when two distributions use the same name."""
        return f"{self.dist}:{self.name}"

    def describe(self) -> str:
        return f"{self.kind} plugin {self.name!r} from {self.dist} {self.version}"


class Registry:
    """Plugins of every kind, indexed from entry points plus in-process registrations.

    Most code uses the module-level functions, which share one default instance.
    """

    def __init__(self, path: Sequence[str] | None = None) -> None:
        self._path = list(path) if path is not None else None
        self._lock = threading.RLock()
        self._scanned: dict[str, list[PluginInfo]] = {}
        self._local: dict[str, dict[str, PluginInfo]] = {k: {} for k in KINDS}

    # ------------------------------------------------------------------ discovery
    def refresh(self) -> None:
        """Forget the entry-point index (after installing a plugin in a running process)."""
        with self._lock:
            self._scanned.clear()

    def _scan(self, kind: str) -> list[PluginInfo]:
        with self._lock:
            if kind not in self._scanned:
                found = []
                path = self._path if self._path is not None else sys.path
                for ep in entrypoints.get_group_all(group_of(kind), path=path):
                    dist = normalize_dist(ep.distro.name) if ep.distro else "unknown"
                    version = (ep.distro.version if ep.distro else None) or _installed_version(dist)
                    target = ep.module_name + (f":{ep.object_name}" if ep.object_name else "")
                    found.append(PluginInfo(kind, ep.name, dist, version, target, _entry_point=ep))
                self._scanned[kind] = found
            return self._scanned[kind]

    def infos(self, kind: str) -> list[PluginInfo]:
        """Every plugin of ``kind`` (entry points first, then in-process), sorted by name."""
        kind = check_kind(kind)
        items = list(self._scan(kind)) + list(self._local[kind].values())
        return sorted(items, key=lambda i: (i.name, i.dist))

    def list(self, kind: str | None = None, load: bool = False) -> list[PluginInfo]:
        """Plugins of one kind or of all kinds, sorted by kind then name.

        With ``load=True`` every plugin is imported so that broken ones show as broken.
        """
        kinds = KINDS if kind is None else (check_kind(kind),)
        out = [info for k in kinds for info in self.infos(k)]
        if load:
            for info in out:
                self._load(info, raise_errors=False)
        return out

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
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            providers = ", ".join(f"{m.dist} {m.version} ({m.target})" for m in matches)
            choices = " or ".join(repr(m.qualified_name) for m in matches)
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

    def get(self, kind: str, name: str) -> Any:
        """The plugin's object (class or factory), imported on first use."""
        return self._load(self.resolve(kind, name), raise_errors=True)

    def _load(self, info: PluginInfo, raise_errors: bool) -> Any:
        with self._lock:
            if info.status == "unloaded":
                try:
                    obj = info._entry_point.load()
                    check_api_version(obj, info)
                except PluginVersionError as exc:
                    info.status, info.error = "broken", str(exc)
                    info._traceback = ""
                except Exception as exc:  # noqa: BLE001 - any import failure makes it broken
                    info.status = "broken"
                    info.error = f"{type(exc).__name__}: {exc}"
                    info._traceback = traceback.format_exc()
                else:
                    info.status, info._obj = "ok", obj
            if info.status == "broken":
                if not raise_errors:
                    return None
                err_type = PluginVersionError if "interface version" in info.error else BrokenPluginError
                raise err_type(
                    f"{info.describe()} (entry point {info.target!r}) failed to load: {info.error}"
                    + (f"\n{info._traceback}" if info._traceback else "")
                )
            return info._obj

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
