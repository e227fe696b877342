"""The plugin's released checkpoints, as data: wsss_kit reads this mapping through the entry point
group ``wsss_kit.released`` (see ``pyproject.toml``), so ``released:tiny_cam_demo`` works as a
weights spec and ``wsss weights --list`` shows the entry with this distribution's name."""

from __future__ import annotations

from wsss_kit.weights import UNKNOWN_SHA_NOTE, ReleasedCheckpoint

__all__ = ["RELEASED"]

RELEASED: dict[str, ReleasedCheckpoint] = {
    "tiny_cam_demo": ReleasedCheckpoint(
        "tiny_cam_demo.pt",
        "train it yourself: wsss run with cam.model {type: cams/tiny_cam} writes train_cam/model.pt",
        "cams/tiny_cam (width 16, 5 classes)",
        None,
        "An example entry: save the trained file under this name in $WSSS_WEIGHTS_DIR." + UNKNOWN_SHA_NOTE,
    ),
}
