"""The DeepLab heads train through wsss_kit's engine the way the train_head stage calls them (head output
straight into the configured loss), their model.pt loads back strictly, and predict_multiscale runs on them."""

from __future__ import annotations

import pytest
import torch
from deeplab_official_layouts import TINY_V2, TINY_WR38

from wsss_kit.config import build
from wsss_kit.data.synthetic import SyntheticDataset
from wsss_kit.engine import TrainConfig, train
from wsss_kit.inference import predict_multiscale
from wsss_kit.weights import load_state_dict, load_weights_into

CASES = {
    "v1": ({"type": "heads/deeplab_v1_wr38", **TINY_WR38}, {"type": "losses/cross_entropy"}),
    "v2": ({"type": "heads/deeplab_v2_r101", "backbone_kwargs": TINY_V2, "train_output": "all"},
           {"type": "losses/deeplab_msc", "loss": {"type": "losses/balanced_ce"}}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_train_head_like_the_pipeline(case, tmp_path):
    model_node, loss_node = CASES[case]
    ds = SyntheticDataset("train", num_images=4, image_size=40)
    k = ds.num_classes + 1
    torch.manual_seed(0)
    model = build(model_node, "head.model", num_classes=k)
    loss_fn = build(loss_node, "head.loss")

    def step(m, batch):
        return {"loss": loss_fn(m(batch["image"]), batch["mask"])}

    config = TrainConfig(steps=3, batch_size=2, lr=1e-3, device="cpu", checkpoint_every=10, log_every=1)
    result = train(model, ds, config, tmp_path / "train_head", step_fn=step, desc=case)
    assert result.steps == 3 and torch.isfinite(torch.tensor(result.final_loss))
    fresh = build(model_node, "head.model", num_classes=k)
    load_weights_into(fresh, load_state_dict(tmp_path / "train_head" / "model.pt"), strict=True)
    probs = predict_multiscale(fresh.eval(), ds[0]["image"][None], scales=(0.75, 1.0), flip=True, aggregate="max")
    assert probs.shape == (1, k, 40, 40)
