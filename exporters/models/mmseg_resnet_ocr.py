"""OCRNet on ResNetV1c-D8 from mmsegmentation (configs/ocrnet/ocrnet_r50-d8_*, ocrnet_r101-d8_*):
CascadeEncoderDecoder with an FCNHead on layer3 (`decode_head.0`) and an OCRHead on layer4
(`decode_head.1`), both at 1/8 of the input.

The network lives in exporters/mmseg_resnet.py; this module is the family's entry in the FAMILIES
table. mmsegmentation feeds RGB frames normalised on 0..255 and resizes with align_corners=False.
There is no framework fixture for this network in ../shared/fixtures/model_families/: it is
checked for self-consistency only (synthetic mmseg-layout checkpoints, exports verified against
PyTorch), not against outputs mmsegmentation itself computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporters.models.base import ModelFamily, OutputContract
from exporters.models.mmseg_hrnet_ocr import MMSEG_NORMALISATION, mmseg_head_settings
from exporters.resnet_configs import DEPTHS, ResNetConfig, indices, out_channels
from ocr_deploy.errors import CheckpointError
from ocr_deploy.meta import NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from exporters.mmseg_resnet import MMSegResNetOCR

_SEGMENTATION_INDEX, _OUTPUT_STRIDE = 1, 8
DEFAULT_ALIGN_CORNERS = False
_QUERY_KEY = "decode_head.1.object_context_block.query_project.0.conv.weight"


@dataclass(frozen=True)
class MMSegResNetOcrConfig:
    """`backbone`: ResNetV1c (deep stem, first dilation of layer3/layer4 halved); the FCNHead has
    `fcn_convs` ConvModules (kernel `fcn_kernel`, width `fcn_channels`), the OCRHead is `channels`
    wide with attention over `ocr_channels`. `align_corners`: the final upsampling's."""

    backbone: ResNetConfig
    num_classes: int
    channels: int = 512
    ocr_channels: int = 256
    fcn_channels: int = 256
    fcn_kernel: int = 3
    fcn_convs: int = 1
    align_corners: bool = DEFAULT_ALIGN_CORNERS

    @property
    def variant(self) -> str:
        depth = DEPTHS.get(self.backbone.blocks)
        body = f"r{depth}" if depth else "r-" + "-".join(map(str, self.backbone.blocks))
        width = "" if self.backbone.width == 64 else f"-w{self.backbone.width}"
        return f"ocrnet_{body}{width}-d8"


def infer_backbone(weights: Mapping[str, torch.Tensor]) -> ResNetConfig:
    """Block counts from the layer keys, width from layer1; the stem must be ResNetV1c's."""
    blocks = tuple(len(indices(weights, rf"^backbone\.layer{layer}\.(\d+)\.conv1\.")) for layer in (1, 2, 3, 4))
    if 0 in blocks:
        raise CheckpointError(f"the checkpoint's ResNet has no layer{blocks.index(0) + 1} blocks under "
                              "'backbone.'; it is not a complete mmsegmentation ResNetV1c")
    stem = weights.get("backbone.stem.6.weight")
    if stem is None or int(stem.shape[-1]) != 3:
        raise CheckpointError("the checkpoint lacks the 3x3 backbone.stem.6 conv of a ResNetV1c deep stem; "
                              "only ResNetV1c (the ocrnet_r*-d8 configs) is supported")
    return ResNetConfig(blocks=(blocks[0], blocks[1], blocks[2], blocks[3]),
                        width=out_channels(weights, "backbone.layer1.0.conv1.weight"),
                        deep_stem=True, halve_first_dilation=True)


class MMSegResNetOCRFamily(ModelFamily[MMSegResNetOcrConfig]):
    key = "mmseg_resnet_ocr"
    title = "mmsegmentation OCRNet ResNetV1c-D8"
    framework = "mmsegmentation"
    framework_models = ("OCRNet",)
    config_type = MMSegResNetOcrConfig
    example_key = "backbone.stem.0.weight"
    # The deep stem and layer4 tell it from mmseg HRNet (no stem.*, no layer4) and from openseg's
    # and OCNet's ResNets (resinit.* / conv1.*, no decode_head.*).
    required_keys = ("backbone.stem.0.weight", "backbone.stem.6.weight", "backbone.layer1.0.conv1.weight",
                     "backbone.layer4.0.conv1.weight", "decode_head.0.conv_seg.weight",
                     "decode_head.1.bottleneck.conv.weight", _QUERY_KEY)

    def infer_config(self, weights: Mapping[str, torch.Tensor], *,
                     align_corners: bool | None = None) -> MMSegResNetOcrConfig:
        return MMSegResNetOcrConfig(
            backbone=infer_backbone(weights), **mmseg_head_settings(weights),
            align_corners=DEFAULT_ALIGN_CORNERS if align_corners is None else align_corners)

    def build(self, config: MMSegResNetOcrConfig) -> MMSegResNetOCR:
        from exporters.mmseg_resnet import MMSegResNetOCR

        return MMSegResNetOCR(config).eval()

    def network_spec(self, config: MMSegResNetOcrConfig) -> NetworkSpec:
        backbone = config.backbone
        return NetworkSpec(family=self.key, title=self.title, variant=config.variant,
                           num_classes=config.num_classes, align_corners=config.align_corners,
                           settings={"blocks": list(backbone.blocks), "width": backbone.width,
                                     "channels": config.channels, "ocr_channels": config.ocr_channels,
                                     "fcn_channels": config.fcn_channels, "fcn_kernel": config.fcn_kernel,
                                     "fcn_convs": config.fcn_convs})

    def output_contract(self, spec: NetworkSpec) -> OutputContract:
        return OutputContract(segmentation_index=_SEGMENTATION_INDEX, output_stride=_OUTPUT_STRIDE,
                              align_corners=spec.align_corners, normalisation=MMSEG_NORMALISATION)

    def example_config(self, *, num_classes: int) -> MMSegResNetOcrConfig:
        """Width-8 ResNetV1c with one block per layer (two in layer3, so a dilated non-first block
        runs); heads 32/16/24 wide."""
        return MMSegResNetOcrConfig(
            backbone=ResNetConfig(blocks=(1, 1, 2, 1), width=8, deep_stem=True, halve_first_dilation=True),
            num_classes=num_classes, channels=32, ocr_channels=16, fcn_channels=24)

    def classifiers(self, network: nn.Module) -> dict[int, nn.Conv2d]:
        return {0: network.decode_head[0].conv_seg, 1: network.decode_head[1].conv_seg}


FAMILY = MMSegResNetOCRFamily()
