"""The frozen CLIP image encoder as WeakCLIP uses it: four stage maps, pixel embeddings, visual context.

From a :class:`wsss_kit.clip.CLIPModel` (an open_clip ViT, ImageNet normalisation, bilinear
position-embedding resize) :class:`FrozenCLIPEncoder` returns, for images ``(B, 3, H, W)`` in [0, 1]
(or already normalised with CLIP's mean/std, ``input_space="normalized"``):

* ``layers``: the residual-stream patch tokens after four blocks, before ``ln_post``, CLS dropped,
  as maps ``(B, width, h, w)`` (``h, w = H // patch, W // patch``); blocks 3, 5, 7, 11 of a
  12-block ViT (:func:`default_stage_layers` for other depths);
* ``pixel_embeddings`` ``(B, E, h, w)``: the last block's patch tokens through ``ln_post`` and the
  visual projection; ``visual_context`` ``(B, 1 + h·w, E)`` = ``[CLS; pixels]`` projected.

Three details of the official image forward (github hustvl/WeakCLIP ``CLIPVisionTransformer``,
inherited from DenseCLIP) are switches here:

* ``cls_embedding_twice``: the official forward adds the class embedding to the CLS token *and*
  to the CLS row of the position embedding, so the CLS token is ``2·class_embedding + pos_0``
  (standard CLIP: ``class_embedding + pos_0``). It changes every token through attention.
* ``pos_base_size``: the official backbone resizes the stored 14×14 position embedding once to
  ``input_resolution // patch`` (512 // 16 = 32) when it loads CLIP, and every forward resizes
  that 32×32 table to the input's grid, both bilinearly; ``None`` resizes the stored table to the
  grid directly. For 512-pixel inputs both give the same table.
* ``drop_path``: the official ViT keeps stochastic depth (rate 0.1, linearly from 0 at block 0)
  active in train mode although CLIP is frozen; here it is applied to each block's attention and
  MLP branch while this encoder is in train mode (the CLIP model itself stays in eval mode).

With none of them on, the features come from :meth:`wsss_kit.clip.CLIPModel.dense_features` itself.
The image forward runs without autograd unless the images require gradients (CLIP has no
trainable parameter, so nothing else needs them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from wsss_kit.clip import CLIPModel, DenseFeatures, interpolate_pos_embed
from wsss_kit.clip.image import pool_and_project, run_blocks, vision_tower_checks
from wsss_kit.input_space import check_input_space

__all__ = ["FrozenCLIPEncoder", "default_stage_layers"]

_OFFICIAL_LAYERS = (3, 5, 7, 11)
_POS_CACHE_SIZE = 16
"""Resized position tables kept (one per patch grid: 6 scales × up to 2 window shapes officially)."""


def default_stage_layers(num_blocks: int) -> tuple[int, int, int, int]:
    """WeakCLIP's four stage blocks scaled to a ``num_blocks``-deep ViT: ``round((i + 1)·n / 12) - 1`` for
    ``i`` in (3, 5, 7, 11), so 12 blocks give (3, 5, 7, 11), 24 give (7, 11, 15, 23) and 2 give (0, 0, 0, 1)."""
    n = int(num_blocks)
    if n < 1:
        raise ValueError(f"a ViT needs at least one block, got {num_blocks}")
    a, b, c, d = (max(0, min(n - 1, int(round((i + 1) * n / 12)) - 1)) for i in _OFFICIAL_LAYERS)
    return a, b, c, d


class FrozenCLIPEncoder(nn.Module):
    """WeakCLIP's view of a frozen CLIP ViT image tower (see the module docstring).

    Args:
        clip: a frozen :class:`wsss_kit.clip.CLIPModel` with an open_clip ViT image tower.
        layers: the four 0-based stage blocks; ``None`` = :func:`default_stage_layers`.
        cls_embedding_twice: the official CLS-token quirk.
        pos_base_size: resize the stored position embedding to ``pos_base_size // patch`` first
            (official: 512); ``None``: straight to the input grid.
        drop_path: stochastic-depth rate of the last block in train mode (official 0.1; 0 = off).
        input_space: ``"unit"`` (images in [0, 1], normalised here with CLIP's mean/std) or
            ``"normalized"`` (already normalised with them, as the official data loaders give them).

    ``forward(images)`` → :class:`wsss_kit.clip.DenseFeatures` (``layers`` keyed by block index,
    ``pixel_embeddings``, ``cls_embedding``, ``visual_context``); :meth:`stages` orders the four maps.
    """

    def __init__(self, clip: CLIPModel, layers: Sequence[int] | None = None, *, cls_embedding_twice: bool = False,
                 pos_base_size: int | None = None, drop_path: float = 0.0, input_space: str = "unit") -> None:
        super().__init__()
        if not isinstance(clip, CLIPModel):
            raise TypeError(f"FrozenCLIPEncoder needs a wsss_kit.clip.CLIPModel, got {type(clip).__name__}")
        vision_tower_checks(clip.visual)
        self.clip = clip
        n = clip.num_blocks
        layers = default_stage_layers(n) if layers is None else tuple(int(i) for i in layers)
        if len(layers) != 4:
            raise ValueError(f"WeakCLIP needs 4 stage layers, got {layers}")
        for i in layers:
            if not -n <= i < n:
                raise ValueError(f"stage layer {i} is out of range for the {n}-block ViT {clip.name!r}; "
                                 f"valid: 0..{n - 1}")
        self.layers = tuple(i % n for i in layers)
        self.cls_embedding_twice = bool(cls_embedding_twice)
        if pos_base_size is not None and int(pos_base_size) < clip.patch_size:
            raise ValueError(f"pos_base_size must be at least one patch ({clip.patch_size} px), got {pos_base_size}")
        self.pos_base_size = int(pos_base_size) if pos_base_size is not None else None
        if not 0.0 <= float(drop_path) < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        self.drop_path = float(drop_path)
        self.input_space = check_input_space(input_space)
        self._handles: list[Any] = []
        self._pos_cache: dict[tuple[Any, ...], Tensor] = {}
        if self.drop_path > 0:
            self._install_drop_path()

    # ------------------------------------------------------------------ sizes
    @property
    def width(self) -> int:
        """The ViT width ``C`` (channels of the stage maps)."""
        return self.clip.vision_width

    @property
    def embed_dim(self) -> int:
        """``E``, the CLIP joint-embedding size (pixel embeddings, visual context, text)."""
        return self.clip.embed_dim

    @property
    def patch_size(self) -> int:
        return self.clip.patch_size

    @property
    def custom_forward(self) -> bool:
        """Whether an official-code detail needs this module's own forward (else ``dense_features``)."""
        base = self.pos_base_size
        return self.cls_embedding_twice or (base is not None and (base // self.patch_size,) * 2 !=
                                            tuple(self.clip.visual.grid_size))

    # ------------------------------------------------------------------ drop path
    def _install_drop_path(self) -> None:
        blocks = self.clip.visual.transformer.resblocks
        n = len(blocks)
        batch_dim = 0 if getattr(self.clip.visual.transformer, "batch_first", True) else 1
        rates = torch.linspace(0, self.drop_path, n).tolist()
        for block, rate in zip(blocks, rates):
            if rate <= 0:
                continue
            for name in ("ls_1", "ls_2"):
                branch_end = getattr(block, name, None)
                if branch_end is None:
                    raise TypeError(f"drop_path needs open_clip blocks with ls_1/ls_2 branch outputs; "
                                    f"{type(block).__name__} has no {name} (use drop_path=0)")
                self._handles.append(branch_end.register_forward_hook(self._drop_hook(rate, batch_dim)))

    def _drop_hook(self, rate: float, batch_dim: int) -> Any:
        keep = 1.0 - rate

        def hook(_module: nn.Module, _inputs: Any, out: Tensor) -> Tensor | None:
            if not self._stochastic:
                return None
            shape = [1] * out.dim()
            shape[batch_dim] = out.shape[batch_dim]
            mask = out.new_empty(shape).bernoulli_(keep)
            return out * mask / keep

        return hook

    _stochastic = False

    # ------------------------------------------------------------------ forward
    def forward(self, images: Tensor) -> DenseFeatures:
        h, w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        if h < 2 or w < 2:
            raise ValueError(f"WeakCLIP needs images of at least 2×2 patches ({2 * self.patch_size} px per side); "
                             f"got {tuple(images.shape[-2:])}")
        self._stochastic = self.training and self.drop_path > 0
        try:
            with torch.set_grad_enabled(torch.is_grad_enabled() and images.requires_grad):
                if not self.custom_forward:
                    return self.clip.dense_features(images, layers=sorted(set(self.layers)), embeddings=True,
                                                    input_space=self.input_space)
                return self._forward_official(images)
        finally:
            self._stochastic = False

    def stages(self, features: DenseFeatures) -> list[Tensor]:
        """The four stage maps ``(B, C, h, w)`` in pyramid order."""
        return [features.layers[i] for i in self.layers]

    def _position_embedding(self, grid: tuple[int, int]) -> Tensor:
        """The position table ``(1 + h·w, width)`` for patch grid ``grid``; cached per grid while
        CLIP's tables are frozen and unchanged (every window of a view, and every view of the same
        size, shares it; the key holds the tables' storage and version, so a load or an in-place
        change computes it again)."""
        visual = self.clip.visual
        tables = (visual.positional_embedding, visual.class_embedding)
        if any(t.requires_grad for t in tables):  # a trained CLIP: the table must stay in the graph
            return self._resize_position_embedding(grid)
        key = (tuple(grid), self._pos_key(), *((t.data_ptr(), t._version, t.device, t.dtype)
                                                            for t in tables))
        cached = self._pos_cache.get(key)
        if cached is None:
            if len(self._pos_cache) >= _POS_CACHE_SIZE:
                self._pos_cache.pop(next(iter(self._pos_cache)))
            cached = self._pos_cache[key] = self._resize_position_embedding(grid)
        return cached

    def _pos_key(self) -> tuple[str, int | None, bool]:
        """What the resized table depends on besides CLIP's tables and the grid."""
        return self.clip.pos_interpolation, self.pos_base_size, self.cls_embedding_twice

    def clear_position_cache(self) -> None:
        """Forget the resized position tables."""
        self._pos_cache.clear()

    def _resize_position_embedding(self, grid: tuple[int, int]) -> Tensor:
        visual = self.clip.visual
        pos, src = visual.positional_embedding, tuple(visual.grid_size)
        mode = self.clip.pos_interpolation
        if self.pos_base_size is not None:
            base = (self.pos_base_size // self.patch_size,) * 2
            pos, src = interpolate_pos_embed(pos, src, base, mode), base
        pos = interpolate_pos_embed(pos, src, grid, mode)
        if self.cls_embedding_twice:
            pos = torch.cat([pos[:1] + visual.class_embedding.to(pos.dtype), pos[1:]], dim=0)
        return pos

    def _forward_official(self, images: Tensor) -> DenseFeatures:
        clip, visual = self.clip, self.clip.visual
        x = clip.normalize(images, self.input_space)
        b = x.shape[0]
        with clip.autocast(x.device.type):
            x = visual.conv1(x)
            h, w = int(x.shape[-2]), int(x.shape[-1])
            x = x.flatten(2).transpose(1, 2)
            cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(b, -1, -1)
            x = torch.cat([cls, x], dim=1) + self._position_embedding((h, w)).to(x.dtype)
            x = visual.ln_pre(visual.patch_dropout(x))
            wanted = sorted(set(self.layers))
            x, kept = run_blocks(visual, x, keep=wanted)
            pooled, pixels = pool_and_project(visual, x, with_pixels=True)
        assert pixels is not None  # with_pixels=True
        maps = {i: kept[i][:, 1:].float().transpose(1, 2).reshape(b, -1, h, w) for i in wanted}
        pixels = pixels.float().transpose(1, 2).reshape(b, -1, h, w)
        return DenseFeatures(maps, pixels, pooled.float(), (h, w))

    def extra_repr(self) -> str:
        return (f"layers={self.layers}, cls_embedding_twice={self.cls_embedding_twice}, "
                f"pos_base_size={self.pos_base_size}, drop_path={self.drop_path}, input_space={self.input_space!r}")
