"""``template``: fixed prompt templates ("a photo of {}.") with optional class-name overrides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor

from ..interfaces import PromptStrategy

if TYPE_CHECKING:
    from ..clip import CLIPModel

__all__ = ["TemplatePrompt", "apply_overrides", "check_class_names", "require_clip"]


def check_class_names(class_names: Sequence[str], who: str) -> None:
    """Raise unless ``class_names`` is a non-empty sequence of names (a bare str would be read letter by letter)."""
    if isinstance(class_names, (str, bytes)):
        raise TypeError(f"{who}: class_names must be a list of class names, got the single string {class_names!r} "
                        f"(write [{class_names!r}] for one class)")
    if len(class_names) == 0:
        raise ValueError(f"{who}: no class names given")


def apply_overrides(class_names: Sequence[str], overrides: Mapping[str, str] | None) -> list[str]:
    """Class names with ``overrides`` applied (e.g. CLIMS's ``{"person": "player"}``)."""
    check_class_names(class_names, "prompt strategy")
    names = [str(n) for n in class_names]
    return [overrides.get(n, n) for n in names] if overrides else names


def require_clip(clip: Any, who: str) -> CLIPModel:
    """``clip`` if it is a :class:`~wsss_kit.clip.CLIPModel`, else a ``TypeError`` saying how to call ``who``."""
    from ..clip import CLIPModel

    if not isinstance(clip, CLIPModel):
        got = "nothing" if clip is None else type(clip).__name__
        raise TypeError(f"{who} needs the CLIP model passed as clip=clip, a wsss_kit.clip.CLIPModel "
                        f"(wsss_kit.clip.load_clip(...)); got {got}")
    return clip


class TemplatePrompt(PromptStrategy):
    """Fixed text prompts: every class name put into one or more templates.

    Args:
        templates: a template or a list of them, each with one ``{}`` for the class name
            (default ``"a photo of {}."``, CLIMS's).
        class_name_overrides: words to use instead of some class names, e.g. ``{"person":
            "player"}`` (CLIMS); names not in the mapping are used as they are.
        normalize: L2-normalise the returned features.

    ``forward(class_names, clip=clip)`` returns text features ``(K, E)``. With one template they
    are CLIP's projected ``[EOT]`` features (unit-norm only if ``normalize``). With several, each
    template's features are L2-normalised, averaged over templates and the mean re-normalised
    (CLIP's zero-shot ensembling), so the output is unit-norm either way. The strings are
    encoded through :meth:`CLIPModel.encode_text`, which caches them for a frozen model.
    """

    wsss_api_version = "1.0"
    learnable = False

    def __init__(self, templates: str | Sequence[str] = "a photo of {}.",
                 class_name_overrides: Mapping[str, str] | None = None, normalize: bool = False) -> None:
        super().__init__()
        self.templates = [templates] if isinstance(templates, str) else [str(t) for t in templates]
        if not self.templates:
            raise ValueError("TemplatePrompt needs at least one template")
        for t in self.templates:
            if t.count("{}") != 1:
                raise ValueError(f"prompt template {t!r} must contain exactly one '{{}}' for the class name")
        self.class_name_overrides = dict(class_name_overrides or {})
        self.normalize = bool(normalize)

    def prompts(self, class_names: Sequence[str]) -> list[str]:
        """``K × T`` strings, class-major: every template for class 0, then for class 1, ..."""
        check_class_names(class_names, type(self).__name__)
        return [t.format(name) for name in apply_overrides(class_names, self.class_name_overrides)
                for t in self.templates]

    def forward(self, class_names: Sequence[str], clip: CLIPModel | None = None, **context: Any) -> Tensor:
        """Text features ``(K, E)`` float32 for ``class_names`` (see the class docstring)."""
        clip = require_clip(clip, type(self).__name__)
        num_t = len(self.templates)
        feats = clip.encode_text(self.prompts(class_names))
        if num_t == 1:
            return F.normalize(feats, dim=-1) if self.normalize else feats
        feats = F.normalize(feats.view(len(class_names), num_t, -1), dim=-1).mean(dim=1)
        return F.normalize(feats, dim=-1)

    def extra_repr(self) -> str:
        return f"templates={self.templates!r}, overrides={self.class_name_overrides!r}, normalize={self.normalize}"
