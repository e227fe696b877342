"""``CLIPModel``: the one place through which wsss_kit uses CLIP (open_clip underneath)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from ..attention import fuse_attention
from ..input_space import check_input_space, normalize_input
from ..shapes import check_shape
from .image import DenseFeatures, embed_patches, pool_and_project, run_blocks, vision_tower_checks
from .preprocessing import PRECISIONS, Normalization, autocast_for, normalization_stats, resolve_precision
from .text import TokenizedPrompts, assemble_prompt_embeddings, encode_prompt_embeddings, tokenize_prompts
from .towers import OpenCLIPTower

__all__ = ["CLIPModel"]


class CLIPModel(nn.Module):
    """A (by default frozen) open_clip model with dense features and prompt-learning text encoding.

    Build it with :func:`load_clip`. All image methods take RGB ``(B, 3, H, W)`` in ``[0, 1]`` and
    normalise inside, or with ``input_space="normalized"`` images already normalised with this
    model's ``normalization``; all outputs are float32 whatever the compute precision.

    Args:
        model: an open_clip ``CLIP`` / ``CustomTextCLIP``.
        tokenizer: its tokenizer (open_clip ``SimpleTokenizer`` for prompt learning).
        name: the architecture name (for messages). source: where the weights came from.
        precision: ``"fp32"`` (autocast off), ``"fp16"`` / ``"bf16"`` (autocast with that dtype on
            the device the inputs are on; weights stay fp32), ``"auto"`` (fp16 autocast on CUDA;
            bf16 on a CPU with AMX for ViTs at least 512 wide, measured 2-3× faster there;
            elsewhere whatever autocast state the caller runs under: :func:`resolve_precision`).
        frozen: parameters get ``requires_grad=False``; gradients still flow *through* the model
            to its inputs (images, context vectors).
        keep_eval: keep the open_clip model in eval mode when the parent module is put in train
            mode (default: the same as ``frozen``).
        normalization: ``"clip"`` (the model's own mean/std, OpenAI's by default), ``"imagenet"``
            (WeakCLIP's choice) or ``(mean, std)``.
        pos_interpolation: ``"bicubic"`` (open_clip's) or ``"bilinear"`` (WeakCLIP's) resizing of
            the position embedding to other input sizes.
        text_cache_size: how many string lists :meth:`encode_text` remembers (frozen models only).
        fused_attention: compute the attention of open_clip's standard blocks with fused
            ``scaled_dot_product_attention`` (:func:`wsss_kit.attention.fuse_attention`, applied to
            ``model`` in place; equal outputs to float tolerance, faster on CPU and CUDA).
    """

    mean: Tensor  # (1, 3, 1, 1) buffers, registered in __init__
    std: Tensor

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str = "clip", source: str = "",
                 precision: str = "auto", frozen: bool = True, keep_eval: bool | None = None,
                 normalization: Normalization = "clip", pos_interpolation: str = "bicubic",
                 text_cache_size: int = 32, fused_attention: bool = True) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if pos_interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"pos_interpolation must be 'bilinear' or 'bicubic', got {pos_interpolation!r}")
        self.model: OpenCLIPTower = model
        self.fused_attention = bool(fused_attention)
        if fused_attention:
            fuse_attention(model)
        self.tokenizer = tokenizer
        self.name, self.source, self.precision = name, source, precision
        self.pos_interpolation = pos_interpolation
        self.text_cache_size = int(text_cache_size)
        self._text_cache: OrderedDict[tuple[Any, ...], Tensor] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        mean, std = normalization_stats(normalization, model)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.frozen = False
        self.keep_eval = frozen if keep_eval is None else bool(keep_eval)
        if frozen:
            self.freeze()
        self.train(self.training)
        self.register_load_state_dict_post_hook(_forget_text_after_load)

    # ------------------------------------------------------------------ state
    def freeze(self) -> CLIPModel:
        """Switch gradients off for every CLIP parameter (text features become cacheable)."""
        self.model.requires_grad_(False)
        self.frozen = True
        return self

    def unfreeze(self) -> CLIPModel:
        """Make every CLIP parameter trainable again (and stop caching text features)."""
        self.model.requires_grad_(True)
        self.frozen = False
        self.clear_text_cache()
        return self

    def train(self, mode: bool = True) -> CLIPModel:
        """Set the mode; the open_clip model stays in eval mode while ``keep_eval`` is set."""
        super().train(mode)
        if self.keep_eval:
            self.model.eval()
        return self

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> CLIPModel:
        self.clear_text_cache()  # .to(), .cuda(), .half() ... invalidate cached features
        return super()._apply(fn, *args, **kwargs)

    def clear_text_cache(self) -> None:
        """Forget cached text features."""
        self._text_cache.clear()

    def autocast(self, device_type: str) -> AbstractContextManager[Any]:
        """The autocast context this model's ``precision`` asks for on ``device_type``."""
        return autocast_for(self.precision, device_type, self._auto_width())

    def resolved_precision(self, device_type: str) -> str:
        """What ``precision`` means on ``device_type``: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``""``
        (``auto`` choosing nothing: the caller's autocast state), see
        :func:`wsss_kit.clip.resolve_precision` (``auto`` decides by device and the ViT width)."""
        return resolve_precision(self.precision, device_type, self._auto_width())

    def _auto_width(self) -> int | None:
        try:  # a tower without a patch conv (none known) counts as wide: auto then decides by device alone
            return self.vision_width
        except AttributeError:
            return None

    # ------------------------------------------------------------------ sizes
    @property
    def visual(self) -> OpenCLIPTower:
        """The open_clip image tower."""
        return self.model.visual

    @property
    def text_tower(self) -> OpenCLIPTower:
        """The module holding the text transformer (the model itself for ``CLIP``)."""
        return getattr(self.model, "text", self.model)

    @property
    def embed_dim(self) -> int:
        """``E``, the joint embedding size."""
        return int(getattr(self.visual, "output_dim", 0) or self.visual.proj.shape[1])

    @property
    def vision_width(self) -> int:
        """Width of the ViT residual stream (768 for ViT-B)."""
        return int(self.visual.conv1.out_channels)

    @property
    def text_width(self) -> int:
        """``W``, the width of text token embeddings (512 for ViT-B)."""
        return int(self.text_tower.token_embedding.embedding_dim)

    @property
    def patch_size(self) -> int:
        """ViT patch size in pixels."""
        return int(self.visual.conv1.kernel_size[0])

    @property
    def num_blocks(self) -> int:
        """Number of ViT blocks."""
        return len(self.visual.transformer.resblocks)

    @property
    def context_length(self) -> int:
        """Number of text positions (77 for CLIP)."""
        return int(self.text_tower.positional_embedding.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """The native input size ``(H, W)`` the position embedding was trained at."""
        grid = self.visual.grid_size
        return grid[0] * self.patch_size, grid[1] * self.patch_size

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, source={self.source!r}, precision={self.precision!r}, "
                f"frozen={self.frozen}, pos_interpolation={self.pos_interpolation!r}, "
                f"fused_attention={self.fused_attention}")

    # ------------------------------------------------------------------ images
    def normalize(self, images: Tensor, input_space: str = "unit") -> Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` → normalised with this model's mean/std (float32).

        ``input_space="normalized"``: the images are already normalised with this model's
        ``normalization`` (as an official data loader feeds them) and come back as they are (float32).
        """
        check_input_space(input_space)
        check_shape(images, "B 3 H W", "images", note="RGB in [0, 1]")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [0, 1], got {images.dtype}")
        return normalize_input(images.float(), input_space, self.mean, self.std)

    def encode_image(self, images: Tensor, *, normalized: bool = False, input_space: str = "unit") -> Tensor:
        """Image embeddings ``(B, E)``: projected, **not** L2-normalised, float32.

        ``images``: ``(B, 3, H, W)`` RGB in [0, 1], any size ≥ one patch (ViT towers resize their
        position embedding to the patch grid; other towers get the images as they are).
        ``normalized=True``: the images are already normalised as the caller wants and go to the
        tower as they are, skipping this model's ``normalization`` (CLIMS feeds CLIP with
        CAM-masked ImageNet-normalised images).
        ``input_space="normalized"``: the images are normalised with this model's own
        ``normalization`` (see :meth:`normalize`); ``normalized=True`` is the same switch.
        """
        if check_input_space(input_space) == "normalized":
            normalized = True
        if normalized:
            if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
                raise ValueError(f"images must be floating point (B, 3, H, W), got shape {tuple(images.shape)} "
                                 f"and dtype {images.dtype}")
            x = images.float()
        else:
            x = self.normalize(images)
        with self.autocast(x.device.type):
            if not _is_vit(self.visual):
                return self.model.encode_image(x).float()
            vision_tower_checks(self.visual)
            tokens, _ = embed_patches(self.visual, x, self.pos_interpolation)
            tokens, _ = run_blocks(self.visual, tokens)
            pooled, _ = pool_and_project(self.visual, tokens)
        return pooled.float()

    def dense_features(self, images: Tensor, layers: Sequence[int] = (3, 5, 7, 11), *,
                       embeddings: bool = True, input_space: str = "unit") -> DenseFeatures:
        """Patch tokens of several blocks as maps, plus the projected pixel and CLS embeddings.

        Args:
            images: ``(B, 3, H, W)`` RGB in [0, 1].
            layers: 0-based block indices (negative counts from the end); WeakCLIP uses
                ``(3, 5, 7, 11)`` of ViT-B/16's 12 blocks.
            embeddings: also compute ``pixel_embeddings`` ``(B, E, h, w)`` and ``cls_embedding``
                ``(B, E)`` (runs every block); otherwise the pass stops after the last asked block.
            input_space: ``"unit"`` (RGB in [0, 1]) or ``"normalized"`` (already normalised with
                this model's ``normalization``, see :meth:`normalize`).

        Returns:
            :class:`DenseFeatures` with ``layers[i]`` ``(B, width, h, w)`` (residual stream after
            block ``i``, before ``ln_post``, CLS dropped), ``h, w = H // patch, W // patch``.
        """
        check_input_space(input_space)
        vision_tower_checks(self.visual)
        n = self.num_blocks
        wanted = []
        for i in layers:
            if not -n <= int(i) < n:
                raise ValueError(f"layer {i} is out of range for this {n}-block ViT ({self.name}); "
                                 f"valid: 0..{n - 1} or -{n}..-1")
            wanted.append(int(i) % n)
        if not wanted and not embeddings:
            raise ValueError("dense_features needs at least one layer or embeddings=True")
        x = self.normalize(images, input_space)
        with self.autocast(x.device.type):
            tokens, (h, w) = embed_patches(self.visual, x, self.pos_interpolation)
            stop = None if embeddings else max(wanted)
            tokens, kept = run_blocks(self.visual, tokens, keep=wanted, stop=stop)
            pooled = pixels = None
            if embeddings:
                pooled, pixels = pool_and_project(self.visual, tokens, with_pixels=True)
        b = images.shape[0]
        maps = {i: kept[i][:, 1:].float().transpose(1, 2).reshape(b, -1, h, w) for i in wanted}
        if pixels is not None:
            pixels = pixels.float().transpose(1, 2).reshape(b, -1, h, w)
        return DenseFeatures({i: maps[i] for i in wanted}, pixels,
                             pooled.float() if pooled is not None else None, (h, w))

    # ------------------------------------------------------------------ text
    def tokenize(self, texts: str | Sequence[str], context_length: int | None = None) -> Tensor:
        """Token ids ``(K, L)`` int64 (``L`` = ``context_length`` or the model's 77), open_clip's rules
        (too long texts are cut and end with ``[EOT]``)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self.tokenizer(texts, context_length=context_length or self.context_length)

    def tokenize_prompts(self, class_names: Sequence[str], template: str | None = "{}",
                         context_length: int | None = None) -> TokenizedPrompts:
        """``template.format(name)`` per class, tokenised with the class-name token spans recorded
        (see :func:`wsss_kit.clip.text.tokenize_prompts`)."""
        return tokenize_prompts(self.tokenizer, class_names, template, context_length or self.context_length)

    def token_embeddings(self, token_ids: Tensor) -> Tensor:
        """The text token-embedding table looked up: ids ``(..., L)`` → ``(..., L, W)`` (float32)."""
        table = self.text_tower.token_embedding
        return table(token_ids.to(table.weight.device)).float()

    def encode_text(self, texts: str | Sequence[str] | Tensor) -> Tensor:
        """Text embeddings ``(K, E)`` of strings or token ids ``(K, L)``: projected ``[EOT]`` features,
        **not** L2-normalised, float32.

        For strings on a frozen model the result is cached (LRU over the tuple of strings,
        ``text_cache_size`` entries) and a copy is returned; fixed prompts are encoded once.
        """
        key = None
        if not isinstance(texts, Tensor):
            texts = [texts] if isinstance(texts, str) else list(texts)
            key = (tuple(texts),)
            if self.frozen and self.text_cache_size > 0 and key in self._text_cache:
                self._text_cache.move_to_end(key)
                self.cache_hits += 1
                return self._text_cache[key].clone()
            tokens = self.tokenize(texts)
        else:
            tokens = texts
        device = self.text_tower.token_embedding.weight.device
        with self.autocast(device.type):
            out = self.model.encode_text(tokens.to(device)).float()
        if key is not None and self.frozen and self.text_cache_size > 0:
            self.cache_misses += 1
            self._text_cache[key] = out.detach().clone()
            while len(self._text_cache) > self.text_cache_size:
                self._text_cache.popitem(last=False)
        return out

    def prompt_embeddings(self, prompts: TokenizedPrompts | Tensor, context: Tensor | None = None,
                          position: str = "before_class",
                          class_embeddings: Tensor | Sequence[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Token-embedding sequences ``(K, T, W)`` and ``[EOT]`` columns ``(K,)`` with context vectors
        inserted (see :func:`wsss_kit.clip.text.assemble_prompt_embeddings`); the input of
        :meth:`encode_text_with_context` before position embeddings are added."""
        if isinstance(prompts, Tensor):
            prompts = TokenizedPrompts.from_token_ids(prompts, self.tokenizer.eot_token_id)
        device = self.text_tower.token_embedding.weight.device
        ids = prompts.token_ids.to(device)
        pad = self.token_embeddings(torch.zeros(1, dtype=torch.long, device=device))[0]
        return assemble_prompt_embeddings(self.token_embeddings(ids), prompts, context, position,
                                          class_embeddings, self.context_length, pad)

    def encode_text_with_context(self, prompts: TokenizedPrompts | Tensor, context: Tensor | None = None,
                                 position: str = "before_class",
                                 class_embeddings: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        """Text embeddings ``(K, E)`` (projected, not normalised, float32) of prompts with learnable
        context vectors and/or learnable class vectors.

        Args:
            prompts: :meth:`tokenize_prompts` output, or token ids ``(K, L)`` from :meth:`tokenize`
                (then the whole text between ``[SOS]`` and ``[EOT]`` counts as the class name, e.g.
                WeakCLIP's bare class names tokenised to ``L = 5``).
            context: ``(n_ctx, W)`` shared or ``(K, n_ctx, W)`` per class; ``None`` for none.
            position: ``"after_start"`` (``[SOS] ctx prefix class suffix [EOT]``, WeakCLIP's code),
                ``"before_class"`` (``[SOS] prefix ctx class suffix [EOT]``, CoOp) or
                ``"after_class"`` (``[SOS] prefix class ctx suffix [EOT]``).
            class_embeddings: replace each class's name-token embeddings: ``(K, n_cls, W)`` or ``K``
                tensors ``(n_k, W)`` (DeFo / target optimisation).

        The position embedding is truncated to the sequence length ``T`` (``L`` + inserted
        vectors, trailing padding dropped beyond the model's positions; 5 + 8 = 13 for WeakCLIP),
        the causal mask likewise; the output is the ``ln_final``'d token at the shifted ``[EOT]``
        index (old index + ``n_ctx``) times the text projection.
        """
        x, eot = self.prompt_embeddings(prompts, context, position, class_embeddings)
        with self.autocast(x.device.type):
            return encode_prompt_embeddings(self.text_tower, x, eot).float()


def _is_vit(visual: nn.Module) -> bool:
    from open_clip.transformer import VisionTransformer

    return isinstance(visual, VisionTransformer)


def _forget_text_after_load(module: CLIPModel, _keys: Any) -> None:
    module.clear_text_cache()
