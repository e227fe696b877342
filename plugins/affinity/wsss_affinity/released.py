"""The checkpoints the random-walk refiners reproduce with, as data (entry-point group
``wsss_kit.released``). Their ImageNet initialisations (``resnet38_imagenet`` for PSA's AffinityNet)
are declared by the deeplab plugin, whose WideResNet38 they initialise."""

from __future__ import annotations

from wsss_kit.weights import UNKNOWN_SHA_NOTE, ReleasedCheckpoint

__all__ = ["RANDOM_WALK_RELEASED"]

RANDOM_WALK_RELEASED: dict[str, ReleasedCheckpoint] = {
    # The random-walk refiners' trained networks.
    "psa_res38_aff": ReleasedCheckpoint(
        "res38_aff.pth",
        "the PSA GitHub repository (jiwoon-ahn/psa), README link to the trained AffinityNet (ResNet-38)",
        "refiners/psa_rw (checkpoint=; converter 'psa_affinity_net')",
        None,
        "PSA's AffinityNet trained on VOC 2012 train_aug (PSA's own CAMs, alphas 4/32). MCTformer "
        "trains its own AffinityNet on its CAMs with the same code and releases none." + UNKNOWN_SHA_NOTE,
    ),
}
