"""``pole_synonyms``: POLE's class-token selection (paper Sec. 3.3; Table 1 "Ours"; Table 4 row B).

For every image and every class ``k`` in its label, POLE masks the image with the baseline CAM of
``k``, ``M_k = X · P_k``, encodes ``M_k`` with CLIP's image encoder, and picks, among the prompts
``"A photo of {w}."`` for ``w`` in ``[class word, synonym 1, ..., synonym m]``, the one whose text
embedding has the highest cosine similarity with it (Eq. 6, argmax). The selected word then
replaces the class name in the CLIMS prompts while the CAM network trains.

What the masking is, precisely (our reading of Sec. 3.3 and Fig. 2; the paper gives no formula
beyond ``X · P_k``):

1. ``X`` is the RGB image in ``[0, 1]`` (pixel space, before CLIP's normalisation) at its own size;
   ``P_k`` is the CAM of class ``k`` in ``[0, 1]``, bilinearly resized to the image
   (``align_corners=False``) if its size differs.
2. ``M_k = X · P_k`` per pixel, so where the CAM is 0 the image is black.
3. ``M_k`` goes through CLIP's own preprocessing (``resize="clip"``): shorter side to the model's
   input size (224 for ViT-B/32) with antialiased bicubic interpolation, centre crop, then CLIP's
   mean/std (inside :meth:`CLIPModel.encode_image`). ``resize="stretch"`` instead resizes the
   whole image to the input size (bilinear), so nothing is cropped away.

The selection is the argmax of the cosine similarities; POLE's code takes the argmax of the
softmax over the candidates, which is the same index (a softmax keeps the order). Ties go to the earlier candidate,
i.e. to the class word. Bugs of the released selection script that are *not* reproduced (see
``docs/paper_vs_code.md``): it reads images as BGR, and multiplies the masked image by 255 twice
before the uint8 cast, so values wrap around.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from wsss_kit import PromptStrategy
from wsss_kit.clip import CLIPModel
from wsss_kit.data.artifacts import load_cams
from wsss_kit.progress import Progress
from wsss_kit.prompts.template import require_clip
from wsss_kit.shapes import check_shape

from .selection import RESIZE_MODES, candidate_similarities, clip_input, mask_image
from .selection_cache import (
    SelectionCacheError,
    check_header,
    clip_identity,
    dataset_identity,
    read_selection_cache,
    write_selection_cache,
)
from .synonym_table import SynonymTable, canonical_sha256, load_synonyms

__all__ = [
    "DEFAULT_TEMPLATE",
    "RESIZE_MODES",
    "PoleSynonyms",
    "candidate_similarities",
    "clip_identity",
    "clip_input",
    "dataset_identity",
    "mask_image",
]

DEFAULT_TEMPLATE = "A photo of {}."
"""POLE's prompt (CLIP's tokenizer lower-cases, so CLIMS's ``"a photo of {}."`` encodes the same)."""
SELECTION_VERSION = 1
"""Bumped whenever the masking or scoring changes, so that old caches are not reused."""


def _as_items(value: Tensor | Sequence[Tensor]) -> list[Tensor]:
    if isinstance(value, Tensor):
        return list(value.unbind(0))
    return [torch.as_tensor(v) for v in value]


def _keep_list(batch: list[Any]) -> list[Any]:
    return batch


# ---------------------------------------------------------------------------------------- strategy
class PoleSynonyms(PromptStrategy):
    """POLE's prompt class learning: the best of ``[class word] + m synonyms`` per image and class.

    Args:
        synonyms: ``"voc"`` (the paper's Table S1, shipped), a table file (``.json``, ``.yaml``,
            ``.csv``, ``.tsv``: see :mod:`wsss_pole.synonym_table`), a mapping class → list of
            synonyms, or a :class:`~wsss_pole.synonym_table.SynonymTable`.
        template: the prompt, with one ``{}`` for the word.
        class_name_overrides: the word used for a dataset class, e.g. ``{"person": "player"}``.
            ``None`` takes the table's defaults (``"voc"``: person → player, diningtable → dining
            table, pottedplant → potted plant, tvmonitor → tv monitor; files: none).
        num_synonyms: keep the first ``m`` synonyms of each class (Fig. 3); ``None`` keeps all.
        cache: the JSON file selections are stored in and read from (see
            :mod:`wsss_pole.selection_cache`); ``None`` keeps them in memory only.
        resize: how a masked image becomes CLIP's input: ``"clip"`` (CLIP's preprocessing, shorter
            side + centre crop, as POLE's code) or ``"stretch"`` (see :func:`clip_input`).
        image_size: CLIP's input size; ``None`` uses the model's native size (224 for ViT-B/32).
        normalize: L2-normalise the text features that :meth:`forward` returns.

    Use::

        clip = load_clip("ViT-B-32", weights="released:clip_vit_b32_openai")
        pole = wsss_kit.create("prompts", "pole_synonyms", cache="run/pole_selection.json")
        pole.select_dataset(dataset, "run/baseline_cams", clip)       # once; resumes; cached
        text = pole(dataset.class_names, clip=clip, image_names=batch["name"])   # (B, C, E)
    """

    wsss_api_version = "1.0"
    learnable = False

    def __init__(self, synonyms: str | os.PathLike[str] | Mapping[str, Sequence[str]] | SynonymTable = "voc",
                 template: str = DEFAULT_TEMPLATE, class_name_overrides: Mapping[str, str] | None = None,
                 num_synonyms: int | None = None, cache: str | os.PathLike[str] | None = None,
                 resize: str = "clip", image_size: int | Sequence[int] | None = None,
                 normalize: bool = False) -> None:
        super().__init__()
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"prompt template {template!r} must contain exactly one '{{}}' for the word")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        self.table = load_synonyms(synonyms)
        self.template = template
        self.class_words = dict(self.table.class_words if class_name_overrides is None else class_name_overrides)
        self.num_synonyms = num_synonyms
        self.cache_path = Path(cache).expanduser() if cache is not None else None
        self.resize = resize
        size = None if image_size is None else (
            (int(image_size),) * 2 if isinstance(image_size, int) else tuple(int(v) for v in image_size))
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"image_size must be S or (S_h, S_w), got {image_size!r}")
        self.image_size: tuple[int, int] | None = None if size is None else (size[0], size[1])
        self.normalize = bool(normalize)
        self._candidates: dict[tuple[str, ...], list[list[str]]] = {}
        self._selections: dict[str, dict[int, str]] = {}
        self._selection_classes: tuple[str, ...] | None = None
        if num_synonyms is not None:  # validate m now, against the table's own classes
            self.table.candidates(list(self.table.entries), {}, num_synonyms)

    # ------------------------------------------------------------------ words and text
    def candidates(self, class_names: Sequence[str]) -> list[list[str]]:
        """``[class word, synonym 1, ..., synonym m]`` per class (validated against the table)."""
        key = tuple(str(n) for n in class_names)
        if key not in self._candidates:
            self._candidates[key] = self.table.candidates(key, self.class_words, self.num_synonyms)
        return [list(c) for c in self._candidates[key]]

    def synonyms_sha256(self, class_names: Sequence[str]) -> str:
        """Fingerprint of the candidate lists: SHA-256 of their canonical JSON ``{class: [words]}``."""
        names = [str(n) for n in class_names]
        return canonical_sha256(dict(zip(names, self.candidates(names))))

    def prompts(self, class_names: Sequence[str]) -> list[str]:
        """The prompt of each class's own word (what :meth:`forward` uses without selections)."""
        return [self.template.format(c[0]) for c in self.candidates(class_names)]

    def text_features(self, words: Sequence[str], clip: CLIPModel, normalize: bool | None = None) -> Tensor:
        """Text features ``(N, E)`` float32 of ``template.format(w)`` for each word, through CLIP's
        text cache (a frozen model encodes a list of prompts once). ``normalize``: default
        ``self.normalize``."""
        clip = require_clip(clip, "PoleSynonyms.text_features")
        feats = clip.encode_text([self.template.format(w) for w in words])
        return F.normalize(feats, dim=-1) if (self.normalize if normalize is None else normalize) else feats

    # ------------------------------------------------------------------ selection
    def input_size(self, clip: CLIPModel) -> tuple[int, int]:
        """CLIP's input size used for the masked images."""
        return self.image_size or clip.image_size

    def cache_header(self, class_names: Sequence[str], clip: CLIPModel, dataset: Mapping[str, Any]) -> dict[str, Any]:
        """The header a selection cache for these settings carries (and must match to be reused)."""
        names = [str(n) for n in class_names]
        return {
            "synonyms_sha256": self.synonyms_sha256(names),
            "candidates": dict(zip(names, self.candidates(names))),
            "template": self.template,
            "class_names": names,
            "dataset": dict(dataset),
            "clip": clip_identity(clip),
            "selection": {"mask": "pixel_product", "resize": self.resize,
                          "image_size": list(self.input_size(clip)), "version": SELECTION_VERSION},
        }

    @torch.no_grad()
    def select(self, images: Tensor | Sequence[Tensor], cams: Tensor | Sequence[Tensor],
               labels: Tensor | Sequence[Tensor], class_names: Sequence[str], clip: CLIPModel, *,
               batch_size: int = 32) -> list[dict[int, str]]:
        """Select a word for every present class of every image.

        Args:
            images: ``(B, 3, H, W)`` or ``B`` tensors ``(3, H_i, W_i)``, RGB in [0, 1].
            cams: ``(B, C, h, w)`` or ``B`` tensors ``(C, h_i, w_i)`` in [0, 1] (the baseline CAMs).
            labels: ``(B, C)`` multi-hot (or ``B`` tensors ``(C,)``); classes with label > 0.5 are scored.
            class_names: the ``C`` dataset class names.
            clip: the CLIP model (POLE: ViT-B/32, OpenAI weights).
            batch_size: masked images per CLIP forward pass.

        Returns:
            one dict per image: class index (0-based, foreground) → selected word.
        """
        clip = require_clip(clip, "PoleSynonyms.select")
        names = [str(n) for n in class_names]
        images, cams, labels = _as_items(images), _as_items(cams), _as_items(labels)
        if not len(images) == len(cams) == len(labels):
            raise ValueError(f"select got {len(images)} images, {len(cams)} CAM sets and {len(labels)} label "
                             f"vectors; they must match")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        candidates = self.candidates(names)
        flat = [w for words in candidates for w in words]
        text = F.normalize(self.text_features(flat, clip, normalize=False), dim=-1).split(
            [len(w) for w in candidates])
        size, device = self.input_size(clip), clip.mean.device
        results: list[dict[int, str]] = [{} for _ in images]
        pending: list[Tensor] = []
        rows: list[tuple[int, int]] = []

        def flush() -> None:
            batch = torch.cat(pending)
            emb = torch.cat([clip.encode_image(chunk) for chunk in batch.split(batch_size)])
            emb = F.normalize(emb.float(), dim=-1)
            for row, (i, c) in enumerate(rows):
                score = text[c].to(emb.device) @ emb[row]
                results[i][c] = candidates[c][int(score.argmax())]
            pending.clear()
            rows.clear()

        for i, (image, cam, label) in enumerate(zip(images, cams, labels)):
            if cam.dim() != 3 or cam.shape[0] != len(names) or label.shape != (len(names),):
                raise ValueError(f"image {i}: expected CAMs (C, h, w) and labels (C,) with C = {len(names)} "
                                 f"classes, got {tuple(cam.shape)} and {tuple(label.shape)}")
            present = torch.nonzero(label.detach().cpu() > 0.5).flatten().tolist()
            if not present:
                continue
            image = image.to(device=device, dtype=torch.float32)
            masked = mask_image(image, cam[present].to(device=device, dtype=torch.float32))
            pending.append(clip_input(masked, size, self.resize))
            rows.extend((i, c) for c in present)
            if len(rows) >= batch_size:
                flush()
        if rows:
            flush()
        return results

    def select_dataset(self, dataset: Any, cam_dir: str | os.PathLike[str], clip: CLIPModel, *,
                       batch_size: int = 32, progress: bool = True, dataset_id: str | None = None,
                       rebuild: bool = False, num_workers: int = 0, save_every: int = 1000
                       ) -> dict[str, dict[int, str]]:
        """Select words for a whole dataset, once: reuse and resume the cache, write it atomically.

        Args:
            dataset: a :class:`wsss_kit.WSSSDataset` without augmentation (samples ``image``,
                ``labels``, ``name``).
            cam_dir: folder of baseline CAMs ``<name>.npz`` (:func:`wsss_kit.data.artifacts.save_cams`).
            clip: the CLIP model.
            batch_size: images per step (and masked images per CLIP pass).
            progress: show the progress (a bar on a terminal, lines otherwise: :mod:`wsss_kit.progress`).
            dataset_id: identifies the dataset in the cache instead of its size and image ids.
            rebuild: ignore an existing cache (also one built for other settings) and start over.
            num_workers: DataLoader workers reading images.
            save_every: write the (partial) cache after this many new images.

        Returns:
            image id → {class index → word}; also kept for :meth:`forward`.

        Raises:
            SelectionCacheError: the cache was built for another table, template, dataset, CLIP
                model or selection procedure (each difference named), unless ``rebuild``.
            DataError: a CAM file is missing or malformed.
        """
        clip = require_clip(clip, "PoleSynonyms.select_dataset")
        names = tuple(str(n) for n in dataset.class_names)
        header = self.cache_header(names, clip, dataset_identity(dataset, dataset_id))
        info = {"synonyms_source": self.table.source, "clip_source": str(clip.source), "cams": str(cam_dir),
                "precision": str(clip.precision)}
        done: dict[str, dict[int, str]] = {}
        stored_complete = False
        if self.cache_path is not None and self.cache_path.exists() and not rebuild:
            doc = read_selection_cache(self.cache_path)
            check_header(self.cache_path, doc["header"], header)
            done, stored_complete = self._from_file(doc["selections"], names), doc["complete"]
        written = len(done)
        ids = getattr(dataset, "names", None)
        todo = [i for i in range(len(dataset)) if ids is None or str(ids[i]) not in done]
        cam_dir = Path(cam_dir)
        bar = Progress(len(dataset), "POLE synonym selection", initial=len(dataset) - len(todo), enabled=progress)
        unsaved = 0
        try:
            loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, num_workers=num_workers,
                                collate_fn=_keep_list)
            for batch in loader if todo else ():
                new = [s for s in batch if str(s["name"]) not in done]
                if new:
                    cams = [load_cams(cam_dir / f"{s['name']}.npz", len(names)) for s in new]
                    chosen = self.select([s["image"] for s in new], cams, [s["labels"] for s in new], names,
                                         clip, batch_size=batch_size)
                    for sample, words in zip(new, chosen):
                        done[str(sample["name"])] = words
                    unsaved += len(new)
                bar.update(len(batch))
                if self.cache_path is not None and unsaved >= save_every:
                    write_selection_cache(self.cache_path, header, self._to_file(done, names), complete=False,
                                          info=info)
                    unsaved = 0
        finally:
            bar.close()
        if self.cache_path is not None and (len(done) != written or not stored_complete):
            write_selection_cache(self.cache_path, header, self._to_file(done, names), complete=True, info=info)
        self._selections, self._selection_classes = done, names
        return {k: dict(v) for k, v in done.items()}

    def load_cache(self, path: str | os.PathLike[str] | None = None) -> dict[str, dict[int, str]]:
        """Read selections from ``path`` (default: ``cache``) for :meth:`forward`.

        Checks that the cache was built with this strategy's candidate words and template (not the
        dataset or CLIP model, which are not at hand here); a partial cache is fine.
        """
        path = Path(path).expanduser() if path is not None else self.cache_path
        if path is None:
            raise ValueError("PoleSynonyms.load_cache: no path given and the strategy has no cache=")
        doc = read_selection_cache(path)
        names = tuple(str(n) for n in doc["header"].get("class_names", []))
        expected = {"synonyms_sha256": self.synonyms_sha256(names),
                    "candidates": dict(zip(names, self.candidates(names))),
                    "template": self.template}
        check_header(path, doc["header"], expected, fields=("synonyms_sha256", "template"))
        self._selections, self._selection_classes = self._from_file(doc["selections"], names), names
        return {k: dict(v) for k, v in self._selections.items()}

    @property
    def selections(self) -> dict[str, dict[int, str]]:
        """The selections in memory (from :meth:`select_dataset` or :meth:`load_cache`): image id →
        {class index → word}."""
        return {k: dict(v) for k, v in self._selections.items()}

    @staticmethod
    def _from_file(selections: Mapping[str, Mapping[str, str]], names: Sequence[str]) -> dict[str, dict[int, str]]:
        index = {n: i for i, n in enumerate(names)}
        return {img: {index[c]: w for c, w in chosen.items()} for img, chosen in selections.items()}

    @staticmethod
    def _to_file(selections: Mapping[str, Mapping[int, str]], names: Sequence[str]) -> dict[str, dict[str, str]]:
        return {img: {names[c]: chosen[c] for c in sorted(chosen)} for img, chosen in selections.items()}

    # ------------------------------------------------------------------ prompt strategy
    def forward(self, class_names: Sequence[str], clip: CLIPModel | None = None,
                image_names: Sequence[str] | None = None, labels: Tensor | None = None,
                selections: Sequence[Mapping[int, str]] | None = None, **context: Any) -> Tensor:
        """Text features of the selected prompts.

        Args:
            class_names: the ``C`` dataset class names the selections were made for (or names that
                give the same candidate words, e.g. CLIMS's ``player`` for VOC's ``person``).
            clip: the CLIP model.
            image_names: ``B`` image ids, looked up in the selections in memory, else in ``cache``.
            labels: ``(B, C)`` multi-hot; when given, only classes with label > 0.5 use their
                selection, and a present class without one is an error.
            selections: ``B`` dicts class index → word (from :meth:`select`), instead of ``image_names``.

        Returns:
            ``(C, E)`` features of the class words' prompts when neither ``image_names`` nor
            ``selections`` is given (CLIMS's prompts), else ``(B, C, E)``: the selected word's prompt
            for present classes and the class word's prompt for the others (absent classes get a
            finite, meaningful feature rather than zeros, so that normalising never divides by 0).
            Unit-norm if ``normalize``.
        """
        clip = require_clip(clip, "PoleSynonyms.forward")
        names = [str(n) for n in class_names]
        candidates = self.candidates(names)
        offsets = torch.tensor([0] + [len(w) for w in candidates[:-1]]).cumsum(0)
        feats = self.text_features([w for words in candidates for w in words], clip)
        if image_names is None and selections is None:
            return feats[offsets.to(feats.device)]
        if selections is None:
            assert image_names is not None  # returned above when both are None
            selections = self._lookup(image_names, names)
        index = offsets.repeat(len(selections), 1)
        present = None if labels is None else (labels.detach().cpu() > 0.5)
        if present is not None:
            check_shape(present, "B C", "labels", sizes={"B": index.shape[0], "C": index.shape[1]})
        for b, chosen in enumerate(selections):
            for c, word in chosen.items():
                if present is not None and not present[b, c]:
                    continue
                if word not in candidates[c]:
                    raise ValueError(f"selection for image {b}, class {names[c]!r} is {word!r}, not one of its "
                                     f"candidates {candidates[c]}")
                index[b, c] = offsets[c] + candidates[c].index(word)
            if present is not None:
                missing = [names[c] for c in present[b].nonzero().flatten().tolist() if c not in chosen]
                if missing:
                    who = image_names[b] if image_names is not None else b
                    raise ValueError(f"image {who!r}: class(es) {missing} are labelled present but have no "
                                     f"selected word (were the selections made with other labels?)")
        return feats[index.to(feats.device)]

    def _lookup(self, image_names: Sequence[str], names: Sequence[str]) -> list[dict[int, str]]:
        if not self._selections and self.cache_path is not None:
            if not self.cache_path.exists():
                raise SelectionCacheError(f"selection cache {self.cache_path} does not exist; run "
                                          f"PoleSynonyms.select_dataset(dataset, cam_dir, clip) first")
            self.load_cache()
        # the class names may be spelt differently (CLIMS passes "player" for "person") as long as
        # they give the same candidate words in the same order
        if self._selection_classes is not None and tuple(names) != self._selection_classes and \
                self.candidates(names) != self.candidates(self._selection_classes):
            raise ValueError(f"the selections were made for classes {list(self._selection_classes)}, but "
                             f"forward got {list(names)}")
        out = []
        for name in image_names:
            if str(name) not in self._selections:
                where = f"selection cache {self.cache_path}" if self.cache_path else "the selections in memory"
                raise KeyError(f"image {name!r} has no synonym selection in {where} "
                               f"({len(self._selections)} images); run select_dataset on its dataset")
            out.append(self._selections[str(name)])
        return out

    # ------------------------------------------------------------------ analysis
    def frequencies(self, class_names: Sequence[str],
                    selections: Mapping[str, Mapping[int, str]] | None = None) -> dict[str, dict[str, float]]:
        """How often each candidate was chosen, per class (POLE's Fig. 4 / S3): class name → {word →
        fraction of that class's instances}; classes never seen are left out."""
        names = [str(n) for n in class_names]
        candidates = self.candidates(names)
        counts = [dict.fromkeys(words, 0) for words in candidates]
        for chosen in (self._selections if selections is None else selections).values():
            for c, word in chosen.items():
                counts[c][word] = counts[c].get(word, 0) + 1
        out = {}
        for name, count in zip(names, counts):
            total = sum(count.values())
            if total:
                out[name] = {w: n / total for w, n in count.items()}
        return out

    def extra_repr(self) -> str:
        return (f"synonyms={self.table.source}, template={self.template!r}, num_synonyms={self.num_synonyms}, "
                f"cache={str(self.cache_path) if self.cache_path else None!r}, resize={self.resize!r}")
