"""The released checkpoints, as data: the authors' files users download into :func:`weights_dir`, and
the embedded world's pretrained foundations shipped inside the package (:data:`PACKAGED_DIR`).

The core declares the method-neutral entries (OpenAI's CLIPs, the embedded world's shipped files);
each plugin declares its methods' checkpoints in the entry-point group :data:`RELEASED_GROUP`
(:mod:`wsss_kit.catalog` gathers them), and :func:`register_released` adds one in-process."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog, CatalogView
from ..errors import WeightsError

__all__ = ["PACKAGED_DIR", "RELEASED", "RELEASED_CATALOG", "RELEASED_GROUP", "UNKNOWN_SHA_NOTE", "ReleasedCheckpoint",
           "ReleasedInfo", "list_released", "packaged_dir", "register_released", "released_path", "sha256_of",
           "weights_dir"]

PACKAGED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
"""``wsss_kit/pretrained/``: the package-data folder of the shipped (``packaged``) checkpoints."""


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """A released checkpoint: an authors' file that users download themselves and put into
    :func:`weights_dir`, or (``packaged``) a file shipped inside wsss_kit (:func:`packaged_dir`)."""

    filename: str
    """Name the file must have inside :func:`weights_dir` (or :func:`packaged_dir` when ``packaged``)."""
    source: str
    """Where users obtain it (project page or repository, in words)."""
    fits: str
    """The architecture / plugin it is meant for."""
    sha256: str | None = None
    """Hex SHA-256 of the file, or a prefix of it (torch.hub's 8-digit convention); None if unknown."""
    notes: str = ""
    hub_tags: tuple[str, ...] = ()
    """Hub tags (``open_clip:<model>/<tag>``, ``timm:<model>.<tag>``) that name the same weights."""
    packaged: bool = False
    """Shipped as package data in :func:`packaged_dir`: nothing to download, found offline,
    ``WSSS_WEIGHTS_DIR`` plays no part."""
    reproduce: str = ""
    """The command that rebuilds the file from a seed (packaged entries), e.g.
    ``python -m benchmarks pretrain clip``."""


UNKNOWN_SHA_NOTE = " SHA-256 unknown: the authors share the file (Google Drive) without a checksum."
"""Sentence plugins append to the notes of an authors' file published without a checksum."""

_CORE_RELEASED: dict[str, ReleasedCheckpoint] = {
    # Method-neutral entries only: each plugin declares the checkpoints of its methods (entry-point
    # group wsss_kit.released, e.g. plugins/cams/wsss_cams/released.py).
    "clip_vit_b16_openai": ReleasedCheckpoint(
        "ViT-B-16.pt",
        "OpenAI CLIP (github openai/CLIP), model 'ViT-B/16'",
        "CLIP access (open_clip 'ViT-B-16'), refiners/weakclip",
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        "A TorchScript archive; open_clip reads it given the path. Equivalent tag: "
        "open_clip:ViT-B-16/openai. SHA-256: the hash part of OpenAI's download URL "
        "(openaipublic.azureedge.net/clip/models/<sha256>/ViT-B-16.pt), which clip.load checks in full.",
        ("open_clip:ViT-B-16/openai",),
    ),
    "clip_vit_b32_openai": ReleasedCheckpoint(
        "ViT-B-32.pt",
        "OpenAI CLIP (github openai/CLIP), model 'ViT-B/32'",
        "CLIP access (open_clip 'ViT-B-32'), cams/clims, prompts/pole_synonyms",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        "A TorchScript archive; open_clip reads it given the path. Equivalent tag: "
        "open_clip:ViT-B-32/openai. SHA-256: the hash part of OpenAI's download URL "
        "(openaipublic.azureedge.net/clip/models/<sha256>/ViT-B-32.pt), which clip.load checks in full.",
        ("open_clip:ViT-B-32/openai",),
    ),
    # The embedded world's foundations: trained by the repo's own scripts on the synthetic world's
    # pretraining split and shipped inside the package (float16 state dicts, see save_packaged_state_dict).
    "wsss_synthetic_clip": ReleasedCheckpoint(
        "wsss_synthetic_clip.pt",
        "shipped with wsss_kit; reproduce with python -m benchmarks pretrain clip",
        "CLIP access (open_clip 'wsss-synthetic-clip'), refiners/weakclip, cams/clims, cams/pole, "
        "prompts/pole_synonyms on the embedded world",
        "7ca7cbb18b22c9470be6fbddae754c9dd9fa697d77335ae56dc68d536983b5e2",
        "A tiny CLIP for the synthetic world: the world ViT as its locked image tower, the text tower and "
        "projection trained on the pretraining split's captioned scenes (contrastive + a sigmoid loss per "
        "scene tag, also on cut-out views); open_clip state dict in float16, loaded as float32. Held-out "
        "zero-shot class mAP 0.978 / 0.973, water AP 1.000 (val seed 123 / test seed 7). SHA-256 of the "
        "shipped file; "
        "python -m benchmarks pretrain clip rebuilds it from seed 0. Model card: docs/embedded_models.md.",
        packaged=True,
        reproduce="python -m benchmarks pretrain clip",
    ),
    "wsss_world_resnet50": ReleasedCheckpoint(
        "wsss_world_resnet50.pt",
        "shipped with wsss_kit; reproduce with python -m benchmarks pretrain resnet",
        "timm 'wsss_world_resnet50' (ResNet-50 layout at a quarter width): cams/resnet_cam, cams/clims, "
        "cams/pole, refiners/irn_rw, heads/deeplab_v2_r101 (style='pytorch'), heads/smp "
        "(encoder 'tu-wsss_world_resnet50')",
        "fd3504d4edf2eff33f3c22d63bf108b0b9f6d3ea100b1f2e8133f187786184f0",
        "The embedded world's 'ImageNet' ResNet: a multi-label classifier of the 20 scene tags "
        "(wsss_kit.data.captions.ATTRIBUTES) pretrained on the synthetic world's pretraining split; timm state "
        "dict (classifier fc.* included) in float16, loaded as float32. SHA-256 of the shipped file; "
        "python -m benchmarks pretrain resnet rebuilds it from seed 0. "
        "Model card: docs/embedded_models.md.",
        packaged=True,
        reproduce="python -m benchmarks pretrain resnet",
    ),
    "wsss_world_vit": ReleasedCheckpoint(
        "wsss_world_vit.pt",
        "shipped with wsss_kit; reproduce with python -m benchmarks pretrain vit",
        "timm 'wsss_world_vit' (DeiT-style ViT, 128 px, patch 8): cams/mctformer_v1, cams/mctformer_v2",
        "d9d0a3b943189ef94f1a704b0406e1f2497bf14a271cf1a0993eea53c8eadd24",
        "The embedded world's 'ImageNet' DeiT: a multi-label classifier pretrained on the synthetic world's "
        "pretraining split; timm state dict (classifier head.* included) in float16, loaded as float32. "
        "SHA-256 of the shipped file; python -m benchmarks pretrain vit rebuilds it from seed 0. "
        "Model card: docs/embedded_models.md.",
        packaged=True,
        reproduce="python -m benchmarks pretrain vit",
    ),
}

RELEASED_GROUP = "wsss_kit.released"
"""Entry-point group in which a plugin declares its released checkpoints: each entry point names a
mapping ``{name: ReleasedCheckpoint}`` (or a function returning one) in the plugin."""

RELEASED_CATALOG: Catalog[ReleasedCheckpoint] = Catalog(
    "released checkpoint", RELEASED_GROUP, ReleasedCheckpoint, _CORE_RELEASED, error_type=WeightsError)
"""Every released checkpoint: the core's method-neutral ones, the plugins' and in-process ones."""

RELEASED: CatalogView[ReleasedCheckpoint] = CatalogView(RELEASED_CATALOG)
"""Name -> :class:`ReleasedCheckpoint`, read like a dict (plugins' entries included, imported on first
use); assigning an entry registers it in this process (see :func:`register_released`)."""


def register_released(name: str, entry: ReleasedCheckpoint, *, override: bool = False) -> None:
    """Declare a released checkpoint in this process, usable as ``released:<name>`` at once.

    Raises:
        WeightsError: ``name`` exists already (naming the distribution that declares it) and
            ``override`` is false, or ``entry`` is not a :class:`ReleasedCheckpoint`.
    """
    RELEASED_CATALOG.register(name, entry, override=override)


@dataclass(frozen=True)
class ReleasedInfo:
    """One row of :func:`list_released`: a :data:`RELEASED` entry with its name and where its file is."""

    name: str
    """The ``released:<name>`` spec's name."""
    filename: str
    fits: str
    sha256: str | None
    """Hex SHA-256 (or a prefix of it); None when unknown."""
    source: str
    notes: str
    hub_tags: tuple[str, ...]
    packaged: bool = False
    """Shipped inside wsss_kit (package data) rather than downloaded."""
    path: str = ""
    """Where the file is (packaged) or is expected (:func:`weights_dir`)."""
    present: bool = False
    """Whether that file exists."""
    provider: str = ""
    """The distribution (and version) that declares the entry, e.g. ``wsss-kit-cams 0.1.0``."""

    @property
    def spec(self) -> str:
        return f"released:{self.name}"


def list_released(pattern: str = "*") -> list[ReleasedInfo]:
    """The checkpoints :data:`RELEASED` knows, sorted by name (like ``timm.list_pretrained``), each with
    the path of its file and whether it is there (shipped files: in :func:`packaged_dir`).

    ``pattern`` is a shell-style filter on the name, e.g. ``"clip_*"``.
    """
    rows = []
    for row in RELEASED_CATALOG.entries():
        if fnmatch.fnmatchcase(row.name, pattern):
            e = row.value
            path = released_path(e)
            rows.append(ReleasedInfo(row.name, e.filename, e.fits, e.sha256, e.source, e.notes, e.hub_tags,
                                     e.packaged, str(path), path.is_file(), row.provider))
    return rows


def weights_dir() -> Path:
    """Folder holding released checkpoints: ``$WSSS_WEIGHTS_DIR`` or ``~/.cache/wsss_kit/weights``."""
    env = os.environ.get("WSSS_WEIGHTS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wsss_kit" / "weights"


def packaged_dir() -> Path:
    """Folder of the checkpoints shipped with wsss_kit: :data:`PACKAGED_DIR` (read at call time)."""
    return PACKAGED_DIR


def released_path(entry: ReleasedCheckpoint) -> Path:
    """Where ``entry``'s file lives: :func:`packaged_dir` for shipped ones, else :func:`weights_dir`."""
    return (packaged_dir() if entry.packaged else weights_dir()) / entry.filename


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

