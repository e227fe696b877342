"""WeakCLIP's released checkpoints, as data (entry-point group ``wsss_kit.released``)."""

from __future__ import annotations

from wsss_kit.weights import UNKNOWN_SHA_NOTE, ReleasedCheckpoint

__all__ = ["RELEASED"]

RELEASED: dict[str, ReleasedCheckpoint] = {
    "weakclip_voc": ReleasedCheckpoint(
        "weakclip_voc.pth",
        "the WeakCLIP GitHub repository (hustvl/WeakCLIP), README 'PASCAL VOC' checkpoint link",
        "refiners/weakclip (CLIP ViT-B/16 + pyramid adapter + co-attention matching)",
        None,
        "mmsegmentation checkpoint (state dict under 'state_dict'); rename the download; "
        "convert with the weakclip plugin's converter." + UNKNOWN_SHA_NOTE,
    ),
    "weakclip_coco": ReleasedCheckpoint(
        "weakclip_coco.pth",
        "the WeakCLIP GitHub repository (hustvl/WeakCLIP), README 'MS COCO' checkpoint link",
        "refiners/weakclip (CLIP ViT-B/16, 81 classes)",
        None,
        "mmsegmentation checkpoint; rename the download; convert with the weakclip plugin." + UNKNOWN_SHA_NOTE,
    ),
}
