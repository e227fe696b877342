"""``embedded_claims``: the seed papers' claims that no paper table carries, as rows of the embedded world.

Runnable only with ``--embedded`` (``python -m benchmarks reproduce embedded_claims --embedded``): every
run is a VOC config reduced to the synthetic world with its pretrained foundations
(:mod:`benchmarks.reproduce.embedded`). Each claim compares two rows (:class:`~.schema.Claim`);
``results.md`` lists it as held or not, whichever way it goes. POLE's Tables 1/4 and WeakCLIP's
Tables 1/4 are the existing tables run with ``--embedded``.
"""

from __future__ import annotations

from .runs import (
    RANDOM_WALK_STAGES,
    SEED_STAGES,
    clims_run,
    deeplab_run,
    mct_psa_run,
    weakclip_run,
)
from .schema import Claim, RegionFraction, Row, Run, Table

__all__ = ["EMBEDDED_TABLES"]

PAPER = "the seed papers' claims (IRN, MCTformer, CLIMS, PSA, WeakCLIP), on the embedded world"
WORLD = "synthetic"

# The baseline CAM network: the same run as the world's stand-in for IRN's res50_cam.pth
# (benchmarks.reproduce.embedded.EMBEDDED_RUNS), so CLIMS starts from it and is compared with it.
_BASELINE = Run("world_res50_cam", "resnet_cam/voc.yaml", SEED_STAGES,
                note="resnet_cam (IRN's recipe) from released:wsss_world_resnet50: CAMs, seeds at 0.15; the "
                     "network CLIMS starts from")
_SCRATCH = Run("resnet_cam_scratch", "resnet_cam/voc.yaml", SEED_STAGES,
               overrides=("cam.model.weights=null", "cam.model.freeze_stem=false", "cam.model.frozen_stages=0",
                          "cam.model.fixed_bn=false"),
               note="the same network from random initialisation (nothing frozen, batch-statistics BatchNorm: "
                    "a frozen random stem and running statistics of nothing would not be a fair scratch run)")
_IRN = Run("irn", "random_walk/irn_voc.yaml", RANDOM_WALK_STAGES,
           note="IRN: resnet_cam CAMs, seeds at 0.15, IRN's random walk (boundary + displacement)")
_MCT = mct_psa_run()
_CLIMS = clims_run("clims", "pole/table1_manual_photo.yaml")
_WEAKCLIP = weakclip_run("weakclip", "weakclip/voc.yaml", "mct_psa")
# The retrained head of each pseudo-mask source: the same runs (names, configs) as WeakCLIP Table 2 and
# POLE Table 3, so they are shared with those tables; IRN's masks get CLIMS's head.
_HEADS = (("IRN (CAMs + IRN walk)", deeplab_run("deeplab_irn", "deeplab/pole_v2_r101.yaml", "irn")),
          ("CLIMS (+ IRN walk)", deeplab_run("deeplab_clims", "deeplab/pole_v2_r101.yaml", "clims")),
          ("MCTformer + PSA", deeplab_run("deeplab_mct", "deeplab/mctformer_v1_wr38.yaml", "mct_psa")),
          ("WeakCLIP", deeplab_run("deeplab_weakclip", "deeplab/weakclip_v1_wr38.yaml", "weakclip")))
_HEAD_NOTE = ("the source's own retrain config on the world ResNet (DeepLabV2-R101 config: DeepLabV2; "
              "DeepLabV1-ResNet38 configs: one dilated classifier, the world has no WR38), trained on the source's "
              "train pseudo masks, scored on val")

_WATER = RegionFraction("water", "boat", "seeds/eval")
_FRACTION_NOTE = ("water pixels of val images with a boat that the seeds label 'boat', over all their water "
                  "pixels (Scene.water; water is background in the masks)")


def _row(label: str, run: str, result: str | RegionFraction, paper: float | None = None, metric: str = "mIoU",
         note: str = "", **kw) -> Row:
    return Row(label, metric, paper, WORLD, "val", run, result, train_split="train", note=note, **kw)


def _claims_table() -> Table:
    rows = [
        _row("ResNet CAM (world ResNet-50) / CAMs", "world_res50_cam", "cams.eval.miou", 48.3,
             note="best threshold of the CAM sweep; paper: IRN's ResNet-50 CAMs (ImageNet), VOC train"),
        _row("ResNet CAM from scratch / CAMs", "resnet_cam_scratch", "cams.eval.miou",
             note="best threshold of the CAM sweep"),
        _row("MCTformer-V2 / CAMs", "mct_psa", "cams.eval.miou", 61.7,
             note="best threshold of the CAM sweep; paper: MCTformer-V2, VOC train"),
        _row("ResNet CAM baseline / seeds at 0.15", "world_res50_cam", "seeds.eval.miou", 48.3,
             note="CLIMS's baseline and threshold"),
        _row("CLIMS / seeds at 0.15", "clims", "seeds.eval.miou", 56.6, multiscale=True,
             note="CLIMS from the baseline network (as CLIMS from IRN's res50_cam.pth)"),
        _row("ResNet CAM baseline / water labelled boat", "world_res50_cam", _WATER, metric="fraction",
             note=_FRACTION_NOTE),
        _row("CLIMS / water labelled boat", "clims", _WATER, metric="fraction", note=_FRACTION_NOTE),
        _row("MCTformer-V2 / seeds", "mct_psa", "seeds.eval.miou", 61.7, note="seeds at the sweep's best threshold"),
        _row("MCTformer-V2 + PSA walk / pseudo masks", "mct_psa", "pseudo_masks.eval.miou", 69.1, random_walk=True,
             note="PSA's AffinityNet: a narrow WR38 from scratch (the world has no WR38)"),
        _row("IRN / seeds at 0.15", "irn", "seeds.eval.miou", 48.3, multiscale=True),
        _row("IRN random walk / pseudo masks", "irn", "pseudo_masks.eval.miou", 66.5, multiscale=True,
             random_walk=True),
        _row("WeakCLIP / pseudo masks", "weakclip", "pseudo_masks.eval.miou", 77.2, crf=True,
             note="on MCTformer-V2's seeds"),
    ]
    runs = [_BASELINE, _SCRATCH, _IRN, _MCT, _CLIMS, _WEAKCLIP]
    for label, run in _HEADS:
        runs.append(run)
        rows.append(_row(f"head from {label} masks / val", run.name, "eval.eval.miou", note=_HEAD_NOTE))
    claims = (
        Claim("a CAM network from a pretrained backbone beats one from scratch",
              "ResNet CAM (world ResNet-50) / CAMs", "ResNet CAM from scratch / CAMs"),
        Claim("MCTformer-V2's CAMs reach the ResNet CAM's level (the paper: above it)",
              "MCTformer-V2 / CAMs", "ResNet CAM (world ResNet-50) / CAMs"),
        Claim("CLIMS lowers the false 'boat' activation on water",
              "ResNet CAM baseline / water labelled boat", "CLIMS / water labelled boat"),
        Claim("CLIMS raises CAM mIoU over its baseline", "CLIMS / seeds at 0.15", "ResNet CAM baseline / seeds at 0.15"),
        Claim("PSA's random walk beats its seeds", "MCTformer-V2 + PSA walk / pseudo masks", "MCTformer-V2 / seeds"),
        Claim("IRN's random walk beats its seeds", "IRN random walk / pseudo masks", "IRN / seeds at 0.15"),
        Claim("WeakCLIP's pseudo masks beat its seeds (MCTformer-V2's)", "WeakCLIP / pseudo masks",
              "MCTformer-V2 / seeds"),
        Claim("the head from WeakCLIP's masks beats the head from MCTformer + PSA's (WeakCLIP Table 2)",
              "head from WeakCLIP masks / val", "head from MCTformer + PSA masks / val"),
    )
    return Table("embedded_claims", "The seed papers' claims on the embedded world (CAMs, seeds, random walks, "
                 "CLIMS's water-boat activation, retrained heads)", PAPER, tuple(runs), tuple(rows),
                 "the synthetic world (no data to download)", (), embedded_only=True, claims=claims)


EMBEDDED_TABLES: tuple[Table, ...] = (_claims_table(),)
