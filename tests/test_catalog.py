"""Catalogs of named data (released checkpoints, CRF parameter sets): the core's entries, plugins'
entries through entry points (real dist-info folders on a search path), aliases, in-process ones."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import types
from pathlib import Path

import pytest

from wsss_kit.catalog import Alias, Catalog, CatalogView
from wsss_kit.crf import CRFParams, get_params, list_crf_params, param_names, register_crf_params
from wsss_kit.crf.params import CRF_PARAMS_CATALOG, PARAM_SETS
from wsss_kit.errors import ConfigError, WeightsError
from wsss_kit.weights import RELEASED, RELEASED_CATALOG, ReleasedCheckpoint, list_released, register_released, resolve

GROUP = "tp_test.crf_params"


def make_dist(root: Path, dist: str, version: str, entries: dict[str, str], modules: dict[str, str]) -> None:
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = [f"[{GROUP}]"] + [f"{name} = {target}" for name, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for mod, code in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(code))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("WSSS_KIT_DISABLE_PLUGINS", raising=False)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("tp_")]:
        del sys.modules[name]


def catalog(site: Path) -> Catalog[CRFParams]:
    core = {"base": CRFParams(3, 3, 80, 13, 10), "neutral": Alias("base")}
    return Catalog("CRF parameter set", GROUP, CRFParams, core, error_type=ConfigError, path=[str(site)])


GOOD = """
from wsss_kit.catalog import Alias
from wsss_kit.crf import CRFParams
SETS = {"mine": CRFParams(1, 2, 30, 4, 5, 6), "mine_too": Alias("base"), "chain": Alias("mine_too")}
def sets():
    return {"made": CRFParams(2, 2, 20, 2, 2, 2)}
"""


def test_plugin_entries_load_lazily_with_their_provider_and_aliases(site: Path) -> None:
    make_dist(site, "tp-good", "2.1.0", {"sets": "tp_good:SETS", "made": "tp_good:sets"}, {"tp_good": GOOD})
    cat = catalog(site)
    assert "tp_good" not in sys.modules
    assert cat.get("mine").as_tuple() == (1.0, 2.0, 30.0, 4.0, 5.0, 6)
    assert "tp_good" in sys.modules
    assert cat.get("made").iterations == 2  # an entry point naming a function returning the mapping
    assert cat.get("mine_too") is cat.get("base") is cat.get("chain") is cat.get("neutral")
    assert cat.canonical("chain") == "base"
    rows = {r.name: r for r in cat.entries()}
    assert set(rows) == {"base", "made", "mine"}  # aliases fold into their target's row
    assert rows["base"].aliases == ("chain", "mine_too", "neutral")
    assert rows["mine"].provider == "tp-good 2.1.0" and rows["base"].dist == "wsss-kit"
    assert cat.names() == ["base", "chain", "made", "mine", "mine_too", "neutral"]
    assert cat.provider_of("mine_too") == "tp-good 2.1.0"


def test_a_provider_may_look_up_the_catalog_while_it_is_imported(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin's data module that derives its set from another entry at import time (in the import
    guard's thread) neither deadlocks nor breaks itself; its entries are there afterwards."""
    cat = catalog(site)
    holder = types.ModuleType("tp_holder")
    holder.cat = cat  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tp_holder", holder)
    make_dist(site, "tp-derived", "1.0", {"sets": "tp_derived:SETS"}, {"tp_derived": """
        import tp_holder
        SETS = {"derived": tp_holder.cat.get("base").replace(iterations=3)}
    """})
    assert cat.get("derived").iterations == 3 and cat.get("derived").bilateral_sxy == 80
    assert cat.broken() == [] and cat.provider_of("derived") == "tp-derived 1.0"


def test_broken_provider_is_named_and_the_others_keep_working(site: Path) -> None:
    make_dist(site, "tp-broken", "0.3", {"sets": "tp_broken:SETS"}, {"tp_broken": "raise ImportError('no gpu here')"})
    make_dist(site, "tp-badvalue", "1.0", {"sets": "tp_badvalue:SETS"}, {"tp_badvalue": "SETS = {'x': (3, 3)}"})
    make_dist(site, "tp-good", "2.1.0", {"sets": "tp_good:SETS"}, {"tp_good": GOOD})
    cat = catalog(site)
    assert cat.get("mine").gauss_sxy == 1
    with pytest.raises(ConfigError) as info:
        cat.get("mien")
    msg = str(info.value)
    assert "unknown CRF parameter set 'mien'" in msg and "did you mean 'mine'" in msg
    assert "mine (tp-good)" in msg and "base (wsss-kit)" in msg and "mine_too = alias of base (tp-good)" in msg
    assert "tp-broken 0.3" in msg and "ImportError: no gpu here" in msg
    assert "tp-badvalue 1.0" in msg and "'x' is a tuple; expected a CRFParams or an Alias" in msg
    assert len(cat.broken()) == 2


def test_conflicting_declarations_name_both_distributions(site: Path) -> None:
    make_dist(site, "tp-good", "2.1.0", {"sets": "tp_good:SETS"}, {"tp_good": GOOD})
    make_dist(site, "tp-other", "1.0", {"sets": "tp_other:SETS"}, {"tp_other": """
        from wsss_kit.crf import CRFParams
        SETS = {"mine": CRFParams(9, 9, 9, 9, 9), "same": CRFParams(3, 3, 80, 13, 10)}
    """})
    cat = catalog(site)
    with pytest.raises(ConfigError, match=r"'mine' is declared with different values by tp-(good|other) .* and tp-"):
        cat.get("mine")
    assert cat.get("same") == cat.get("base")  # another name for equal values is no conflict
    cat.register("mine", CRFParams(5, 5, 5, 5, 5), override=True)  # in-process wins, and settles it
    assert cat.get("mine").gauss_sxy == 5


def test_broken_alias_and_alias_loops_are_errors(site: Path) -> None:
    cat = catalog(site)
    cat.register("dangling", Alias("nowhere"))
    with pytest.raises(ConfigError, match=r"alias 'dangling' \(from local .*\) names 'nowhere', which does not exist"):
        cat.get("dangling")
    cat.register("a", Alias("b"))
    cat.register("b", Alias("a"))
    with pytest.raises(ConfigError, match="aliases form a loop: a -> b -> a"):
        cat.get("a")
    assert {r.name for r in cat.entries()} == {"base"}  # broken aliases are left out of the listing


def test_disabled_distribution_contributes_nothing(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist(site, "tp-good", "2.1.0", {"sets": "tp_good:SETS"}, {"tp_good": GOOD})
    monkeypatch.setenv("WSSS_KIT_DISABLE_PLUGINS", "tp-good:*")
    cat = catalog(site)
    assert "mine" not in cat and "tp_good" not in sys.modules
    assert "tp-good 2.1.0" in cat.broken()[0] and "disabled by WSSS_KIT_DISABLE_PLUGINS" in cat.broken()[0]


def test_register_rules_and_the_dict_view(site: Path) -> None:
    cat = catalog(site)
    with pytest.raises(ConfigError, match=r"'base' exists already \(from wsss-kit .*override=True"):
        cat.register("base", CRFParams(1, 1, 1, 1, 1))
    with pytest.raises(ConfigError, match="'bad name' is not a name"):
        cat.register("bad name", CRFParams())
    with pytest.raises(ConfigError, match="is a dict; expected a CRFParams or an Alias"):
        cat.register("d", {"gauss_sxy": 3})  # type: ignore[arg-type]
    view = CatalogView(cat)
    assert dict(view) == {"base": cat.get("base"), "neutral": cat.get("base")}
    with pytest.raises(KeyError, match="unknown CRF parameter set 'nope'"):
        view["nope"]
    view["base"] = CRFParams(7, 7, 7, 7, 7)  # assignment = in-process registration
    assert cat.get("base").gauss_sxy == 7 and cat.get("neutral").gauss_sxy == 7
    view["base"] = CRFParams(3, 3, 80, 13, 10)  # setting the declared value back drops the registration
    assert cat._local == {}
    view["new"] = CRFParams(2, 2, 2, 2, 2)
    del view["new"]
    assert "new" not in view
    with pytest.raises(KeyError, match="was not registered in this process"):
        del view["base"]


# ---------------------------------------------------------------------------------- the real catalogs
def test_crf_sets_keep_their_values_under_every_old_name() -> None:
    default = (3.0, 3.0, 80.0, 13.0, 10.0, 10)
    for name in ("default", "deeplab", "psa", "mctformer_psa", "weakclip_loss"):
        assert get_params(name).as_tuple() == default, name
        assert get_params(name) is get_params("default"), name  # one object under every name
    kazuto = (1.0, 3.0, 67.0, 3.0, 4.0, 10)
    assert get_params("weakclip_coco").as_tuple() == get_params("clims_retrain").as_tuple() == kazuto
    assert get_params("weakclip_coco") is get_params("deeplab_pytorch")
    assert get_params("weakclip_voc").as_tuple() == (3.0, 3.0, 83.0, 5.0, 3.0, 10)
    assert get_params("weakclip_retrain").as_tuple() == (1.0, 3.0, 112.0, 2.0, 3.0, 10)
    assert get_params("mctformer_seg").as_tuple() == (4.0, 3.0, 83.0, 5.0, 3.0, 10)
    assert get_params("irn_label").as_tuple() == (3.0, 3.0, 50.0, 5.0, 10.0, 10)
    rows = {r.name: r for r in list_crf_params()}
    values = [r.value for r in rows.values()]
    assert len(values) == len(set(values)), "identical sets must be one entry with aliases"
    assert rows["default"].aliases == ("deeplab", "mctformer_psa", "psa", "weakclip_loss")
    assert set(param_names()) == set(rows) | {a for r in rows.values() for a in r.aliases} == set(PARAM_SETS)


def test_plugins_own_their_data_and_the_core_only_method_neutral_entries() -> None:
    crf_core = {r.name for r in list_crf_params() if r.dist == "wsss-kit"}
    assert crf_core == {"default", "deeplab_pytorch"}
    assert CRF_PARAMS_CATALOG.provider_of("weakclip_voc").startswith("wsss-kit-weakclip ")
    assert CRF_PARAMS_CATALOG.provider_of("psa").startswith(("wsss-kit-deeplab ", "wsss-kit-affinity "))
    rows = {r.name: r.provider.split()[0] for r in list_released()}
    assert {n for n, d in rows.items() if d == "wsss-kit"} == {
        "clip_vit_b16_openai", "clip_vit_b32_openai", "wsss_synthetic_clip", "wsss_world_resnet50", "wsss_world_vit"}
    assert rows["mctformer_v1_voc"] == rows["irn_res50_cam"] == rows["deit_small_imagenet"] == "wsss-kit-cams"
    assert rows["weakclip_voc"] == rows["weakclip_coco"] == "wsss-kit-weakclip"
    assert rows["deeplab_resnet101_coco"] == rows["resnet38_imagenet"] == "wsss-kit-deeplab"
    assert RELEASED["mctformer_v1_voc"].filename == "MCTformer_v1_voc.pth"  # dict-style lookups keep working


def test_unknown_released_name_lists_names_with_their_distribution() -> None:
    with pytest.raises(WeightsError) as info:
        resolve("released:weakclip_vco")
    msg = str(info.value)
    assert "unknown released checkpoint 'weakclip_vco'" in msg and "did you mean 'weakclip_voc'" in msg
    assert "weakclip_voc (wsss-kit-weakclip)" in msg and "wsss_synthetic_clip (wsss-kit)" in msg


def test_registered_released_checkpoint_resolves_and_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "mine.pt").write_bytes(b"weights")
    entry = ReleasedCheckpoint("mine.pt", "my lab", "cams/resnet_cam")
    register_released("my_cam", entry)
    try:
        assert resolve("released:my_cam") == tmp_path / "mine.pt"
        row = list_released("my_*")[0]
        assert row.provider == "local" and row.present
        with pytest.raises(WeightsError, match=r"'my_cam' exists already \(from local\)"):
            register_released("my_cam", entry)
    finally:
        RELEASED_CATALOG.unregister("my_cam")
    assert "my_cam" not in RELEASED
    with pytest.raises(ConfigError, match="'default' exists already"):
        register_crf_params("default", CRFParams())


def test_monkeypatch_setitem_on_released_leaves_nothing_behind() -> None:
    """Tests patch RELEASED like a dict (a packaged file with its SHA-256 taken out); undoing the patch
    restores the declared entry and drops the in-process registration."""
    declared = RELEASED["wsss_world_vit"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(RELEASED, "wsss_world_vit", dataclasses.replace(declared, sha256=None))
        mp.setitem(RELEASED, "brand_new", ReleasedCheckpoint("new.pt", "here", "tests"))
        assert RELEASED["wsss_world_vit"].sha256 is None and "brand_new" in RELEASED
        assert resolve("released:wsss_world_vit", verify=False).name == declared.filename
    assert RELEASED["wsss_world_vit"] is declared and "brand_new" not in RELEASED
    assert RELEASED_CATALOG._local == {}
