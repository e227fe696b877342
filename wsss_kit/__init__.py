"""wsss_kit: composable components for weakly-supervised semantic segmentation.

The public API::

    import wsss_kit
    cam = wsss_kit.create("cams", "resnet_cam", num_classes=20)
    wsss_kit.list_plugins("refiners")

    @wsss_kit.register("refiners", "my_refiner")
    class MyRefiner(wsss_kit.Refiner): ...
"""

from . import world_backbones  # noqa: F401  (registers the embedded world's timm backbones on import)
from .errors import (
    AmbiguousPluginError,
    BrokenPluginError,
    ConfigError,
    DataError,
    PluginError,
    PluginVersionError,
    UnknownPluginError,
    WeightsError,
    WSSSError,
)
from .interfaces import (
    IGNORE_INDEX,
    CAMGenerator,
    Loss,
    PromptStrategy,
    Refiner,
    RetrainHead,
    WSSSDataset,
    cams_to_seeds,
)
from .registry import KINDS, DisabledPluginError, PluginInfo, PluginNameClashWarning, create, list_plugins, register
from .version import API_VERSION, __version__

__all__ = [
    "API_VERSION",
    "IGNORE_INDEX",
    "KINDS",
    "AmbiguousPluginError",
    "BrokenPluginError",
    "CAMGenerator",
    "ConfigError",
    "DataError",
    "DisabledPluginError",
    "Loss",
    "PluginError",
    "PluginInfo",
    "PluginNameClashWarning",
    "PluginVersionError",
    "PromptStrategy",
    "Refiner",
    "RetrainHead",
    "UnknownPluginError",
    "WSSSDataset",
    "WSSSError",
    "WeightsError",
    "__version__",
    "cams_to_seeds",
    "create",
    "list_plugins",
    "register",
]
