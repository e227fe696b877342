"""Datasets, image/mask I/O, augmentation and data checks.

Datasets (entry-point group ``wsss_kit.datasets``): :class:`SyntheticDataset` (the embedded
demo data), :class:`VOC2012Dataset`, :class:`COCO2014Dataset`, :class:`FolderDataset`.
Each returns samples ``{"image", "labels", "mask", "name"}`` as described by
:class:`wsss_kit.WSSSDataset`.
"""

from .artifacts import MaskTargetDataset, load_cams, read_mask_artifact, save_cams
from .captions import ATTRIBUTES, attribute_vector, caption_scene, scene_attributes
from .checks import DataProblem, check_dataset, check_sample, format_problems
from .coco import COCO2014Dataset, convert_coco_masks, load_coco_annotations
from .coco_masks import decode_rle_counts, polygons_to_mask, rle_to_mask, semantic_mask
from .file_dataset import FileDataset, labels_from_mask
from .folder import FolderDataset
from .image_io import (
    MaskFormatError,
    image_to_tensor,
    read_image,
    read_image_with_mode,
    read_mask,
    save_image_png,
    save_mask_png,
)
from .label_files import read_label_file
from .palette import COCO_CATEGORY_IDS, COCO_CLASSES, VOC_CLASSES, voc_colormap
from .synthetic import SyntheticDataset
from .synthetic_scene import SUBTYPES, Scene, SceneObject, render_scene
from .transforms import TrainAugment, build_augment, photometric_distortion
from .voc import VOC2012Dataset, find_voc_root

__all__ = [
    "MaskTargetDataset",
    "load_cams",
    "read_mask_artifact",
    "save_cams",
    "ATTRIBUTES",
    "SUBTYPES",
    "SceneObject",
    "attribute_vector",
    "caption_scene",
    "scene_attributes",
    "COCO2014Dataset",
    "COCO_CATEGORY_IDS",
    "COCO_CLASSES",
    "DataProblem",
    "FileDataset",
    "FolderDataset",
    "MaskFormatError",
    "Scene",
    "SyntheticDataset",
    "TrainAugment",
    "VOC2012Dataset",
    "VOC_CLASSES",
    "build_augment",
    "check_dataset",
    "check_sample",
    "convert_coco_masks",
    "decode_rle_counts",
    "find_voc_root",
    "format_problems",
    "image_to_tensor",
    "labels_from_mask",
    "load_coco_annotations",
    "photometric_distortion",
    "polygons_to_mask",
    "read_image",
    "read_image_with_mode",
    "read_label_file",
    "read_mask",
    "render_scene",
    "rle_to_mask",
    "save_image_png",
    "save_mask_png",
    "semantic_mask",
    "voc_colormap",
]
