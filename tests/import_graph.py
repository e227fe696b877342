"""The import graph of a package, read from its source with `ast` (nothing is imported).

Every `import`/`from ... import` statement counts, wherever it stands: at module level, inside a
function (a lazy import), under `if TYPE_CHECKING:` or in a `try:`. A lazy import still ties two
modules together; a cycle through one is a cycle a newcomer has to untangle.

Edges go from a module to the modules of the SAME top-level package that it imports:
`from pkg.a import b` is an edge to `pkg.a.b` when that is a module, else to `pkg.a` (a name
defined there). A package's `__init__` is the module named by the package itself.

Run as a script to print the cycles of the repository's packages:
`python tests/import_graph.py` (exit status 1 when there is one).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Import:
    """One imported name: `module` imports `target` (a dotted module path, absolute), and, for
    `from target import name`, the `name` taken from it (None for `import target`)."""

    module: str
    target: str
    name: str | None
    line: int


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the package whose directory is `root`
    (its name is `root.name`; `__init__.py` files name their package)."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute module path of a relative import `from <level dots><target> import ...`
    written in `module`."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path) -> list[Import]:
    """Every import statement of one file, at any depth (functions, classes, `if`, `try`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node.level, node.module)
            found += [Import(module, target, alias.name, node.lineno) for alias in node.names]
        elif _is_import_module_call(node):
            # importlib.import_module("x.y") / import_module(".y", __package__): an import too.
            name = node.args[0].value
            level = len(name) - len(name.lstrip("."))
            found.append(Import(module, _absolute(module, is_package, level, name[level:] or None), None, node.lineno))
    return found


def _is_import_module_call(node: ast.AST) -> bool:
    """A call of `importlib.import_module` (or a bare `import_module`) with a literal name."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = node.args[0]
    return called == "import_module" and isinstance(first, ast.Constant) and isinstance(first.value, str)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (see the module docstring)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        for imp in imports_of(module, path):
            candidates = [f"{imp.target}.{imp.name}"] if imp.name else []
            candidates.append(imp.target)
            target = next((c for c in candidates if c in modules), None)
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm,
    iterative), each sorted; a module importing itself is not counted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def package_roots(repo: Path = REPO) -> list[Path]:
    """The core package and every first-party plugin package (`plugins/*/wsss_*`)."""
    return [repo / "wsss_kit"] + sorted(p for p in (repo / "plugins").glob("*/wsss_*") if p.is_dir())


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def forbidden_plugin_imports(root: Path) -> list[str]:
    """What a plugin package must not import, one line each: `wsss_kit.pipeline` (the
    orchestrator; plugins are what it runs), a private name (`_x`) of a sibling module, and a
    private name or module of another package (the core, another plugin)."""
    modules = module_names(root)
    problems: list[str] = []
    for module, path in modules.items():
        for imp in imports_of(module, path):
            where = f"{path.relative_to(root.parent)}:{imp.line}"
            if imp.target == "wsss_kit.pipeline" or imp.target.startswith("wsss_kit.pipeline."):
                problems.append(f"{where} imports {imp.target} (plugins must not use the pipeline)")
            top = imp.target.split(".")[0]
            if top != root.name and top.startswith("wsss_") and (
                any(_private(part) for part in imp.target.split(".")) or (imp.name is not None and _private(imp.name))
            ):
                what = imp.target + (f".{imp.name}" if imp.name else "")
                problems.append(f"{where} imports {what} (a private name of another package)")
            if (
                imp.name is not None
                and _private(imp.name)
                and imp.target in modules
                and imp.target != module
                and f"{imp.target}.{imp.name}" not in modules
            ):
                problems.append(f"{where} imports private {imp.name} from {imp.target}")
    return problems


def main() -> int:
    status = 0
    for root in package_roots():
        for component in cycles(import_graph(root)):
            print(f"cycle in {root.name}: " + " -> ".join(component))
            status = 1
        if root.name != "wsss_kit":
            for line in forbidden_plugin_imports(root):
                print(line)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
