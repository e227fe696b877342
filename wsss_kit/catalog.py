"""Named data that the core and the plugins declare: released checkpoints, CRF parameter sets.

A :class:`Catalog` holds one kind of named entry (e.g. :class:`~wsss_kit.weights.ReleasedCheckpoint`)
gathered from three places:

1. the method-neutral entries the core declares itself;
2. installed plugins, through an entry-point group (``wsss_kit.released``, ``wsss_kit.crf_params``):
   each entry point names a mapping ``{name: entry}``, or a function returning one, in the plugin.
   A value is an entry or an :class:`Alias` naming another entry (of any provider);
3. in-process registrations (:meth:`Catalog.register`), for notebooks, research code and tests;
   they take precedence over the other two.

Discovery follows :mod:`wsss_kit.registry`'s rules: the entry points are indexed without importing
anything, a provider is imported on the first lookup (through the registry's
:class:`~wsss_kit.plugin_import.ImportGuard`), and a provider that fails to import or declares a bad
entry is reported with its distribution and version while the others keep working. A distribution
disabled as a whole in ``WSSS_KIT_DISABLE_PLUGINS`` (``dist:*``) contributes nothing.

Identical data gets one name and aliases: ``Alias("default")`` resolves to the very object the name
``default`` holds, and listings show each entry once with its aliases.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import entrypoints

from .errors import WSSSError
from .plugin_import import FROM_ENV, ImportGuard
from .registry import DISABLE_ENV, _installed_version, did_you_mean, disable_rules, normalize_dist

__all__ = ["CORE_DIST", "Alias", "Catalog", "CatalogEntry", "CatalogView"]

T = TypeVar("T")

CORE_DIST = "wsss-kit"
"""Distribution reported for the entries the core declares."""

LOCAL_DIST = "local"
"""Distribution reported for entries registered in-process."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_MAX_ALIAS_HOPS = 8


@dataclass(frozen=True)
class Alias:
    """A catalog value that names another entry: ``{"psa": Alias("default")}``."""

    target: str


@dataclass(frozen=True)
class CatalogEntry(Generic[T]):
    """One entry of a listing: its name, value, provider and the aliases that resolve to it."""

    name: str
    value: T
    dist: str
    version: str
    aliases: tuple[str, ...] = ()

    @property
    def provider(self) -> str:
        """``"<distribution> <version>"``."""
        return f"{self.dist} {self.version}".rstrip()


@dataclass
class _Provider:
    dist: str
    version: str
    label: str
    """The entry point (``name = module:attr``), ``core`` or ``register()``."""
    items: dict[str, Any] | None = None
    error: str = ""
    entry_point: Any = None
    loading: bool = False

    def describe(self) -> str:
        return f"{self.dist} {self.version} ({self.label})".replace("  ", " ")


class Catalog(Generic[T]):
    """Named entries of type ``value_type`` from the core, plugins and in-process registrations.

    Args:
        what: the entries in words, for messages (``"released checkpoint"``).
        group: entry-point group plugins declare theirs in (``"wsss_kit.released"``).
        value_type: the class every entry is an instance of.
        core: the core's own entries (a mapping, or a function returning one, read on first use).
        error_type: exception raised for an unknown name, a conflict or a broken alias.
        path: folders to search for installed distributions (default ``sys.path``).
    """

    def __init__(self, what: str, group: str, value_type: type[T],
                 core: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
                 error_type: type[Exception] = WSSSError, path: list[str] | None = None,
                 import_timeout: float | None = FROM_ENV) -> None:
        self.what, self.group, self.value_type, self.error_type = what, group, value_type, error_type
        self._core_source = core
        self._path = path
        self._guard = ImportGuard(import_timeout)
        self._lock = threading.RLock()
        self._local: dict[str, Any] = {}
        self._providers: list[_Provider] | None = None
        self._table: dict[str, tuple[Any, _Provider]] | None = None
        self._conflicts: dict[str, list[_Provider]] = {}

    # ------------------------------------------------------------------ providers
    def _scan(self) -> list[_Provider]:
        """Core first, then one provider per entry point (not imported yet)."""
        core = _Provider(CORE_DIST, _installed_version(CORE_DIST), "core")
        core.items = self._checked(core, self._core_source)
        found = [core]
        rules = [r for r in disable_rules() if r.kind is None and r.name == "*" and r.dist is not None]
        for ep in entrypoints.get_group_all(self.group, path=self._path if self._path is not None else sys.path):
            dist = normalize_dist(ep.distro.name) if ep.distro else "unknown"
            version = (ep.distro.version if ep.distro else None) or _installed_version(dist)
            target = ep.module_name + (f":{ep.object_name}" if ep.object_name else "")
            provider = _Provider(dist, version, f"entry point {ep.name} = {target}", entry_point=ep)
            if any(r.dist == dist for r in rules):
                provider.items, provider.error = {}, f"disabled by {DISABLE_ENV}"
            found.append(provider)
        return found

    def _load(self, provider: _Provider) -> None:
        with self._lock:
            if provider.items is not None or provider.loading:  # loading: a lookup made while it imports
                return
            provider.loading = True
        items: dict[str, Any] = {}
        error = ""
        try:
            outcome = self._guard.load(f"{self.group}/{provider.dist}/{provider.label}", provider.entry_point,
                                       f"{self.what}s of {provider.describe()}")
            if outcome.error:
                error = outcome.error
            else:
                try:
                    items = self._checked(provider, outcome.obj)
                except WSSSError as exc:
                    error = str(exc)
        finally:
            with self._lock:
                provider.items, provider.error, provider.loading = items, error, False
                self._table = None  # a table built while this provider was loading lacks its entries

    def _checked(self, provider: _Provider, source: Any) -> dict[str, Any]:
        """``source`` (a mapping or a function returning one) as a dict of valid names and values."""
        try:
            items = source() if callable(source) and not isinstance(source, Mapping) else source
        except Exception as exc:  # a plugin's function: report, never propagate
            raise WSSSError(f"{provider.describe()}: calling it raised {type(exc).__name__}: {exc}") from None
        if not isinstance(items, Mapping):
            raise WSSSError(f"{provider.describe()} gave a {type(items).__name__}; expected a mapping "
                            f"{{name: {self.value_type.__name__} or Alias}}")
        out: dict[str, Any] = {}
        for name, value in items.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise WSSSError(f"{provider.describe()}: {self.what} name {name!r} is not a name "
                                f"(letters, digits, '_', '.', '-')")
            if not isinstance(value, (self.value_type, Alias)):
                raise WSSSError(f"{provider.describe()}: {self.what} {name!r} is a {type(value).__name__}; "
                                f"expected a {self.value_type.__name__} or an Alias")
            out[name] = value
        return out

    def _providers_loaded(self) -> list[_Provider]:
        with self._lock:
            if self._providers is None:
                self._providers = self._scan()
            providers = list(self._providers)
        # Imported without holding the lock: a plugin module that looks up another catalog entry
        # while it is imported (in the guard's thread) must not wait on this thread. The guard
        # shares one import between concurrent callers.
        for provider in providers:
            self._load(provider)
        return providers

    def _merged(self) -> dict[str, tuple[Any, _Provider]]:
        """Every name with its raw value (entry or Alias) and provider; conflicts set aside."""
        with self._lock:
            if self._table is not None:
                return self._table
        providers = self._providers_loaded()
        with self._lock:
            if self._table is not None:
                return self._table
            table: dict[str, tuple[Any, _Provider]] = {}
            conflicts: dict[str, list[_Provider]] = {}
            for provider in providers:
                for name, value in (provider.items or {}).items():
                    if name in table and table[name][0] != value:
                        conflicts.setdefault(name, [table[name][1]]).append(provider)
                    table.setdefault(name, (value, provider))
            local = _Provider(LOCAL_DIST, "", "register()")
            for name, value in self._local.items():
                table[name] = (value, local)
                conflicts.pop(name, None)
            self._conflicts = conflicts
            if not any(p.loading for p in providers):  # else: answer from what is loaded, keep nothing
                self._table = table
            return table

    # ------------------------------------------------------------------ lookup
    def get(self, name: str) -> T:
        """The entry called ``name`` (aliases followed: an alias gives the very object of its target).

        Raises:
            error_type: an unknown name (listing the valid names and who provides each, and the
                providers that failed to load), a name two distributions declare with different
                values (naming both), or an alias whose target does not exist.
        """
        return self._merged()[self.canonical(name)][0]

    def canonical(self, name: str) -> str:
        """The name of the entry ``name`` resolves to (itself unless it is an alias); raises as :meth:`get`."""
        table = self._merged()
        seen = [name]
        while True:
            if name in self._conflicts:
                who = " and ".join(p.describe() for p in self._conflicts[name])
                raise self.error_type(f"{self.what} {name!r} is declared with different values by {who}; "
                                      f"uninstall one, or register the one to use in-process")
            if name not in table:
                if len(seen) > 1:
                    raise self.error_type(f"{self.what} alias {seen[-2]!r} (from {table[seen[-2]][1].describe()}) "
                                          f"names {name!r}, which does not exist; {self.available()}")
                raise self.error_type(self.unknown_message(name))
            value = table[name][0]
            if not isinstance(value, Alias):
                return name
            if len(seen) > _MAX_ALIAS_HOPS or value.target in seen:
                raise self.error_type(f"{self.what} aliases form a loop: {' -> '.join(seen + [value.target])}")
            name = value.target
            seen.append(name)

    def provider_of(self, name: str) -> str:
        """``"<distribution> <version>"`` of the provider that declares ``name``."""
        table = self._merged()
        if name not in table:
            raise self.error_type(self.unknown_message(name))
        p = table[name][1]
        return f"{p.dist} {p.version}".rstrip()

    def names(self) -> list[str]:
        """Every valid name (entries and aliases), sorted."""
        return sorted(self._merged())

    def __contains__(self, name: object) -> bool:
        return name in self._merged()

    def entries(self) -> list[CatalogEntry[T]]:
        """One row per entry (aliases folded into their target's row), sorted by name."""
        table = self._merged()
        aliases: dict[str, list[str]] = {}
        for name, (value, _) in table.items():
            if isinstance(value, Alias):
                try:
                    aliases.setdefault(self.canonical(name), []).append(name)
                except self.error_type:  # a broken alias: get() names the problem on use
                    continue
        rows = []
        for name, (value, p) in sorted(table.items()):
            if not isinstance(value, Alias):
                rows.append(CatalogEntry(name, value, p.dist, p.version, tuple(sorted(aliases.get(name, ())))))
        return rows

    def broken(self) -> list[str]:
        """Providers that failed to load, each as ``"dist version (entry point ...): cause"``."""
        return [f"{p.describe()}: {p.error}" for p in self._providers_loaded() if p.error]

    def available(self) -> str:
        """``"available: a (wsss-kit), b = alias of a (wsss-kit-x), ..."`` plus the broken providers."""
        table = self._merged()
        parts = []
        for name, (value, p) in sorted(table.items()):
            alias = f" = alias of {value.target}" if isinstance(value, Alias) else ""
            parts.append(f"{name}{alias} ({p.dist})")
        text = "available: " + (", ".join(parts) or "none")
        broken = self.broken()
        if broken:
            text += "; not loaded: " + "; ".join(broken)
        return text

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.what} {name!r}; {self.available()}{did_you_mean(name, self._merged())}"

    # ------------------------------------------------------------------ in-process
    def register(self, name: str, value: T | Alias, *, override: bool = False) -> None:
        """Declare ``name`` in this process (it takes precedence over the core's and the plugins').

        Raises:
            error_type: ``name`` is not a valid name or ``value`` has the wrong type, or ``name``
                exists already (naming its provider) and ``override`` is false.
        """
        try:
            self._checked(_Provider(LOCAL_DIST, "", "register()"), {name: value})
        except WSSSError as exc:
            raise self.error_type(str(exc)) from None
        with self._lock:
            if not override and name in self._merged():
                raise self.error_type(f"{self.what} {name!r} exists already (from {self.provider_of(name)}); "
                                      f"pass override=True to replace it in this process")
            self._local[name] = value
            self._table = None

    def unregister(self, name: str) -> None:
        """Forget an in-process registration (entries of the core and of plugins cannot be removed)."""
        with self._lock:
            if self._local.pop(name, None) is None:
                raise self.error_type(f"{self.what} {name!r} was not registered in this process")
            self._table = None

    def declared_value(self, name: str) -> Any:
        """What the core or a plugin declares for ``name`` (an entry or an Alias), ignoring
        in-process registrations; ``None`` when none does."""
        for provider in self._providers_loaded():
            if name in (provider.items or {}):
                return provider.items[name]  # type: ignore[index]
        return None

    def refresh(self) -> None:
        """Forget the entry-point index (after installing a plugin in a running process)."""
        with self._lock:
            self._providers, self._table = None, None


class CatalogView(MutableMapping[str, T]):
    """A dict-like view of a :class:`Catalog`: names (aliases included) to resolved entries.

    Reading works as with a dict (``view[name]``, ``in``, ``items()``; an unknown name raises
    ``KeyError`` with the catalog's message). Writing is in-process registration: ``view[name] = entry``
    registers (replacing), and setting back the value the core or a plugin declares, or ``del``,
    drops the registration; so ``monkeypatch.setitem`` works on it.
    """

    def __init__(self, catalog: Catalog[T]) -> None:
        self.catalog = catalog

    def __getitem__(self, name: str) -> T:
        if name not in self.catalog:
            raise KeyError(self.catalog.unknown_message(name))
        return self.catalog.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.catalog.names())

    def __len__(self) -> int:
        return len(self.catalog.names())

    def __contains__(self, name: object) -> bool:
        return name in self.catalog

    def __setitem__(self, name: str, value: T) -> None:
        if self.catalog.declared_value(name) == value:
            try:
                self.catalog.unregister(name)
            except self.catalog.error_type:
                pass
            return
        self.catalog.register(name, value, override=True)

    def __delitem__(self, name: str) -> None:
        try:
            self.catalog.unregister(name)
        except self.catalog.error_type as exc:
            raise KeyError(str(exc)) from None

    def __repr__(self) -> str:
        return f"<{self.catalog.what}s: {', '.join(self.catalog.names())}>"
