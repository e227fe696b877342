"""Datasets, image/mask I/O, augmentation and data checks.

Datasets (entry-point group ``wsss_kit.datasets``): :class:`SyntheticDataset` (the embedded
demo data), :class:`VOC2012Dataset`, :class:`COCO2014Dataset`, :class:`FolderDataset`.
Each returns samples ``{"image", "labels", "mask", "name"}`` as described by
:class:`wsss_kit.WSSSDataset`.
"""

from .artifacts import MaskTargetDataset, load_cams, read_mask_artifact, save_cams
from .captions import ATTRIBUTES, caption_scene
from .checks import DataProblem, check_dataset, format_problems
from .coco import COCO2014Dataset, convert_coco_masks
from .file_dataset import FileDataset
from .folder import FolderDataset
from .image_io import MaskFormatError, read_image, read_mask, save_image_png, save_mask_png
from .label_files import read_label_file
from .palette import COCO_CATEGORY_IDS, COCO_CLASSES, VOC_CLASSES, voc_colormap
from .synthetic import SyntheticDataset
from .synthetic_scene import Scene
from .transforms import TrainAugment, build_augment
from .voc import VOC2012Dataset

# What users and plugins use; the readers' and the synthetic world's building blocks (COCO RLE and
# polygon decoding, scene rendering, per-sample checks) are public in their own modules.
__all__ = [
    "ATTRIBUTES",
    "COCO_CATEGORY_IDS",
    "COCO_CLASSES",
    "VOC_CLASSES",
    "COCO2014Dataset",
    "DataProblem",
    "FileDataset",
    "FolderDataset",
    "MaskFormatError",
    "MaskTargetDataset",
    "Scene",
    "SyntheticDataset",
    "TrainAugment",
    "VOC2012Dataset",
    "build_augment",
    "caption_scene",
    "check_dataset",
    "convert_coco_masks",
    "format_problems",
    "load_cams",
    "read_image",
    "read_label_file",
    "read_mask",
    "read_mask_artifact",
    "save_cams",
    "save_image_png",
    "save_mask_png",
    "voc_colormap",
]
