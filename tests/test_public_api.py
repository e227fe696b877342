"""The public API is deliberate: every ``__all__`` names things that exist, the packages declare one,
and the plugins use only what the core lists in its ``__all__`` and documents in docs/plugins.md.

The plugins' imports are read from their source with ``ast`` (nothing of the plugins is imported).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import wsss_kit

REPO = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = sorted(p for p in (REPO / "plugins").glob("*/wsss_*") if (p / "__init__.py").is_file())


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> list[str]:
    return [module_name(p, REPO) for p in sorted((REPO / "wsss_kit").rglob("*.py"))]


def plugin_modules() -> list[str]:
    return [module_name(p, pkg.parent) for pkg in PLUGIN_PACKAGES for p in sorted(pkg.rglob("*.py"))]


def core_imports(tree: ast.AST) -> list[tuple[str, str | None, int]]:
    """``(module, name, line)`` for each ``from wsss_kit... import name`` / ``import wsss_kit...`` (name
    ``None``) and for each ``wsss_kit.<attr>`` attribute read after ``import wsss_kit`` (module ``wsss_kit``)."""
    out: list[tuple[str, str | None, int]] = []
    bare = False
    for node in ast.walk(tree):
        if (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                and node.module.split(".")[0] == "wsss_kit"):
            out += [(node.module, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "wsss_kit":
                    out.append((a.name, None, node.lineno))
                    bare = bare or (a.name == "wsss_kit" and a.asname is None)
    if bare:
        out += [("wsss_kit", node.attr, node.lineno) for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "wsss_kit"]
    return out


def plugin_core_imports() -> dict[tuple[str, str], list[str]]:
    """``(core module, name) -> ["plugins/x/...py:line", ...]`` over the plugins' package code (not their tests)."""
    uses: dict[tuple[str, str], list[str]] = {}
    for pkg in PLUGIN_PACKAGES:
        for path in sorted(pkg.rglob("*.py")):
            for module, name, line in core_imports(ast.parse(path.read_text(encoding="utf-8"))):
                if name is not None:
                    uses.setdefault((module, name), []).append(f"{path.relative_to(REPO)}:{line}")
    return uses


def is_submodule(module: str, name: str) -> bool:
    return (REPO / Path(*module.split("."), name)).with_suffix(".py").is_file() or \
        (REPO / Path(*module.split("."), name, "__init__.py")).is_file()


@pytest.mark.parametrize("module", core_modules() + plugin_modules())
def test_every_name_in_all_exists(module: str) -> None:
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:
        return
    assert len(names) == len(set(names)), f"{module}.__all__ repeats {sorted(n for n in names if names.count(n) > 1)}"
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ names what the module does not define: {missing}"


def test_every_package_declares_its_public_names() -> None:
    packages = [m for m in core_modules() if (REPO / Path(*m.split("."), "__init__.py")).is_file()]
    packages += [pkg.name for pkg in PLUGIN_PACKAGES]
    without = [m for m in packages if not hasattr(importlib.import_module(m), "__all__") and m != "wsss_kit.cli"]
    assert not without, f"packages without __all__: {without}"


def test_engine_exports_only_its_public_surface() -> None:
    import wsss_kit.engine as engine

    assert len(engine.__all__) <= 20
    assert {"train", "TrainConfig", "load_training_state", "save_training_state"} <= set(engine.__all__)
    assert "load_checkpoint" not in engine.__all__ and "EpochSampler" not in engine.__all__


def test_the_scan_sees_every_import_form() -> None:
    tree = ast.parse("import wsss_kit\nfrom wsss_kit.crf import dense_crf\nimport wsss_kit.errors\n"
                     "x = wsss_kit.create('cams', 'a')\n")
    expected = [("wsss_kit", None, 1), ("wsss_kit.crf", "dense_crf", 2), ("wsss_kit.errors", None, 3),
                ("wsss_kit", "create", 4)]
    assert sorted(core_imports(tree), key=str) == sorted(expected, key=str)


def test_plugins_import_only_names_the_core_lists_in_all() -> None:
    uses = plugin_core_imports()
    assert ("wsss_kit.weights", "load_checkpoint") in uses  # the scan works on the real tree
    bad = []
    for (module, name), where in sorted(uses.items()):
        public = getattr(importlib.import_module(module), "__all__", None)
        if is_submodule(module, name) or (public is not None and name in public):
            continue
        bad.append(f"{module}.{name} (not in {module}.__all__), used at {', '.join(where)}")
    assert not bad, "plugins use core names that are not public:\n" + "\n".join(bad)


def plugin_section() -> str:
    text = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    match = re.search(r"^## What a plugin may import from the core\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "docs/plugins.md has no section '## What a plugin may import from the core'"
    return match.group(1)


def test_docs_list_every_core_name_the_plugins_use() -> None:
    section = plugin_section()
    undocumented = sorted(f"{m}.{n}" for (m, n) in plugin_core_imports()
                          if not is_submodule(m, n) and f"`{m}.{n}`" not in section)
    assert not undocumented, "docs/plugins.md ('What a plugin may import from the core') does not list: " + \
        ", ".join(undocumented)


def test_every_name_the_docs_offer_is_public() -> None:
    offered = re.findall(r"^- `(wsss_kit(?:\.\w+)*)\.(\w+)`", plugin_section(), re.M)
    assert len(offered) > 30
    bad = []
    for module, name in offered:
        mod = importlib.import_module(module)
        if name not in getattr(mod, "__all__", ()) and not is_submodule(module, name):
            bad.append(f"{module}.{name}")
    assert not bad, f"docs/plugins.md offers names that are not in their module's __all__: {bad}"
    assert wsss_kit.__all__


def test_every_plugin_object_is_importable_from_its_package() -> None:
    """What an entry point names (a class or factory) is in its package's ``__all__``; the data groups
    (``wsss_kit.released``, ``wsss_kit.crf_params``) name mappings, which stay in their modules."""
    import tomllib

    missing = []
    for pyproject in sorted((REPO / "plugins").glob("*/pyproject.toml")):
        groups = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"].get("entry-points", {})
        for group, entries in groups.items():
            if not group.startswith("wsss_kit.") or group in ("wsss_kit.released", "wsss_kit.crf_params"):
                continue
            for name, target in entries.items():
                module, attr = target.split(":")
                package = importlib.import_module(module.split(".")[0])
                if attr not in package.__all__:
                    missing.append(f"{group} {name} = {target} ({package.__name__}.__all__)")
    assert not missing, "entry-point objects missing from their package's __all__:\n" + "\n".join(missing)
