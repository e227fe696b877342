"""Importing the user's plugin modules named on the command line (``--plugin``) or in ``WSSS_KIT_PLUGINS``.

A plugin module is plain Python that registers its objects in-process when imported::

    # my_plugins.py
    import wsss_kit

    @wsss_kit.register("refiners", "my_refiner")
    class MyRefiner(wsss_kit.Refiner): ...

``wsss run CONFIG --plugin my_plugins`` (or ``WSSS_KIT_PLUGINS=my_plugins``) imports it before the
config is built, so ``refiner: {type: refiners/my_refiner}`` resolves without packaging anything.
Modules are found on ``sys.path``, with the current directory searched last (after the installed
packages, so a local file never shadows one).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import PluginError
from .plugin_import import describe_exception

__all__ = ["PLUGINS_ENV", "import_plugin_modules", "plugin_module_names"]

PLUGINS_ENV = "WSSS_KIT_PLUGINS"
"""Environment variable: comma-separated modules to import before a command builds its config."""


def plugin_module_names(modules: Sequence[str] = (), env: str | None = None) -> list[tuple[str, str]]:
    """``(module, where it was named)`` for each module of ``WSSS_KIT_PLUGINS`` (``env`` if given),
    then of ``modules`` (``--plugin``), in order and without repeats."""
    value = os.environ.get(PLUGINS_ENV, "") if env is None else env
    named = [(m.strip(), f"{PLUGINS_ENV}={value!r}") for m in value.split(",") if m.strip()]
    named += [(m.strip(), f"--plugin {m!r}") for m in modules]
    seen: set[str] = set()
    out = []
    for module, where in named:
        if module not in seen:
            seen.add(module)
            out.append((module, where))
    return out


def _check_name(module: str, where: str) -> None:
    # "x.py" is a file name (a submodule called "py" is not worth the confusion)
    if module and all(part.isidentifier() for part in module.split(".")) and not module.endswith(".py"):
        return
    hint = "expected a module name such as 'my_plugins' or 'mypkg.plugins'"
    path = Path(module)
    if path.suffix == ".py":
        hint = (f"expected a module name, not a file: use {path.stem!r} with the folder {str(path.parent)!r} "
                f"on PYTHONPATH (or run from that folder)")
    raise PluginError(f"{where}: {module!r} is not a Python module name; {hint}")


def import_plugin_modules(modules: Sequence[str] = (), env: str | None = None) -> list[str]:
    """Import the modules of ``WSSS_KIT_PLUGINS`` and ``modules``, which register plugins with
    :func:`wsss_kit.register`; return their names. Each module is checked before any is imported.

    Raises:
        PluginError: a name is not a module name, a module is not found (the message lists where
            Python looked), or importing it raised (the message names the module and the error).
    """
    named = plugin_module_names(modules, env)
    for module, where in named:
        _check_name(module, where)
    if named and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # `wsss` as a console script does not search the current folder
    for module, where in named:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module.startswith(exc.name) and module[len(exc.name):][:1] in ("", "."):
                raise PluginError(
                    f"{where}: plugin module {module!r} was not found (searched the installed packages, "
                    f"PYTHONPATH and the current folder {os.getcwd()}); check the name, or add its folder to "
                    f"PYTHONPATH") from None
            raise PluginError(f"{where}: importing plugin module {module!r} failed: "
                              f"{describe_exception(exc)}") from exc
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: reported with the module's name
            raise PluginError(f"{where}: importing plugin module {module!r} failed: "
                              f"{describe_exception(exc)}") from exc
    return [module for module, _ in named]
