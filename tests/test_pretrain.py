"""``python -m benchmarks pretrain``: short runs of each recipe train (the loss falls), write a float16
file that the normal loading path reads back tensor for tensor, and a JSON record with every key."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.pretrain.pool import augment_batch, render_pool
from benchmarks.pretrain.recipes import RECIPES
from benchmarks.pretrain.record import RECORD_KEYS
from benchmarks.pretrain.runner import pretrain
from wsss_kit.weights.released import sha256_of

HELD = (("val", 123),)


def _short(model: str, **changes):
    # one 8-image batch repeated: the loss must fall within a dozen steps
    return RECIPES[model].replace(images=8, batch_size=8, steps=12, warmup=0, eval_images=8, **changes)


def _run(tmp_path, model: str, seed: int = 0, **changes):
    out, record = tmp_path / f"{model}.pt", tmp_path / f"{model}.json"
    result = pretrain(_short(model, **changes), seed=seed, out=out, record=record, threads=1, workers=0,
                      device="cpu", held_out=HELD)
    return result, out, record


def _falls(result) -> None:
    curve = result["loss"]["curve"]
    assert len(curve) == 12
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, curve


def _record_ok(result, out, record) -> None:
    on_disk = json.loads(record.read_text())
    assert on_disk == result
    assert set(RECORD_KEYS) <= set(on_disk)
    assert on_disk["sha256"] == sha256_of(out) and on_disk["file_size_bytes"] == out.stat().st_size
    score = on_disk["held_out"]["val_seed123"]
    assert set(score["AP"]) == {"ball", "box", "kite", "boat", "tree"}
    assert 0.0 <= score["AP_water"] <= 1.0 and on_disk["loss"]["seconds_per_step"] > 0


def _file_tensors(out):
    raw = torch.load(out, weights_only=True)
    assert all(v.dtype == torch.float16 for v in raw.values() if v.is_floating_point())
    return {k: v.float() if v.is_floating_point() else v for k, v in raw.items()}


@pytest.mark.parametrize("model", ["resnet", "vit"])
def test_backbone_pretraining_trains_and_loads(tmp_path, model):
    from wsss_kit.data.captions import ATTRIBUTES
    from wsss_kit.weights import create_timm_model

    result, out, record = _run(tmp_path, model)
    _falls(result)
    _record_ok(result, out, record)
    saved = _file_tensors(out)
    net = create_timm_model(RECIPES[model].architecture, weights=str(out), num_classes=len(ATTRIBUTES))
    own = net.state_dict()
    assert set(own) == set(saved)
    for k, v in saved.items():
        assert torch.equal(own[k].float(), v), k


@pytest.mark.parametrize("locked", [True, False], ids=["locked_world_vit", "from_scratch"])
def test_clip_pretraining_trains_and_loads(tmp_path, locked):
    from wsss_kit.clip import load_clip, zero_shot_scores

    changes = {} if locked else {"image_init": "", "lock_image": False, "prompt_loss": 0.0, "cutouts": False}
    result, out, record = _run(tmp_path, "clip", lr=2e-3, eval_every=5, **changes)
    _falls(result)
    _record_ok(result, out, record)
    points = result["held_out_progress"]["points"]
    assert [p["step"] for p in points] == [5, 10, 12]  # every 5 steps, then the final model
    assert points[-1]["mAP_classes"] == result["held_out"]["val_seed123"]["mAP_classes"]
    assert result["captions_per_image"] == 12  # one fresh caption per epoch (here: per step)
    saved = _file_tensors(out)
    clip = load_clip("wsss-synthetic-clip", weights=str(out))
    own = clip.model.state_dict()
    assert set(own) == set(saved)
    for k, v in saved.items():
        assert torch.equal(own[k].float(), v), k
    scores = zero_shot_scores(clip, torch.rand(2, 3, 128, 128), ["a photo of a boat.", "a photo of water."])
    assert scores.shape == (2, 2)
    score = result["held_out"]["val_seed123"]
    assert 0.0 <= score["mAP_classes_cosine"] <= 1.0 and 0.0 <= score["AP_water_cosine"] <= 1.0
    if locked:  # the image tower is the world ViT's, untouched; the projection and the text tower trained
        from benchmarks.pretrain.lit import world_vit_to_clip_visual
        from wsss_kit.clip.preprocessing import normalization_stats
        from wsss_kit.weights import create_timm_model

        vit = create_timm_model("wsss_world_vit", weights="released:wsss_world_vit").state_dict()
        mapped = world_vit_to_clip_visual(vit, *normalization_stats("clip", clip.model))
        for k, v in mapped.items():
            assert torch.equal(saved[k], v.half().float()), k


def test_same_seed_same_file_other_seed_other_file(tmp_path):
    a, _, _ = _run(tmp_path / "a", "resnet", seed=3)
    b, _, _ = _run(tmp_path / "b", "resnet", seed=3, eval_every=4)  # scoring mid-run changes nothing
    c, _, _ = _run(tmp_path / "c", "resnet", seed=4)
    assert a["sha256"] == b["sha256"] and a["loss"]["curve"] == b["loss"]["curve"]
    assert c["sha256"] != a["sha256"]


def test_pool_is_seeded_and_targets_match_scenes():
    from wsss_kit.data.synthetic import SyntheticDataset

    pool = render_pool("pretrain", 4, 5, captions_per_image=2, workers=0)
    again = render_pool("pretrain", 4, 5, captions_per_image=2, workers=0)
    assert pool.images.dtype == torch.uint8 and pool.images.shape == (4, 3, 128, 128)
    assert torch.equal(pool.images, again.images) and pool.captions == again.captions
    assert all(len(c) == 2 and all(isinstance(s, str) and s for s in c) for c in pool.captions)
    ds = SyntheticDataset("pretrain", num_images=4, seed=5)
    for i in range(4):
        scene = ds.scene(i)
        assert pool.classes[i].nonzero().flatten().add(1).tolist() == scene.classes
        assert bool(pool.water[i]) == scene.has_water


def test_augment_batch_identity_at_full_scale_and_flip():
    images = torch.rand(3, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    same = augment_batch(images, gen, min_scale=1.0, flip=False)
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)
    flipped = augment_batch(images, torch.Generator().manual_seed(0), min_scale=1.0, flip=True)
    for i in range(3):  # each image is either itself or its mirror image
        assert (torch.allclose(flipped[i], images[i], atol=1e-5)
                or torch.allclose(flipped[i], images[i].flip(-1), atol=1e-5))


def test_cli_refuses_bad_sizes_before_work(capsys, tmp_path):
    assert main(["pretrain", "resnet", "--steps", "0", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "steps must be >= 1, got 0" in err
    assert not (tmp_path / "x.pt").exists()


def test_clip_tag_loss_adds_the_weighted_tag_bce_and_trains_the_probe():
    import torch.nn.functional as F

    from benchmarks.pretrain.contrastive import clip_loss, contrastive_loss, tag_probe
    from benchmarks.pretrain.pool import render_pool
    from wsss_kit.clip import load_clip

    torch.manual_seed(0)
    pool = render_pool("pretrain", 4, 0, captions_per_image=1, workers=0)
    clip = load_clip("wsss-synthetic-clip", weights=None, precision="fp32", frozen=False, keep_eval=False)
    probe = tag_probe(clip)
    idx = torch.arange(4)
    images = pool.images.float() / 255.0
    with_tags = clip_loss(clip, pool, probe, 0.5)(idx, 0, images)
    plain = clip_loss(clip, pool)(idx, 0, images)
    emb = clip.encode_image(images)
    bce = F.binary_cross_entropy_with_logits(probe(F.normalize(emb, dim=-1)), pool.attributes)
    assert torch.allclose(with_tags, plain + 0.5 * bce, atol=1e-5)
    assert torch.allclose(plain, contrastive_loss(emb, clip.encode_text(clip.tokenize([c[0] for c in pool.captions])),
                                             clip.model.logit_scale), atol=1e-5)
    with_tags.backward()
    assert probe.weight.grad is not None and probe.weight.grad.abs().sum() > 0


def test_world_vit_maps_onto_the_clip_image_tower_exactly():
    """The mapped open_clip tower computes the timm ViT's pooled token from the same [0, 1] pixels
    (ImageNet normalisation and the patch bias folded into the weights)."""
    from benchmarks.pretrain.lit import load_world_vit_into, pooled_features
    from wsss_kit.clip import load_clip
    from wsss_kit.weights import create_timm_model

    torch.manual_seed(0)
    vit = create_timm_model("wsss_world_vit", weights=None, num_classes=0).eval()
    with torch.no_grad():  # non-trivial biases and gains everywhere
        for p in vit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    clip = load_clip("wsss-synthetic-clip", weights=None, precision="fp32")
    load_world_vit_into(clip, vit.state_dict())
    images = (torch.rand(3, 3, 128, 128) * 255).to(torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = vit((images.float() / 255 - mean) / std)
        want_flip = vit((images.flip(-1).float() / 255 - mean) / std)
    torch.testing.assert_close(pooled_features(clip, images), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pooled_features(clip, images, flip=True), want_flip, atol=1e-4, rtol=1e-4)


def test_world_vit_mapping_names_what_is_missing_or_mismatched():
    from benchmarks.pretrain.lit import load_world_vit_into, world_vit_to_clip_visual
    from wsss_kit.clip import load_clip
    from wsss_kit.weights import create_timm_model

    state = create_timm_model("wsss_world_vit", weights=None).state_dict()
    broken = {k: v for k, v in state.items() if k != "blocks.2.attn.qkv.weight"}
    with pytest.raises(KeyError, match="blocks.2.attn.qkv.weight"):
        world_vit_to_clip_visual(broken, (0.5,) * 3, (0.5,) * 3)
    shallow = create_timm_model("wsss_world_vit", weights=None, depth=4).state_dict()
    with pytest.raises(ValueError, match="depth"):
        load_world_vit_into(load_clip("wsss-synthetic-clip", weights=None), shallow)


def test_recipe_refuses_a_locked_random_tower_and_image_options_off_clip():
    with pytest.raises(ValueError, match="lock_image needs image_init"):
        RECIPES["clip"].replace(image_init="", prompt_loss=0.0, cutouts=False).check()
    with pytest.raises(ValueError, match="locked-image"):
        RECIPES["clip"].replace(lock_image=False, image_init="", cutouts=False).check()
    with pytest.raises(ValueError, match="CLIP options"):
        RECIPES["vit"].replace(lock_image=True).check()


def test_tag_prompts_name_each_tag_and_the_sigmoid_loss_has_gradients():
    from benchmarks.pretrain.contrastive import prompt_tag_loss, tag_phrases
    from wsss_kit.clip import load_clip
    from wsss_kit.data.captions import ATTRIBUTES

    phrases = tag_phrases()
    assert len(phrases) == len(ATTRIBUTES)
    by_tag = dict(zip(ATTRIBUTES, phrases))
    assert "a photo of a ball." in by_tag["ball"] and not any("football" in p for p in by_tag["ball"])
    assert all("football" in p or "soccer ball" in p for p in by_tag["football"])
    assert "a photo of the lake." in by_tag["water"]
    clip = load_clip("wsss-synthetic-clip", weights=None, precision="fp32", frozen=False)
    emb = torch.randn(4, 64, requires_grad=True)
    tags = torch.zeros(4, len(ATTRIBUTES))
    tags[0, 0] = tags[1, 15] = 1
    bias = torch.nn.Parameter(torch.tensor(-5.0))
    loss = prompt_tag_loss(clip, emb, tags, bias, torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.item() > 0 and emb.grad.abs().sum() > 0 and bias.grad is not None
    assert clip.model.text_projection.grad is not None


def test_cutout_views_keep_or_remove_one_present_class_and_its_tags():
    from benchmarks.pretrain.lit import class_tag_mask, cutout_views
    from wsss_kit.data.captions import ATTRIBUTES

    pool = render_pool("pretrain", 6, seed=5, workers=0, with_masks=True)
    cut = cutout_views(pool.images, pool.masks, pool.classes, pool.attributes, torch.Generator().manual_seed(0))
    rows = class_tag_mask()
    assert rows.sum(dim=1).tolist() == [3] * 5 and rows[3, ATTRIBUTES.index("rowboat")]
    for i in range(6):
        kept = cut.only_tags[i].bool()
        chosen = [c for c in range(5) if rows[c][kept].all() and kept[rows[c]].any()]
        assert len(chosen) == 1 and pool.classes[i, chosen[0]] == 1
        region = (pool.masks[i] == chosen[0] + 1)
        assert torch.equal(cut.only[i][:, region], pool.images[i][:, region])
        assert int(cut.only[i][:, ~region].max()) == 0 and int(cut.removed[i][:, region].max()) == 0
        assert torch.equal(cut.removed[i][:, ~region], pool.images[i][:, ~region])
        assert torch.equal(cut.only_tags[i] + cut.removed_tags[i], pool.attributes[i])
    with pytest.raises(ValueError, match="only from the 'pretrain' split"):
        render_pool("val", 2, seed=0, workers=0, with_masks=True)
