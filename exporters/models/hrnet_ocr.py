"""HRNet-OCR as released with the OCR paper (HRNet-Semantic-Segmentation, branch HRNet-OCR).

The network itself lives in exporters/hrnet_ocr.py and its variant table in exporters/variants.py;
this module is the family's entry in the FAMILIES table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from exporters.models.base import ModelFamily, Normalisation, OutputContract
from exporters.variants import BackboneConfig, OcrConfig, StageConfig
from ocr_deploy.errors import CheckpointError
from ocr_deploy.meta import IMAGENET_MEAN, IMAGENET_STD, NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from exporters.hrnet_ocr import HRNetOCR

# Without an experiment YAML saying otherwise, like every released model.
DEFAULT_ALIGN_CORNERS = True
# forward() returns [aux, out] at 1/4 of the input: two stride-2 convs before the HRNet stages.
_SEGMENTATION_INDEX, _OUTPUT_STRIDE = 1, 4


class HRNetOCRFamily(ModelFamily[OcrConfig]):
    key = "hrnet_ocr"
    title = "HRNet-OCR"
    config_type = OcrConfig
    example_key = "cls_head.weight"
    required_keys = ("conv1.weight", "layer1.0.conv1.weight", "transition1.0.0.weight",
                     "conv3x3_ocr.0.weight", "cls_head.weight",
                     "ocr_distri_head.object_context_block.f_pixel.0.weight")
    look_alikes = (
        (re.compile(r"^last_layer\."), "a plain HRNetV2 segmentation checkpoint (no OCR head)"),
        (re.compile(r"^decode_head\."), "an mmsegmentation checkpoint (decode_head. names) of "
         "a network other than OCRNet on HRNetV2"),
        (re.compile(r"^backbone\."), "an openseg.pytorch or mmsegmentation checkpoint "
         "(backbone. names) of a network other than HRNet + OCR"),
        (re.compile(r"^(incre_modules|final_layer|classifier)\."),
         "an HRNet classification checkpoint"),
        (re.compile(r"^(fc|layer4)\."), "a ResNet-style checkpoint"),
    )

    def infer_config(self, weights: Mapping[str, torch.Tensor], *,
                     align_corners: bool | None = None) -> OcrConfig:
        backbone = infer_backbone(weights)
        pixel_key = "ocr_distri_head.object_context_block.f_pixel.0.weight"
        return OcrConfig(
            backbone=backbone,
            num_classes=int(weights["cls_head.weight"].shape[0]),
            mid_channels=int(weights["conv3x3_ocr.0.weight"].shape[0]),
            key_channels=int(weights[pixel_key].shape[0]),
            align_corners=DEFAULT_ALIGN_CORNERS if align_corners is None else align_corners)

    def build(self, config: OcrConfig) -> HRNetOCR:
        from exporters.hrnet_ocr import HRNetOCR

        return HRNetOCR(config).eval()

    def network_spec(self, config: OcrConfig) -> NetworkSpec:
        return NetworkSpec(family=self.key, title=self.title, variant=config.variant,
                           num_classes=config.num_classes, align_corners=config.align_corners,
                           settings={"mid_channels": config.mid_channels,
                                     "key_channels": config.key_channels})

    def output_contract(self, spec: NetworkSpec) -> OutputContract:
        return OutputContract(segmentation_index=_SEGMENTATION_INDEX, output_stride=_OUTPUT_STRIDE,
                              align_corners=spec.align_corners,
                              normalisation=Normalisation(IMAGENET_MEAN, IMAGENET_STD))

    def example_config(self, *, num_classes: int) -> OcrConfig:
        return OcrConfig.from_variant("tiny", num_classes=num_classes, mid_channels=32,
                                      key_channels=16)

    def classifiers(self, network: nn.Module) -> dict[int, nn.Conv2d]:
        return {0: network.aux_head[3], 1: network.cls_head}


def indices(weights: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    """The distinct integers the regex `pattern`'s group 1 matches in the keys, sorted."""
    regex = re.compile(pattern)
    return sorted({int(match.group(1)) for key in weights if (match := regex.match(key))})


def infer_backbone(weights: Mapping[str, torch.Tensor], prefix: str = "") -> BackboneConfig:
    """An HRNet backbone's layout from tensor shapes, its keys under `prefix` (e.g. 'backbone.')."""
    at = re.escape(prefix)
    backbone = BackboneConfig(
        stage1_blocks=len(indices(weights, rf"^{at}layer1\.(\d+)\.")),
        stage1_channels=int(weights[f"{prefix}layer1.0.conv1.weight"].shape[0]),
        stage2=_infer_stage(weights, 2, prefix), stage3=_infer_stage(weights, 3, prefix),
        stage4=_infer_stage(weights, 4, prefix))
    branch0 = int(weights[f"{prefix}transition1.0.0.weight"].shape[0])
    if branch0 != backbone.stage2.channels[0]:
        raise CheckpointError(f"inconsistent checkpoint: transition1 makes {branch0} channels "
                              f"but stage2 branch 0 has {backbone.stage2.channels[0]}")
    return backbone


def _infer_stage(weights: Mapping[str, torch.Tensor], stage: int, prefix: str) -> StageConfig:
    at = re.escape(f"{prefix}stage{stage}")
    modules = indices(weights, rf"^{at}\.(\d+)\.branches\.")
    branches = indices(weights, rf"^{at}\.0\.branches\.(\d+)\.")
    if not modules or not branches:
        raise CheckpointError(f"the checkpoint has no {prefix}stage{stage} weights; it is not a "
                              "complete HRNet state dict")
    blocks = tuple(len(indices(weights, rf"^{at}\.0\.branches\.{b}\.(\d+)\."))
                   for b in branches)
    channels = tuple(int(weights[f"{prefix}stage{stage}.0.branches.{b}.0.conv1.weight"].shape[0])
                     for b in branches)
    return StageConfig(len(modules), blocks, channels)


FAMILY = HRNetOCRFamily()
