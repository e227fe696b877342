"""The example third-party distribution is installed with pip and discovered like any other plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "third_party_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--no-cache-dir", "--target", str(target), str(EXAMPLE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert list(target.glob("wsss_example_plugin-0.2.0.dist-info"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    return env


def _run(args, env):
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_wsss_plugins_lists_the_installed_plugin(installed):
    proc = _run([sys.executable, "-m", "wsss_kit.cli.main", "plugins", "--kind", "cams"], installed)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if "tiny_cam" in l)
    assert "wsss-example-plugin 0.2.0" in line
    assert "wsss_example_plugin.tiny_cam:TinyCAM" in line
    assert "broken" not in line


def test_create_builds_it_and_it_works(installed):
    code = (
        "import torch, wsss_kit\n"
        "m = wsss_kit.create('cams', 'tiny_cam', num_classes=3, width=8)\n"
        "x = torch.rand(2, 3, 32, 32); y = torch.tensor([[1., 0, 1], [0, 1, 0]])\n"
        "out = m(x, y); out['loss'].backward()\n"
        "c = m.cams(x, y, scales=(1.0, 0.5), flip=True)\n"
        "assert c.shape == (2, 3, 32, 32), c.shape\n"
        "assert float(c.min()) >= 0 and float(c.max()) <= 1\n"
        "assert float(c[0, 1].abs().sum()) == 0 and float(c[1, 0].abs().sum()) == 0\n"
        "print(type(m).__module__)\n"
    )
    proc = _run([sys.executable, "-c", code], installed)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wsss_example_plugin.tiny_cam"


def test_without_the_install_it_is_unknown_with_a_helpful_message():
    code = "import wsss_kit\nwsss_kit.create('cams', 'tiny_cam', num_classes=3)\n"
    proc = _run([sys.executable, "-c", code], dict(os.environ))
    assert proc.returncode != 0
    assert "unknown cams plugin 'tiny_cam'" in proc.stderr
    assert "wsss plugins" in proc.stderr


def test_its_released_checkpoint_and_crf_sets_are_found_with_its_name(installed):
    code = (
        "from wsss_kit.crf import get_params, list_crf_params\n"
        "from wsss_kit.crf.params import CRF_PARAMS_CATALOG\n"
        "assert get_params('tiny_cam_sharp').as_tuple() == (2.0, 3.0, 40.0, 8.0, 6.0, 5)\n"
        "assert get_params('tiny_cam_smooth') is get_params('default')\n"
        "rows = {r.name: r for r in list_crf_params()}\n"
        "assert 'tiny_cam_smooth' in rows['default'].aliases, rows['default']\n"
        "print(CRF_PARAMS_CATALOG.provider_of('tiny_cam_sharp'))\n"
    )
    proc = _run([sys.executable, "-c", code], installed)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wsss-example-plugin 0.2.0"
    proc = _run([sys.executable, "-m", "wsss_kit.cli.main", "weights", "--list", "--pattern", "tiny_*"], installed)
    assert proc.returncode == 0, proc.stderr
    assert "tiny_cam_demo" in proc.stdout and "from:   wsss-example-plugin 0.2.0" in proc.stdout
    assert "1 released checkpoints" in proc.stdout
