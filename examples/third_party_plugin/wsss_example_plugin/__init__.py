"""An example of a wsss_kit plugin distributed outside the wsss_kit repository."""

from .tiny_cam import TinyCAM

__all__ = ["TinyCAM"]
