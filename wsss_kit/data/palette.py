"""Class names and colour palettes of the standard WSSS datasets.

Masks are written as palette PNGs with the PASCAL VOC colour map, so that a mask opened in any
image viewer shows the same colours as the VOC ground truth (value 255, "ignore", is cream).
"""

from __future__ import annotations

__all__ = ["COCO_CATEGORY_IDS", "COCO_CLASSES", "VOC_CLASSES", "voc_colormap"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle",
    "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
"""The 20 PASCAL VOC 2012 foreground classes; mask value ``i + 1`` is ``VOC_CLASSES[i]``."""

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
"""The 80 MS-COCO "thing" classes in category-id order; mask value ``i + 1`` is ``COCO_CLASSES[i]``."""


def _id_ranges(*spans: tuple[int, int]) -> tuple[int, ...]:
    return tuple(i for lo, hi in spans for i in range(lo, hi + 1))


# COCO numbers its categories 1..90 with 10 ids unused (12, 26, 29, 30, 45, 66, 68, 69, 71, 83).
COCO_CATEGORY_IDS: tuple[int, ...] = _id_ranges(
    (1, 11), (13, 25), (27, 28), (31, 44), (46, 65), (67, 67), (70, 70), (72, 82), (84, 90)
)
"""Original COCO category id of each entry of :data:`COCO_CLASSES` (80 ids among 1..90)."""


def voc_colormap(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: ``n`` RGB triples, entry ``i`` is the colour of mask value ``i``.

    The bits of ``i`` are dealt out in turn to red, green and blue, filling each channel from its
    most significant bit down, three bits of ``i`` per step. Entry 0 is black, 1 is (128, 0, 0),
    255 (ignore) is (224, 224, 192).
    """
    if not 0 <= n <= 256:
        raise ValueError(f"voc_colormap: n must be in 0..256, got {n}")
    return list(_VOC_COLOURS[:n])


def _voc_colours() -> tuple[tuple[int, int, int], ...]:
    colours = []
    for index in range(256):
        rgb = [0, 0, 0]
        bits = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        colours.append((rgb[0], rgb[1], rgb[2]))
    return tuple(colours)


_VOC_COLOURS = _voc_colours()  # computed once: every saved mask PNG asks for the map
