"""No import cycles in wsss_kit/ or in any first-party plugin package (lazy imports included);
no plugin imports the pipeline, a sibling module's private names or another package's
private names (tests/import_graph.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import cycles, forbidden_plugin_imports, import_graph, package_roots


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / next(iter(files)).split("/")[0]


@pytest.mark.parametrize("root", package_roots(), ids=lambda p: p.name)
def test_no_import_cycles(root: Path) -> None:
    assert cycles(import_graph(root)) == []


@pytest.mark.parametrize("root", [p for p in package_roots() if p.name != "wsss_kit"], ids=lambda p: p.name)
def test_plugins_import_no_pipeline_and_no_private_sibling_names(root: Path) -> None:
    assert forbidden_plugin_imports(root) == []


def test_the_packages_are_found() -> None:
    names = {p.name for p in package_roots()}
    assert {"wsss_kit", "wsss_cams", "wsss_pole", "wsss_weakclip", "wsss_deeplab", "wsss_affinity"} <= names


def test_a_lazy_cycle_is_found(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .b import f\n",
            # the way back is a function-level import: still a cycle
            "pkg/b.py": "def f():\n    from pkg.a import g\n    return g\n",
            "pkg/c.py": "import pkg.a\n",
        },
    )
    assert import_graph(root)["pkg.c"] == {"pkg.a"}
    assert cycles(import_graph(root)) == [["pkg.a", "pkg.b"]]


def test_cycles_through_a_package_init_and_import_module_are_found(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from .x import X\n",
            "pkg/sub/x.py": "X = 1\ndef f():\n    from ..y import Y\n",
            # `from ..sub import X` runs pkg/sub/__init__.py, which imports x
            "pkg/y.py": "from .sub import X\nY = 2\n",
            "pkg/p.py": "import importlib\nq = importlib.import_module('.q', __package__)\n",
            "pkg/q.py": "from . import p\n",
        },
    )
    assert cycles(import_graph(root)) == [["pkg.p", "pkg.q"], ["pkg.sub", "pkg.sub.x", "pkg.y"]]


def test_no_cycle_in_a_layered_package(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import f\n",
            "pkg/a.py": "from .b import g\nimport os\nfrom typing import Any\n",
            "pkg/b.py": "def g():\n    from pkg import c\n",
            "pkg/c.py": "",
        },
    )
    assert import_graph(root)["pkg.b"] == {"pkg.c"}
    assert cycles(import_graph(root)) == []


def test_pipeline_and_private_sibling_imports_are_reported(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "plug/__init__.py": "",
            "plug/a.py": "def _helper():\n    pass\n__version__ = 1\n",
            "plug/b.py": (
                "from .a import _helper, __version__\n"
                "def f():\n    from wsss_kit.pipeline.artifacts import load_cams\n"
            ),
            "plug/c.py": "import wsss_kit.pipeline\nfrom wsss_kit.data import load_cams\n",
            "plug/d.py": ("from wsss_kit.weights.loading import _is_torchscript, load_state_dict\n"
                          "import wsss_other._impl\nfrom wsss_other import helper\n"),
        },
    )
    assert forbidden_plugin_imports(root) == [
        "plug/b.py:1 imports private _helper from plug.a",
        "plug/b.py:3 imports wsss_kit.pipeline.artifacts (plugins must not use the pipeline)",
        "plug/c.py:1 imports wsss_kit.pipeline (plugins must not use the pipeline)",
        "plug/d.py:1 imports wsss_kit.weights.loading._is_torchscript (a private name of another package)",
        "plug/d.py:2 imports wsss_other._impl (a private name of another package)",
    ]
