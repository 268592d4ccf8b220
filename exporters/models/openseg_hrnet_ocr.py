"""HRNet-W48 with an OCR head from openseg.pytorch (the OCR authors' codebase): `hrnet_w48_ocr`,
`hrnet_w48_ocr_b` (the 256-channel head) and `hrnet_w48_asp_ocr` (two families: their heads'
keys differ).

The networks live in exporters/openseg_hrnet_ocr.py; this module holds the families' entries in
the FAMILIES table. openseg feeds BGR frames /255 with ImageNet mean/std taken in BGR order,
resizes with align_corners=True everywhere, and its released files use InPlace-ABN (|w| + eps
scales, converted at load time; leaky ReLU 0.01 in the head).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from exporters.models.base import ChannelOrder, ModelFamily, Normalisation, OutputContract
from exporters.models.hrnet_ocr import infer_backbone
from exporters.variants import (
    OPENSEG_HEADS,
    VARIANTS,
    BatchNormKind,
    OpensegAspOcrConfig,
    OpensegOcrConfig,
)
from ocr_deploy.meta import IMAGENET_MEAN, IMAGENET_STD, NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from exporters.openseg_hrnet_ocr import OpensegHRNetASPOCR, OpensegHRNetOCR

Config = TypeVar("Config", OpensegOcrConfig, OpensegAspOcrConfig)

# openseg's HRNet configs: BGR, divide by 255, ImageNet mean/std listed in BGR channel order.
OPENSEG_HRNET_NORMALISATION = Normalisation.from_framework(
    channels=ChannelOrder.bgr, divisor=255.0, mean=IMAGENET_MEAN, std=IMAGENET_STD)
# forward() returns (aux, out); ours keeps them at 1/4, before openseg's final upsampling.
_SEGMENTATION_INDEX, _OUTPUT_STRIDE = 1, 4
DEFAULT_ALIGN_CORNERS = True
_BACKBONE_KEYS = ("backbone.layer1.0.conv1.weight", "backbone.transition1.0.0.weight",
                  "backbone.stage2.0.branches.0.0.conv1.weight")


class _OpensegHRNetFamily(ModelFamily[Config]):
    """What openseg's HRNet models share: backbone, normalisation, resizes, output contract."""

    framework = "openseg.pytorch"
    # The first norm + activation of the head: Sequential(BN, ReLU) under torchbn.
    norm_key: str

    def bn_type(self, weights: Mapping[str, Any]) -> BatchNormKind:
        nested = f"{self.norm_key}.0.weight" in weights
        return BatchNormKind.torchbn if nested else BatchNormKind.inplace_abn

    @staticmethod
    def final_align_corners(align_corners: bool | None) -> bool:
        return DEFAULT_ALIGN_CORNERS if align_corners is None else align_corners

    def output_contract(self, spec: NetworkSpec) -> OutputContract:
        return OutputContract(segmentation_index=_SEGMENTATION_INDEX, output_stride=_OUTPUT_STRIDE,
                              align_corners=spec.align_corners,
                              normalisation=OPENSEG_HRNET_NORMALISATION)

    def classifiers(self, network: nn.Module) -> dict[int, nn.Conv2d]:
        return {0: network.aux_head[2], 1: network.cls_head}


class OpensegHRNetOCRFamily(_OpensegHRNetFamily[OpensegOcrConfig]):
    key = "openseg_hrnet_ocr"
    title = "openseg.pytorch HRNet-OCR"
    framework_models = tuple(OPENSEG_HEADS)
    config_type = OpensegOcrConfig
    example_key = "conv3x3.0.weight"
    norm_key = "conv3x3.1"
    _pixel_key = "ocr_distri_head.object_context_block.f_pixel.0.weight"
    required_keys = (*_BACKBONE_KEYS, "conv3x3.0.weight", _pixel_key, "cls_head.weight",
                     "aux_head.0.weight")

    def infer_config(self, weights: Mapping[str, torch.Tensor], *,
                     align_corners: bool | None = None) -> OpensegOcrConfig:
        return OpensegOcrConfig(
            backbone=infer_backbone(weights, "backbone."),
            num_classes=int(weights["cls_head.weight"].shape[0]),
            mid_channels=int(weights["conv3x3.0.weight"].shape[0]),
            key_channels=int(weights[self._pixel_key].shape[0]),
            aux_channels=int(weights["aux_head.0.weight"].shape[0]),
            bn_type=self.bn_type(weights), align_corners=self.final_align_corners(align_corners))

    def build(self, config: OpensegOcrConfig) -> OpensegHRNetOCR:
        from exporters.openseg_hrnet_ocr import OpensegHRNetOCR

        return OpensegHRNetOCR(config).eval()

    def network_spec(self, config: OpensegOcrConfig) -> NetworkSpec:
        return NetworkSpec(family=self.key, title=self.title, variant=config.variant,
                           num_classes=config.num_classes, align_corners=config.align_corners,
                           settings={"model": config.model_name,
                                     "mid_channels": config.mid_channels,
                                     "key_channels": config.key_channels,
                                     "aux_channels": config.aux_channels,
                                     "bn_type": config.bn_type.value})

    def example_config(self, *, num_classes: int) -> OpensegOcrConfig:
        return OpensegOcrConfig(VARIANTS["tiny"], num_classes, mid_channels=32, key_channels=16,
                                aux_channels=24)


class OpensegHRNetASPOCRFamily(_OpensegHRNetFamily[OpensegAspOcrConfig]):
    key = "openseg_hrnet_asp_ocr"
    title = "openseg.pytorch HRNet-ASP-OCR"
    framework_models = ("hrnet_w48_asp_ocr",)
    config_type = OpensegAspOcrConfig
    _pixel_key = "asp_ocr_head.context.2.object_context_block.f_pixel.0.weight"
    example_key = _pixel_key
    norm_key = "asp_ocr_head.context.1"
    required_keys = (*_BACKBONE_KEYS, "asp_ocr_head.context.0.weight", _pixel_key,
                     "asp_ocr_head.conv5.0.weight", "asp_ocr_head.conv_bn_dropout.0.weight",
                     "cls_head.weight", "aux_head.0.weight")

    def infer_config(self, weights: Mapping[str, torch.Tensor], *,
                     align_corners: bool | None = None) -> OpensegAspOcrConfig:
        return OpensegAspOcrConfig(
            backbone=infer_backbone(weights, "backbone."),
            num_classes=int(weights["cls_head.weight"].shape[0]),
            branch_channels=int(weights["asp_ocr_head.context.0.weight"].shape[0]),
            key_channels=int(weights[self._pixel_key].shape[0]),
            out_channels=int(weights["asp_ocr_head.conv_bn_dropout.0.weight"].shape[0]),
            aux_channels=int(weights["aux_head.0.weight"].shape[0]),
            bn_type=self.bn_type(weights), align_corners=self.final_align_corners(align_corners))

    def build(self, config: OpensegAspOcrConfig) -> OpensegHRNetASPOCR:
        from exporters.openseg_hrnet_ocr import OpensegHRNetASPOCR

        return OpensegHRNetASPOCR(config).eval()

    def network_spec(self, config: OpensegAspOcrConfig) -> NetworkSpec:
        return NetworkSpec(family=self.key, title=self.title, variant=config.variant,
                           num_classes=config.num_classes, align_corners=config.align_corners,
                           settings={"branch_channels": config.branch_channels,
                                     "key_channels": config.key_channels,
                                     "out_channels": config.out_channels,
                                     "aux_channels": config.aux_channels,
                                     "dilations": list(config.dilations),
                                     "bn_type": config.bn_type.value})

    def example_config(self, *, num_classes: int) -> OpensegAspOcrConfig:
        return OpensegAspOcrConfig(VARIANTS["tiny"], num_classes, branch_channels=16,
                                   key_channels=8, out_channels=16, aux_channels=24)


FAMILY = OpensegHRNetOCRFamily()
ASP_FAMILY = OpensegHRNetASPOCRFamily()
