"""The CLIMS CAM network (Xie et al., CVPR 2022): a ResNet CAM trained through a frozen CLIP.

The network is :class:`wsss_cams.ResNetCAM` (held as ``self.cam``) set up as in the official code
(github CVI-SZU/CLIMS, ``net/resnet50_clims.py``, ``step/train_clims.py``):

- ResNet-50 with strides (2, 2, 2, 1), output stride 16, ``layer4`` not dilated
  (``dilate_last_stage=False``); 1×1 classifier without bias, 10× learning rate;
- ordinary BatchNorm (batch statistics in training, ``fixed_bn=False``) everywhere; the stem
  (``conv1``, ``bn1``) gets no gradient but, as in the official code, its BatchNorm still
  normalises with batch statistics in training (``stem_batch_stats``); nothing is detached
  (``frozen_stages=0``);
- CAM = sigmoid(classifier at every position) at feature resolution;
- initialised from a trained baseline CAM network (``init_checkpoint``: ``resnet_cam``'s layout or
  the official IRN ``res50_cam.pth``, e.g. ``released:irn_res50_cam``);
- trained with :func:`wsss_pole.losses.clims_loss` through a frozen CLIP ViT-B/32 (fp16 autocast
  on CUDA) with the class prompts ``"a photo of {}."`` and background prompts per dataset;
- CAM inference (:meth:`cams`) as the official ``make_clims``: the classifier at every position
  *without* the sigmoid, ReLU, scales (1, 0.5, 1.5, 2) + flip, IRN's strided upsampling,
  per-class max normalisation (ε = 1e-5): exactly :meth:`wsss_cams.ResNetCAM.cams`.

The CLIP weights are not part of this module's state dict (they come from ``clip_weights`` when it
is built), so checkpoints hold the CAM network (``cam.*``) and any learnable prompt (``prompt.*``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

import wsss_kit
from wsss_cams import ResNetCAM
from wsss_cams.resnet_cam import STEM_NAMES
from wsss_kit.batchnorm import set_batchnorm_mode
from wsss_kit.clip import DEFAULT_CLIP_WEIGHTS, CLIPModel, frozen_clip
from wsss_kit.errors import WeightsError
from wsss_kit.input_space import check_input_space, to_unit
from wsss_kit.prompts import TemplatePrompt, apply_overrides
from wsss_kit.shapes import check_shape
from wsss_kit.weights import load_checkpoint

from .background import BACKGROUND_TEMPLATE, background_prompts
from .convert import has_official_adapters
from .losses import CLIMSLoss, describe_value
from .presets import CLIMS_TEMPLATE, clims_preset

__all__ = ["CLIMS", "DEFAULT_CLIP_WEIGHTS", "prefers_channels_last"]



class CLIMS(wsss_kit.CAMGenerator):
    """CLIMS: a ResNet CAM network trained with CLIP-based object/background matching losses.

    Args:
        num_classes: ``C``, foreground classes.
        class_names: the ``C`` class names (dataset names; ``class_name_overrides`` then applies);
            ``None`` takes the preset's dataset names when ``num_classes`` matches (VOC 20, COCO 80).
        preset: ``"voc"`` or ``"coco"`` (:data:`wsss_pole.presets.CLIMS_PRESETS`): loss weights,
            CBS threshold, background prompts, class names and overrides. Explicit keywords win.
        backbone, weights, output_stride, dilate_last_stage, fixed_bn, frozen_stages, freeze_stem,
            classifier_lr_mult, scales, flip, upsample, backbone_kwargs: of the
            :class:`wsss_cams.ResNetCAM` inside; defaults are CLIMS's (ResNet-50, output stride 16
            without dilation, ordinary BatchNorm, frozen stem, nothing detached, 10× classifier,
            CAM scales (1, 0.5, 1.5, 2) + flip, strided upsampling).
        stem_batch_stats: the frozen stem's BatchNorm uses batch statistics in training (official
            CLIMS, whose stem parameters are frozen but whose ``bn1`` stays in train mode);
            ``False`` keeps it in eval mode like ``resnet_cam``'s frozen stem. ``None``: ``not fixed_bn``.
        init_checkpoint: the trained baseline CAM network to start from (``resnet_cam`` layout or
            the official IRN/CLIMS ``res50_cam.pth``, e.g. ``released:irn_res50_cam``); ``None``
            starts from ``weights`` and a random classifier.
        clip_model: an open_clip architecture (official ``"ViT-B-32"``; ``"wsss-tiny-clip"`` for
            tests), a custom one as data (a path to an open_clip model-config JSON file, or a mapping
            ``{embed_dim, vision_cfg, text_cfg}``; see :func:`wsss_kit.clip.clip_architecture`), or a
            frozen :class:`wsss_kit.clip.CLIPModel` (then ``clip_weights`` and ``clip_precision`` are
            not used).
        clip_weights: the CLIP weights; ``"default"`` = OpenAI's for ViT-B-32/ViT-B-16
            (``released:clip_vit_b32_openai`` ...), none for ``wsss-tiny-clip``; ``None`` = random.
        clip_precision: the CLIP model's compute precision (``"auto"``: fp16 autocast on CUDA, as the
            official code's fp16 CLIP).
        clip_input_size: CLIP's input size; ``None`` = the model's native size (224 for ViT-B/32).
        clip_normalization: how the image is normalised before it is masked and fed to CLIP:
            ``"imagenet"`` (official), ``"clip"`` or ``(mean, std)``.
        prompt: the class-prompt strategy: a :class:`wsss_kit.PromptStrategy` instance or a config
            node (``{"type": "prompts/coop", ...}``); ``None`` = ``template`` with
            ``"a photo of {}."`` (CLIMS). It is called as ``prompt(names, clip=clip)`` with the
            class names after ``class_name_overrides``.
        class_name_overrides: words used instead of class names in every prompt (preset: VOC
            ``person→player``, ``diningtable→dining table`` ...; ``{}`` for none).
        background: background prompt words: ``"voc"``, ``"coco"`` (shipped lists) or your own
            list (``[]`` switches the suppression term off); ``None``: the preset's.
        background_template: the template of the background words (``None``: words are prompts).
        otm_weight, btm_weight, cbs_weight, reg_weight, cbs_threshold: of :class:`CLIMSLoss`;
            ``None``: the preset's.
        prompt_lr_mult: learning-rate multiplier of a learnable prompt's parameters in
            :meth:`param_groups` (1e-3: POLE's supplement B trains prompt vectors at 0.001× the
            network's learning rate).
        input_space: ``"unit"`` (default): images in [0, 1]; ``"normalized"``: images already
            ImageNet-normalised as the official CLIMS/POLE data loaders feed them (the CAM network's
            own mean/std, :attr:`wsss_cams.ResNetCAM.mean`). The CAM network then skips its
            normalisation, and the CLIP side un-normalises them with the CAM network's mean/std
            before applying ``clip_normalization``, so CLIP sees the same inputs from either space.
            For your own tensors; wsss_kit's datasets yield [0, 1] images.
        channels_last: store the CAM network's weights in the channels-last memory format, so its
            convolutions run channels-last (oneDNN) whatever the input's layout: the same network and
            numbers to float rounding (~5e-5 on the raw CAMs). ResNet-50 forward + backward at 512²,
            batch 2, 1 CPU thread (Xeon, AVX-512): 1.18× faster. ``"auto"`` (default): channels-last
            where that was measured faster (:func:`prefers_channels_last`: a CPU with AVX-512 and
            oneDNN), the default layout elsewhere (CUDA: not measured); it follows the model's device
            when it is moved (``.to(device)``). ``False``: the official layout.

    Inputs are images ``(B, 3, H, W)`` in ``input_space`` ([0, 1] by default); labels ``(B, C)`` multi-hot.
    """

    wsss_api_version = "1.0"
    checkpoint_replaces = ("weights", "init_checkpoint", "clip_weights")
    """A trained checkpoint holds the CAM network (backbone included) and the prompts; the frozen
    CLIP only feeds the training loss, never :meth:`cams`, so with a checkpoint (nothing is trained)
    none of these files is needed (CLIP is built at random; weights are files only for training)."""

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        *,
        preset: str = "voc",
        backbone: str = "resnet50",
        weights: str | os.PathLike[str] | None = None,
        init_checkpoint: str | os.PathLike[str] | None = None,
        output_stride: int = 16,
        dilate_last_stage: bool = False,
        fixed_bn: bool = False,
        frozen_stages: int = 0,
        freeze_stem: bool = True,
        stem_batch_stats: bool | None = None,
        classifier_lr_mult: float = 10.0,
        scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
        flip: bool = True,
        upsample: str = "strided",
        backbone_kwargs: Mapping[str, Any] | None = None,
        clip_model: str | os.PathLike[str] | Mapping[str, Any] | CLIPModel = "ViT-B-32",
        clip_weights: str | os.PathLike[str] | None = "default",
        clip_precision: str = "auto",
        clip_input_size: int | None = None,
        clip_normalization: str | tuple[Sequence[float], Sequence[float]] = "imagenet",
        prompt: Any = None,
        class_name_overrides: Mapping[str, str] | None = None,
        background: str | Sequence[str] | None = None,
        background_template: str | None = BACKGROUND_TEMPLATE,
        otm_weight: float | None = None,
        btm_weight: float | None = None,
        cbs_weight: float | None = None,
        reg_weight: float | None = None,
        cbs_threshold: float | None = None,
        prompt_lr_mult: float = 1e-3,
        input_space: str = "unit",
        channels_last: bool | str = "auto",
    ) -> None:
        super().__init__()
        check_input_space(input_space)
        if not (isinstance(channels_last, bool) or channels_last == "auto"):
            raise ValueError(f"channels_last must be true or false; got {channels_last!r} (or \"auto\": "
                             f"channels-last where it is faster, see prefers_channels_last)")
        settings = clims_preset(preset)
        if stem_batch_stats is None:
            stem_batch_stats = not fixed_bn
        if stem_batch_stats and fixed_bn:
            raise ValueError("stem_batch_stats=True contradicts fixed_bn=True (every BatchNorm uses its running "
                             "statistics); pass stem_batch_stats=None or False")
        if not prompt_lr_mult >= 0:
            raise ValueError(f"prompt_lr_mult must be >= 0; got {prompt_lr_mult!r}")
        if clip_input_size is not None and (isinstance(clip_input_size, bool) or int(clip_input_size) < 1):
            raise ValueError(f"clip_input_size must be a positive int or None; got {clip_input_size!r}")

        # the CAM network, loaded from the baseline before anything else is registered
        self.cam = ResNetCAM(num_classes, backbone=backbone, weights=weights, output_stride=output_stride,
                             freeze_stem=freeze_stem, classifier_lr_mult=classifier_lr_mult, scales=scales,
                             flip=flip, checkpoint=init_checkpoint, dilate_last_stage=dilate_last_stage,
                             fixed_bn=fixed_bn, frozen_stages=frozen_stages, upsample=upsample,
                             backbone_kwargs=backbone_kwargs, input_space=input_space)
        self.channels_last = channels_last
        self._channels_last_now = False
        self._set_layout(torch.device("cpu"))  # built on the CPU; _apply follows later moves
        self.input_space = input_space
        self.num_classes = num_classes
        self.preset = preset
        self.stem_batch_stats = bool(stem_batch_stats) and freeze_stem
        self.prompt_lr_mult = float(prompt_lr_mult)
        self.class_names = self._class_names(class_names, settings, num_classes)
        overrides = settings["class_name_overrides"] if class_name_overrides is None else class_name_overrides
        self.class_name_overrides = dict(overrides)
        self.prompt_names = apply_overrides(self.class_names, self.class_name_overrides)
        self.background_prompts = background_prompts(settings["background"] if background is None else background,
                                                     background_template)

        self.clip = self._build_clip(clip_model, clip_weights, clip_precision)
        _keep_out_of_state_dict(self, "clip")
        self.clip_input_size = int(clip_input_size) if clip_input_size is not None else None
        self.prompt = self._build_prompt(prompt)
        self.criterion = CLIMSLoss(otm_weight=otm_weight, btm_weight=btm_weight, cbs_weight=cbs_weight,
                              reg_weight=reg_weight, cbs_threshold=cbs_threshold, input_size=self.clip_input_size,
                              normalization=clip_normalization, preset=preset)
        self.train(self.training)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _class_names(class_names: Sequence[str] | None, settings: Mapping[str, Any], num_classes: int) -> list[str]:
        if class_names is None:
            names = list(settings["class_names"])
            if len(names) != num_classes:
                raise ValueError(f"class_names is needed: the prompts are built from the class names, and the "
                                 f"preset's {len(names)} dataset classes do not fit num_classes={num_classes}; pass "
                                 f"class_names=[...] ({num_classes} names, e.g. the dataset's class_names)")
            return names
        if isinstance(class_names, str):
            raise ValueError(f"class_names must be a list of {num_classes} names, got the string {class_names!r}")
        names = [str(n) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(f"class_names has {len(names)} names but num_classes={num_classes}")
        return names

    @staticmethod
    def _build_clip(clip_model: Any, clip_weights: Any, precision: str) -> CLIPModel:
        return frozen_clip(clip_model, clip_weights, owner="CLIMS", precision=precision)

    def _build_prompt(self, prompt: Any) -> wsss_kit.PromptStrategy:
        if prompt is None:
            prompt = TemplatePrompt(CLIMS_TEMPLATE)
        elif isinstance(prompt, Mapping):
            from wsss_kit.config import build, is_node

            if not is_node(prompt):
                raise ValueError(f"prompt must be a PromptStrategy or a config node {{type: prompts/<name>, ...}}; "
                                 f"got a mapping without 'type': {dict(prompt)!r}")
            prompt = build(prompt, "prompt")
        if not isinstance(prompt, wsss_kit.PromptStrategy):
            raise TypeError(f"prompt must be a wsss_kit.PromptStrategy (e.g. wsss_kit.create('prompts', 'template')); "
                            f"got {type(prompt).__name__}")
        build_vectors = getattr(prompt, "build", None)
        if getattr(prompt, "built", True) is False and callable(build_vectors):
            build_vectors(self.clip, self.prompt_names)  # learnable vectors exist before param_groups()
        return prompt

    # ------------------------------------------------------------------ network
    @property
    def uses_channels_last(self) -> bool:
        """Whether the CAM network's weights are channels-last now (``channels_last`` resolved)."""
        return self._channels_last_now

    def _set_layout(self, device: torch.device) -> None:
        want = self.channels_last if isinstance(self.channels_last, bool) else prefers_channels_last(device)
        if want != self._channels_last_now:
            # weights channels-last make every convolution (and its backward) run channels-last; the
            # parameters keep their identity (optimizers built before still hold them)
            self.cam.to(memory_format=torch.channels_last if want else torch.contiguous_format)
            self._channels_last_now = want

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> CLIMS:
        super()._apply(fn, *args, **kwargs)
        if getattr(self, "channels_last", None) == "auto":
            param = next(self.cam.parameters(), None)
            if param is not None:
                self._set_layout(param.device)
        return self

    def train(self, mode: bool = True) -> CLIMS:
        """Set the mode (``ResNetCAM``'s rules; CLIP stays in eval). With ``stem_batch_stats`` the
        frozen stem's BatchNorm follows ``mode`` like every other BatchNorm (official CLIMS)."""
        super().train(mode)
        if getattr(self, "stem_batch_stats", False):
            for name, module in self.cam.backbone.named_children():
                if name in STEM_NAMES or name.startswith("stem_"):
                    set_batchnorm_mode(module, mode)
        return self

    def raw_cams(self, images: Tensor) -> Tensor:
        """Classifier outputs at every position ``(B, C, ⌈H/s⌉, ⌈W/s⌉)`` (before the sigmoid)."""
        return self.cam.raw_cams(images)

    def class_text_features(self) -> Tensor:
        """The class prompts' text embeddings ``(C, E)`` (cached by CLIP for fixed prompts)."""
        feats = self.prompt(self.prompt_names, clip=self.clip)
        if not isinstance(feats, Tensor) or tuple(feats.shape) != (self.num_classes, self.clip.embed_dim):
            raise ValueError(f"prompt strategy {type(self.prompt).__name__} returned {describe_value(feats)}; expected "
                             f"text features ({self.num_classes}, {self.clip.embed_dim})")
        return feats

    def forward(self, images: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        """Training pass.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].
            labels: ``(B, C)`` multi-hot, or ``None``.

        Returns:
            ``{"logits": (B, C)}`` (the classifier on the average-pooled features, for monitoring);
            with labels also ``"loss"`` (the weighted CLIMS loss) and its unweighted terms ``"otm"``,
            ``"btm"``, ``"cbs"``, ``"reg"`` (see :func:`wsss_pole.losses.clims_loss`).
        """
        return self._training_pass(images, labels, self.class_text_features)

    def _training_pass(self, images: Tensor, labels: Tensor | None, class_text: Callable[[], Tensor], *,
                       image_adapter: Callable[[Tensor], Tensor] | None = None,
                       text_adapter: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """:meth:`forward` with the class texts (``(C, E)`` or ``(B, C, E)``, computed only with
        labels) and the adapters of :func:`wsss_pole.losses.clims_loss` given (for subclasses)."""
        raw = self.raw_cams(images)
        out = {"logits": raw.mean(dim=(2, 3))}  # = classifier(GAP(features)): the classifier is linear, bias-free
        if labels is None:
            return out
        check_shape(labels, "B C", "labels", sizes={"B": images.shape[0], "C": self.num_classes}, note="multi-hot")
        cams = torch.sigmoid(raw)
        # the loss normalises [0, 1] images for CLIP (clip_normalization): bring normalised ones back
        clip_images = to_unit(images, self.input_space, self.cam.mean, self.cam.std)
        out.update(self.criterion(clip_images, cams, labels.to(cams.dtype), clip=self.clip, class_text=class_text(),
                                  background_text=self.background_prompts, image_adapter=image_adapter,
                                  text_adapter=text_adapter))
        return out

    def cams(self, images: Tensor, labels: Tensor, scales: Sequence[float] | None = None,
             flip: bool | None = None) -> Tensor:
        """CAMs ``(B, C, H, W)`` in [0, 1], zero for absent classes: CLIMS's inference, i.e.
        :meth:`wsss_cams.ResNetCAM.cams` (no sigmoid; ReLU, scales + flip, strided upsampling,
        max normalisation). Call ``eval()`` and wrap in ``torch.no_grad()`` for inference."""
        return self.cam.cams(images, labels, scales=scales, flip=flip)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Backbone (trainable part) at ``lr``, classifier at ``lr × classifier_lr_mult``, a learnable
        prompt's parameters at ``lr × prompt_lr_mult``, and any other trainable parameter (e.g. a
        subclass's adapters) at ``lr``. CLIP is never included."""
        groups = self.cam.param_groups(lr)
        seen = {id(p) for g in groups for p in g["params"]} | {id(p) for p in self.clip.parameters()}
        prompt = [p for p in self.prompt.parameters() if p.requires_grad and id(p) not in seen]
        if prompt:
            groups.append({"params": prompt, "lr": lr * self.prompt_lr_mult, "lr_mult": self.prompt_lr_mult})
        seen |= {id(p) for p in prompt}
        others = [p for p in self.parameters() if p.requires_grad and id(p) not in seen]
        if others:
            groups.append({"params": others, "lr": lr, "lr_mult": 1.0})
        return groups

    # ------------------------------------------------------------------ checkpoints
    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load trained weights: a CLIMS checkpoint of this class (``cam.*`` and ``prompt.*`` keys,
        e.g. the engine's ``model.pt``), or a CAM network alone — ``resnet_cam``'s layout or the
        official IRN/CLIMS layout (the official ``res50_clims.pth`` has the same layout as
        ``res50_cam.pth``) — loaded strictly into :attr:`cam`.

        Raises:
            WeightsError: missing file, or weights that do not fit (the message says which).
        """
        load_checkpoint(self, checkpoint, converter=self._convert_checkpoint, purpose="CLIMS checkpoint")

    def _convert_checkpoint(self, state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
        """This class's layout passes; a CAM network alone is converted by :attr:`cam` and the rest of
        the model (prompts, CLIP) keeps its own values."""
        if any(k.startswith("cam.") for k in state):
            return dict(state)
        if has_official_adapters(state):
            raise WeightsError(f"{source} is an official POLE checkpoint (the CAM network plus the adapters Av.*, "
                               f"At.*): load it with cams/pole (adapter='vector'), which converts the adapters")
        cam = self.cam._convert_checkpoint(state, source)
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("cam.")}
        return {f"cam.{k}": v for k, v in cam.items()} | own

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, preset={self.preset!r}, stem_batch_stats={self.stem_batch_stats}, "
                f"background_prompts={len(self.background_prompts)}, clip_input_size={self.clip_input_size}")


def prefers_channels_last(device: torch.device | str) -> bool:
    """Whether ``cams/clims``'s ``channels_last="auto"`` stores the CAM network channels-last on ``device``.

    True on a CPU with AVX-512 where PyTorch has oneDNN: there the ResNet-50 forward + backward at
    512², batch 2, 1 thread ran 1.15-1.18× faster (Xeon Sapphire Rapids; ``benchmarks/clims_loss_cost.py``);
    at the embedded demo's sizes (ResNet-18, 96², batch 8) 0.97× (pass ``channels_last=False`` there).
    False elsewhere: not measured (CUDA in fp32, CPUs without AVX-512).
    """
    device = torch.device(device)
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and torch.backends.cpu.get_cpu_capability() == "AVX512")


def _keep_out_of_state_dict(parent: nn.Module, name: str) -> None:
    """Leave submodule ``name``'s weights out of ``parent``'s state dict, and accept state dicts without them.

    The frozen CLIP comes from its own weights file whenever the model is built, so checkpoints
    need not carry its ~150M parameters. Loading a state dict that lacks them keeps the current
    ones; one that has them loads them. The submodule's own ``state_dict()`` is unchanged.
    """

    def drop(_module: nn.Module, state_dict: dict[str, Tensor], prefix: str, _metadata: Any) -> None:
        for key in [k for k in state_dict if k.startswith(f"{prefix}{name}.")]:
            del state_dict[key]

    def fill(module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_args: Any) -> None:
        # runs before the children load, on the dict they are then given their keys from
        for key, value in getattr(module, name).state_dict().items():
            state_dict.setdefault(f"{prefix}{name}.{key}", value)

    parent.register_state_dict_post_hook(drop)
    parent.register_load_state_dict_pre_hook(fill)
