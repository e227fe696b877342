"""Registry rules, exercised with real entry-point metadata (dist-info folders on a search path)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import types
import warnings
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
from wsss_kit.registry import DisabledPluginError, PluginNameClashWarning, Registry

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
        (root / f"{mod}.py").parent.mkdir(parents=True, exist_ok=True)
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


# --------------------------------------------------------------------------- protected import
EXITING = "import sys\nsys.exit(3)\n"


@pytest.mark.parametrize("import_timeout", [5.0, None], ids=["in-a-thread", "no-limit"])
def test_plugin_calling_sys_exit_or_raising_a_base_exception_is_broken_not_fatal(site, import_timeout):
    make_dist(site, "tp-exit", "0.3", {"wsss_kit.refiners": {"exits": "tp_exit:Thing", "boom": "tp_boom:Thing",
                                                             "good": "tp_good2:Good"}},
              {"tp_exit": EXITING, "tp_boom": "class Boom(BaseException):\n    pass\nraise Boom('at import')\n",
               "tp_good2": GOOD_MODULE.format(cls="Good", api="1.0")})
    reg = Registry(path=[str(site)], import_timeout=import_timeout)
    listed = {i.name: i for i in reg.list("refiners", load=True)}
    assert listed["good"].status == "ok"
    assert listed["exits"].status == "broken" and "sys.exit(3)" in listed["exits"].error
    assert listed["boom"].status == "broken" and listed["boom"].error == "Boom: at import"
    with pytest.raises(BrokenPluginError) as err:
        reg.create("refiners", "exits")
    for part in ("'exits'", "tp-exit", "0.3", "SystemExit", "sys.exit(3)"):
        assert part in str(err.value)


@pytest.mark.parametrize("import_timeout", [5.0, None], ids=["in-a-thread", "no-limit"])
def test_keyboard_interrupt_during_a_plugin_import_is_not_swallowed(site, import_timeout):
    make_dist(site, "tp-kbd", "1.0", {"wsss_kit.refiners": {"kbd": "tp_kbd:Thing"}},
              {"tp_kbd": "raise KeyboardInterrupt\n"})
    reg = Registry(path=[str(site)], import_timeout=import_timeout)
    with pytest.raises(KeyboardInterrupt):
        reg.create("refiners", "kbd")


@pytest.fixture
def gate():
    """A module ``tp_gate`` holding an Event that plugin modules can block on until the test ends."""
    module = types.ModuleType("tp_gate")
    module.EVENT = threading.Event()
    sys.modules["tp_gate"] = module
    yield module.EVENT
    module.EVENT.set()  # let the blocked import threads finish


HANGING = "import tp_gate\ntp_gate.EVENT.wait(60)\nclass Thing:\n    pass\n"


def test_a_plugin_whose_import_blocks_times_out_without_blocking_the_others(site, gate):
    make_dist(site, "tp-hang", "0.1", {"wsss_kit.refiners": {"hangs": "tp_hang:Thing",
                                                             "sibling": "tp_hang.other:Thing"}},
              {"tp_hang/__init__": HANGING, "tp_hang/other": "class Thing:\n    pass\n"})
    make_dist(site, "tp-fine", "1.0", {"wsss_kit.refiners": {"fine": "tp_fine:Fine"}},
              {"tp_fine": GOOD_MODULE.format(cls="Fine", api="1.0")})
    reg = Registry(path=[str(site)], import_timeout=0.5)
    start = time.perf_counter()
    listed = {i.name: i for i in reg.list("refiners", load=True)}
    took = time.perf_counter() - start
    assert listed["fine"].status == "ok"
    assert listed["hangs"].status == "broken"
    assert "import timed out" in listed["hangs"].error and "0.5 s" in listed["hangs"].error
    assert "WSSS_KIT_PLUGIN_IMPORT_TIMEOUT" in listed["hangs"].error
    assert "WSSS_KIT_DISABLE_PLUGINS=refiners/tp-hang:hangs" in listed["hangs"].error
    # the sibling needs the package the stuck thread is importing: reported at once, not after another wait
    assert listed["sibling"].status == "broken" and "still being imported" in listed["sibling"].error
    assert took < 0.5 + 1.5, took
    start = time.perf_counter()
    with pytest.raises(BrokenPluginError, match=r"'hangs' from tp-hang 0\.1.*import timed out"):
        reg.create("refiners", "hangs")
    assert time.perf_counter() - start < 0.3
    assert isinstance(reg.create("refiners", "fine"), wsss_kit.Refiner)


def test_import_timeout_comes_from_the_environment(monkeypatch):
    from wsss_kit.plugin_import import DEFAULT_IMPORT_TIMEOUT, import_timeout

    monkeypatch.delenv("WSSS_KIT_PLUGIN_IMPORT_TIMEOUT", raising=False)
    assert import_timeout() == DEFAULT_IMPORT_TIMEOUT == 30.0
    monkeypatch.setenv("WSSS_KIT_PLUGIN_IMPORT_TIMEOUT", "2.5")
    assert import_timeout() == 2.5
    for off in ("0", "none"):
        assert import_timeout(off) is None
    for bad in ("abc", "-1", "nan"):
        with pytest.raises(PluginError, match=f"WSSS_KIT_PLUGIN_IMPORT_TIMEOUT='{bad}' is not a number of seconds"):
            import_timeout(bad)


def test_an_already_imported_plugin_module_is_loaded_without_a_thread(site, monkeypatch):
    import wsss_kit.plugin_import as plugin_import

    make_dist(site, "tp-quick", "1.0", {"wsss_kit.refiners": {"quick": "tp_quick:Quick"}},
              {"tp_quick": GOOD_MODULE.format(cls="Quick", api="1.0")})
    __import__("tp_quick")

    def no_thread(*args, **kwargs):
        raise AssertionError("an already imported module was imported in a thread")

    monkeypatch.setattr(plugin_import, "_Pending", no_thread)
    assert type(Registry(path=[str(site)], import_timeout=5).create("refiners", "quick")).__name__ == "Quick"


@pytest.mark.parametrize("first", ["create", "import"])
def test_a_plugin_used_while_its_own_package_initialises_does_not_wait_for_itself(site, first):
    holder = types.ModuleType("tp_holder")
    sys.modules["tp_holder"] = holder
    make_dist(site, "tp-circ", "1.0", {"wsss_kit.refiners": {"circ": "tp_circ:Circ"}}, {"tp_circ": """
        import tp_holder
        import wsss_kit

        class Circ(wsss_kit.Refiner):
            wsss_api_version = "1.0"

            def refine(self, images, cams, labels):
                return cams

        BUILT = tp_holder.REGISTRY.create("refiners", "circ")
        """})
    holder.REGISTRY = Registry(path=[str(site)], import_timeout=5)
    start = time.perf_counter()
    if first == "import":
        __import__("tp_circ")
    assert type(holder.REGISTRY.create("refiners", "circ")).__name__ == "Circ"
    assert time.perf_counter() - start < 2.0
    del sys.modules["tp_holder"]


# --------------------------------------------------------------------------- WSSS_KIT_DISABLE_PLUGINS
EXPLODING = "raise RuntimeError('this module must not be imported')\n"


@pytest.mark.parametrize("entry, disabled", [
    ("alpha", {("refiners", "tp-a", "alpha"), ("cams", "tp-a", "alpha"), ("refiners", "tp-b", "alpha")}),
    ("refiner/alpha", {("refiners", "tp-a", "alpha"), ("refiners", "tp-b", "alpha")}),
    ("tp_a:alpha", {("refiners", "tp-a", "alpha"), ("cams", "tp-a", "alpha")}),
    ("refiners/tp-b:alpha", {("refiners", "tp-b", "alpha")}),
    (" tp-a:* , cams/nothing ", {("refiners", "tp-a", "alpha"), ("cams", "tp-a", "alpha"), ("refiners", "tp-a", "beta")}),
])
def test_disabled_plugins_are_listed_never_imported_and_refused(site, monkeypatch, entry, disabled):
    make_dist(site, "tp-a", "1.0", {"wsss_kit.refiners": {"alpha": "tp_a:X", "beta": "tp_a:X"},
                                    "wsss_kit.cams": {"alpha": "tp_a:X"}}, {"tp_a": EXPLODING})
    make_dist(site, "tp-b", "2.0", {"wsss_kit.refiners": {"alpha": "tp_b:X"}}, {"tp_b": EXPLODING})
    monkeypatch.setenv("WSSS_KIT_DISABLE_PLUGINS", entry)
    reg = Registry(path=[str(site)])
    infos = reg.list(load=False)
    got = {(i.kind, i.dist, i.name) for i in infos if i.status == "disabled"}
    assert got == disabled
    for info in infos:
        if info.status == "disabled":
            assert "WSSS_KIT_DISABLE_PLUGINS entry" in info.error
            with pytest.raises(DisabledPluginError, match="WSSS_KIT_DISABLE_PLUGINS"):
                reg.create(info.kind, info.qualified_name)
    reg.list(load=True)
    assert "tp_a" not in sys.modules or ("refiners", "tp-a", "beta") not in disabled


def test_disabling_one_of_two_providers_resolves_the_name_and_messages_name_the_entry(site, monkeypatch):
    make_dist(site, "tp-one", "1.0", {"wsss_kit.refiners": {"same": "tp_one:One"}},
              {"tp_one": GOOD_MODULE.format(cls="One", api="1.0")})
    make_dist(site, "tp-two", "2.0", {"wsss_kit.refiners": {"same": "tp_two:Two"}}, {"tp_two": EXITING})
    monkeypatch.setenv("WSSS_KIT_DISABLE_PLUGINS", "tp-two:same")
    reg = Registry(path=[str(site)])
    assert type(reg.create("refiners", "same")).__name__ == "One"
    with pytest.raises(DisabledPluginError) as err:
        reg.create("refiners", "tp-two:same")
    msg = str(err.value)
    for part in ("'same'", "tp-two 2.0", "disabled by WSSS_KIT_DISABLE_PLUGINS entry 'tp-two:same'",
                 "remove the entry"):
        assert part in msg
    monkeypatch.setenv("WSSS_KIT_DISABLE_PLUGINS", "same")
    reg.refresh()  # the variable is read when the index is built
    with pytest.raises(DisabledPluginError, match="tp-one 1.0.*tp-two 2.0"):
        reg.create("refiners", "same")


def test_disable_entries_with_a_bad_kind_or_no_name_are_errors():
    from wsss_kit.registry import disable_rules

    assert disable_rules("") == []
    with pytest.raises(PluginError, match=r"entry 'refinerz/x': unknown plugin kind 'refinerz'.*did you mean"):
        disable_rules("refinerz/x")
    for bad in ("cams/", "tp-x:", ":name"):
        with pytest.raises(PluginError, match="names no plugin"):
            disable_rules(bad)


# --------------------------------------------------------------------------- first-party names
def test_a_third_party_plugin_reusing_a_first_party_name_does_not_break_the_bare_name(site):
    make_dist(site, "wsss-kit-deeplab", "0.1.0", {"wsss_kit.refiners": {"psa_rw": "tp_first:First"}},
              {"tp_first": GOOD_MODULE.format(cls="First", api="1.0")})
    make_dist(site, "tp-squat", "9.9", {"wsss_kit.refiners": {"psa_rw": "tp_squat:Squat"}},
              {"tp_squat": GOOD_MODULE.format(cls="Squat", api="1.0")})
    reg = Registry(path=[str(site)])
    with pytest.warns(PluginNameClashWarning) as record:
        assert type(reg.create("refiners", "psa_rw")).__name__ == "First"
    msg = str(record[0].message)
    for part in ("wsss-kit-deeplab 0.1.0", "tp-squat 9.9", "'tp-squat:psa_rw'", "refiners/tp-squat:psa_rw"):
        assert part in msg, msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(reg.create("refiners", "tp-squat:psa_rw")).__name__ == "Squat"
        assert type(reg.create("refiners", "wsss-kit-deeplab:psa_rw")).__name__ == "First"
    squat = next(i for i in reg.list("refiners") if i.dist == "tp-squat")
    assert reg.shadowed_by(squat).dist == "wsss-kit-deeplab"
    # a second third-party provider changes nothing: the first party still wins
    make_dist(site, "tp-squat2", "1.0", {"wsss_kit.refiners": {"psa_rw": "tp_squat:Squat"}}, {})
    reg.refresh()
    with pytest.warns(PluginNameClashWarning, match="tp-squat 9.9.*tp-squat2 1.0"):
        assert type(reg.create("refiners", "psa_rw")).__name__ == "First"


def test_an_in_process_plugin_reusing_a_first_party_name_stays_ambiguous(site):
    make_dist(site, "wsss-kit", "0.1.0", {"wsss_kit.refiners": {"mine": "tp_first:First"}},
              {"tp_first": GOOD_MODULE.format(cls="First", api="1.0")})
    reg = Registry(path=[str(site)])

    class Mine(wsss_kit.Refiner):
        wsss_api_version = "1.0"

        def refine(self, images, cams, labels):
            return cams

    reg.register("refiners", "mine", Mine)
    with pytest.raises(AmbiguousPluginError, match="'local:mine'"):
        reg.create("refiners", "mine")


# --------------------------------------------------------------------------- the CLI
def test_wsss_plugins_survives_exiting_hanging_and_disabled_plugins(site):
    make_dist(site, "tp-cli", "0.5", {"wsss_kit.refiners": {"exits": "tp_cli_exit:X", "hangs": "tp_cli_hang:X",
                                                            "off": "tp_cli_off:X", "dense_crf": "tp_cli_ok:Ok"}},
              {"tp_cli_exit": EXITING, "tp_cli_hang": "import time\ntime.sleep(600)\n",
               "tp_cli_off": EXITING, "tp_cli_ok": GOOD_MODULE.format(cls="Ok", api="1.0")})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               WSSS_KIT_PLUGIN_IMPORT_TIMEOUT="1", WSSS_KIT_DISABLE_PLUGINS="refiners/off,nosuchplugin")
    cmd = [sys.executable, "-m", "wsss_kit.cli.main", "plugins", "--kind", "refiners"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "[broken]" in lines["exits"] and "[broken]" in lines["hangs"] and "[disabled]" in lines["off"]
    assert "SystemExit: the plugin called sys.exit(3)" in out
    assert "import timed out" in out and "within 1 s" in out
    assert "disabled by WSSS_KIT_DISABLE_PLUGINS entry 'refiners/off'" in out
    assert "the bare name 'dense_crf' selects the first-party 'wsss-kit:dense_crf'; name this one 'tp-cli:dense_crf'" in out
    assert "'nosuchplugin' matches no installed plugin" in out
    code = "import wsss_kit\nwsss_kit.create('refiners', 'exits')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "BrokenPluginError" in proc.stderr and "tp-cli 0.5" in proc.stderr
