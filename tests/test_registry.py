"""Registry rules, exercised with real entry-point metadata (dist-info folders on a search path)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

import wsss_kit
from wsss_kit.errors import (
    AmbiguousPluginError,
    BrokenPluginError,
    PluginError,
    PluginVersionError,
    UnknownPluginError,
)
from wsss_kit.registry import Registry

GOOD_MODULE = """
import torch
import wsss_kit

class {cls}(wsss_kit.Refiner):
    wsss_api_version = {api!r}

    def __init__(self, strength: float = 1.0):
        self.strength = strength

    def refine(self, images, cams, labels):
        bg = torch.full_like(cams[:, :1], 0.5)
        return torch.cat([bg, cams * self.strength], 1).softmax(1)
"""


def make_dist(root: Path, dist: str, version: str, entries: dict[str, dict[str, str]],
              modules: dict[str, str]) -> None:
    """Write an installed-distribution layout: ``<dist>-<version>.dist-info`` plus modules."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, eps in entries.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for mod, code in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(code))


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("tp_")]:
        del sys.modules[name]


def test_discovery_does_not_import_and_loads_lazily(site):
    make_dist(site, "tp-alpha", "1.2.3", {"wsss_kit.refiners": {"alpha": "tp_alpha:Alpha"}},
              {"tp_alpha": GOOD_MODULE.format(cls="Alpha", api="1.0")})
    reg = Registry(path=[str(site)])
    infos = reg.list("refiners")
    assert [(i.name, i.dist, i.version, i.status) for i in infos] == [("alpha", "tp-alpha", "1.2.3", "unloaded")]
    assert "tp_alpha" not in sys.modules
    obj = reg.create("refiners", "alpha", strength=2.0)
    assert "tp_alpha" in sys.modules
    assert isinstance(obj, wsss_kit.Refiner) and obj.strength == 2.0
    assert reg.list("refiners")[0].status == "ok"


def test_listing_is_sorted_by_kind_then_name(site):
    make_dist(site, "tp-sorted", "0.1", {
        "wsss_kit.refiners": {"zeta": "tp_sorted:Z", "beta": "tp_sorted:B"},
        "wsss_kit.cams": {"mid": "tp_sorted:M"},
    }, {"tp_sorted": ""})
    reg = Registry(path=[str(site)])
    assert [(i.kind, i.name) for i in reg.list()] == [("cams", "mid"), ("refiners", "beta"), ("refiners", "zeta")]


def test_broken_plugin_is_listed_and_never_breaks_the_others(site):
    make_dist(site, "tp-good", "1.0", {"wsss_kit.refiners": {"good": "tp_good:Good"}},
              {"tp_good": GOOD_MODULE.format(cls="Good", api="1.0")})
    make_dist(site, "tp-broken", "0.9", {"wsss_kit.refiners": {"broken": "tp_broken:Thing"}},
              {"tp_broken": "import a_module_that_does_not_exist_anywhere\n"})
    reg = Registry(path=[str(site)])
    listed = {i.name: i for i in reg.list("refiners", load=True)}
    assert listed["broken"].status == "broken"
    assert "a_module_that_does_not_exist_anywhere" in listed["broken"].error
    assert listed["good"].status == "ok"
    assert isinstance(reg.create("refiners", "good"), wsss_kit.Refiner)
    with pytest.raises(BrokenPluginError) as err:
        reg.create("refiners", "broken")
    msg = str(err.value)
    for part in ("'broken'", "tp-broken", "0.9", "ModuleNotFoundError", "a_module_that_does_not_exist_anywhere"):
        assert part in msg


def test_duplicate_names_name_both_distributions_and_dist_prefix_disambiguates(site):
    make_dist(site, "tp-one", "1.0", {"wsss_kit.refiners": {"same": "tp_one:One"}},
              {"tp_one": GOOD_MODULE.format(cls="One", api="1.0")})
    make_dist(site, "tp-two", "2.0", {"wsss_kit.refiners": {"same": "tp_two:Two"}},
              {"tp_two": GOOD_MODULE.format(cls="Two", api="1.0")})
    reg = Registry(path=[str(site)])
    with pytest.raises(AmbiguousPluginError) as err:
        reg.create("refiners", "same")
    assert "tp-one" in str(err.value) and "tp-two" in str(err.value)
    assert "'tp-two:same'" in str(err.value)
    assert type(reg.create("refiners", "tp-two:same")).__name__ == "Two"
    assert type(reg.create("refiners", "tp_one:same")).__name__ == "One"  # either spelling of the dist
    with pytest.raises(UnknownPluginError, match="provided by: tp-one, tp-two"):
        reg.create("refiners", "tp-three:same")


def test_unknown_name_lists_available_and_closest(site):
    make_dist(site, "tp-near", "1.0", {"wsss_kit.refiners": {"weakclip": "tp_near:W", "dense_crf": "tp_near:D"}},
              {"tp_near": ""})
    reg = Registry(path=[str(site)])
    with pytest.raises(UnknownPluginError) as err:
        reg.resolve("refiners", "weakclp")
    msg = str(err.value)
    assert "available: dense_crf, weakclip" in msg
    assert "did you mean 'weakclip'" in msg
    with pytest.raises(UnknownPluginError, match="valid kinds: cams, datasets"):
        reg.resolve("refinerz", "x")


@pytest.mark.parametrize("declared, fragment", [
    ("2.0", "written for interface version 2.0"),
    ("1.99", "needs a newer wsss-kit"),
    (None, "declares no interface version"),
    ("one", "expected 'MAJOR.MINOR'"),
])
def test_interface_version_mismatch_is_a_clear_error(site, declared, fragment):
    api_line = "" if declared is None else f"wsss_api_version = {declared!r}"
    make_dist(site, "tp-old", "3.1", {"wsss_kit.refiners": {"old": "tp_old:Old"}}, {"tp_old": f"""
        import wsss_kit
        class Old(wsss_kit.Refiner):
            {api_line}
            def refine(self, images, cams, labels):
                return cams
        """})
    reg = Registry(path=[str(site)])
    with pytest.raises(PluginVersionError) as err:
        reg.create("refiners", "old")
    assert fragment in str(err.value) and "tp-old" in str(err.value)
    assert reg.list("refiners")[0].status == "broken"


def test_wrong_keyword_lists_valid_ones(site):
    make_dist(site, "tp-kw", "1.0", {"wsss_kit.refiners": {"kw": "tp_kw:Kw"}},
              {"tp_kw": GOOD_MODULE.format(cls="Kw", api="1.0")})
    reg = Registry(path=[str(site)])
    with pytest.raises(TypeError, match=r"unexpected keyword 'strenght'; valid keywords: strength.*did you mean 'strength'"):
        reg.create("refiners", "kw", strenght=3)


def test_object_must_implement_the_kind_interface(site):
    make_dist(site, "tp-wrong", "1.0", {"wsss_kit.cams": {"notacam": "tp_wrong:Thing"}},
              {"tp_wrong": GOOD_MODULE.format(cls="Thing", api="1.0")})
    reg = Registry(path=[str(site)])
    with pytest.raises(PluginError, match="does not implement wsss_kit.CAMGenerator"):
        reg.create("cams", "notacam")


def test_in_process_register_decorator_and_override():
    @wsss_kit.register("refiners", "test_local_refiner")
    class Local(wsss_kit.Refiner):
        def refine(self, images, cams, labels):
            return cams

    try:
        info = [i for i in wsss_kit.list_plugins("refiners") if i.name == "test_local_refiner"][0]
        assert info.dist == "local" and info.status == "ok"
        assert isinstance(wsss_kit.create("refiners", "test_local_refiner"), Local)
        assert isinstance(wsss_kit.create("refiner", "local:test_local_refiner"), Local)  # singular kind
        with pytest.raises(PluginError, match="already registered"):
            wsss_kit.register("refiners", "test_local_refiner", Local)
        wsss_kit.register("refiners", "test_local_refiner", Local, override=True)
    finally:
        wsss_kit.registry.default_registry().unregister("refiners", "test_local_refiner")
    with pytest.raises(UnknownPluginError):
        wsss_kit.create("refiners", "test_local_refiner")


def test_register_checks_declared_version():
    class Future(wsss_kit.Refiner):
        wsss_api_version = "9.0"

        def refine(self, images, cams, labels):
            return cams

    with pytest.raises(PluginVersionError, match="interface version 9.0"):
        wsss_kit.register("refiners", "test_future", Future)


def test_builtins_register_through_entry_points():
    infos = {(i.kind, i.name): i for i in wsss_kit.list_plugins()}
    for key in [("datasets", "synthetic"), ("datasets", "voc2012"), ("datasets", "coco2014"),
                ("datasets", "folder"), ("refiners", "dense_crf"), ("prompts", "template"),
                ("prompts", "coop"), ("prompts", "defo"), ("prompts", "target_opt")]:
        assert key in infos, key
        assert infos[key].dist == "wsss-kit"
        assert infos[key].version == wsss_kit.__version__


def test_seeds_from_cams_hand_computed():
    cams = torch.tensor([[[[0.9, 0.1], [0.2, 0.0]], [[0.3, 0.5], [0.1, 0.0]]]])
    seeds = wsss_kit.cams_to_seeds(cams, 0.25)
    assert seeds.tolist() == [[[1, 2], [0, 0]]]
