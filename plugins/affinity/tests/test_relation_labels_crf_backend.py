"""psa_rw / irn_rw training targets through the torch dense-CRF backend give the reference's labels."""

from __future__ import annotations

import pytest
import torch

import wsss_affinity.relation_labels as relation_labels_module
from wsss_affinity.affinity import PSARefiner
from wsss_affinity.irn import IRNRefiner
from wsss_affinity.relation_labels import irn_relation_labels, psa_relation_labels

pytest.importorskip("pydensecrf.densecrf")
PSA_TINY = dict(stem_width=4, widths=((4, 4), (4, 8), (8, 8), (8, 16)), depths=(1, 1, 1, 1),
                bottleneck_widths=(8, 16), dropouts=(0.0, 0.0), embed_widths=(4, 4, 8), embed_dim=8)


def scene(h: int = 32, w: int = 48, seed: int = 0):
    """Two coloured blobs on a textured background; blurred, noisy CAMs of two present classes and an absent one."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    blob1 = ((yy - 10) ** 2 + (xx - 12) ** 2 < 60).float()
    blob2 = ((yy - 20) ** 2 + (xx - 34) ** 2 < 80).float()
    image = (0.3 + 0.5 * blob1[None] * torch.tensor([1.0, 0.2, 0.1])[:, None, None]
             + 0.5 * blob2[None] * torch.tensor([0.1, 0.3, 0.9])[:, None, None]
             + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)
    shift = torch.nn.functional.avg_pool2d(torch.stack([blob1, blob2, torch.zeros(h, w)])[None], 7, 1, 3)[0]
    cams = (shift.roll((2, -2), (1, 2)) + 0.15 * torch.rand(3, h, w, generator=g)).clamp(0, 1)
    return image, cams, torch.tensor([1.0, 1.0, 0.0])


@pytest.mark.parametrize("make", [psa_relation_labels, irn_relation_labels])
def test_torch_backend_labels_equal_the_reference(make, monkeypatch):
    image, cams, labels = scene()
    ref = make(image, cams, labels)
    monkeypatch.setattr(relation_labels_module, "dense_crf", None)  # the torch path must not call pydensecrf
    out = make(image, cams, labels, crf_backend="torch")
    assert out.dtype == torch.int64 and out.shape == ref.shape
    assert (out == ref).float().mean() >= 0.98
    assert {1, 2} <= set(torch.unique(ref).tolist())  # both classes are labelled (not a trivial map)


def test_refiners_pass_the_backend_on_and_refuse_unknown_ones():
    image, cams, labels = scene(seed=1)
    irn = IRNRefiner(backbone="test_resnet", width=8, displacement=False, label_crf_backend="torch")
    ref = irn_relation_labels(image, cams, labels)
    assert (irn.training_targets(image, cams, labels) == ref).float().mean() >= 0.98
    psa = PSARefiner(**PSA_TINY, label_crf_backend="torch")
    assert psa.label_crf_backend == "torch"
    assert (psa.training_targets(image, cams, labels) == psa_relation_labels(image, cams, labels, 1.0, 12.0)
            ).float().mean() >= 0.98
    for make in (lambda: IRNRefiner(backbone="test_resnet", label_crf_backend="gpu"),
                 lambda: PSARefiner(**PSA_TINY, label_crf_backend="gpu")):
        with pytest.raises(ValueError, match="unknown dense CRF backend 'gpu'; valid backends"):
            make()
