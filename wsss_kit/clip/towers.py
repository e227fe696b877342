"""How wsss_kit's annotations see open_clip's towers.

open_clip ships no type information, and its towers (``VisionTransformer``, ``TextTransformer``,
the ``CLIP`` model holding the text transformer) are read by attribute: ``conv1``,
``transformer.resblocks``, ``positional_embedding``, ``token_embedding``... Typed as ``nn.Module``,
each such read would be ``Tensor | Module`` (``nn.Module.__getattr__``), which fits neither use,
so the functions that walk a tower take it as :data:`OpenCLIPTower`, i.e. ``Any``.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__: list[str] = []

#: an open_clip tower or model (untyped third-party ``nn.Module``; its attributes are read dynamically)
OpenCLIPTower: TypeAlias = Any
