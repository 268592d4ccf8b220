"""OCNet as the OCNet paper's own code (OCNet.pytorch) builds it: resnet101_base_oc_dsn,
resnet101_pyramid_oc_dsn and resnet101_asp_oc_dsn, saved as a flat state dict.

Input quirk of that code: frames are flipped to RGB and Caffe's BGR means are subtracted in RGB
order (no division); the trained weights expect exactly that. The networks live in
exporters/resnet_oc_nets.py; this module is the family's entry in the FAMILIES table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from exporters.models.base import ChannelOrder, Normalisation
from exporters.models.dilated_resnet_family import (
    DilatedResNetConfig,
    DilatedResNetFamily,
    HeadLayout,
    look_alike,
)
from exporters.resnet_configs import CAFFE_MEAN_BGR, DEPTHS, HeadWidths, ResNetConfig, infer_resnet
from ocr_deploy.meta import NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

_ASP = "context.2.context.2.stages.0."

HEADS = {
    "base": HeadLayout(
        required=("context.0.weight", "context.2.stages.0.f_key.0.weight", "cls.weight", "dsn.0.weight"),
        channels="context.0.weight", key_channels="context.2.stages.0.f_key.0.weight",
        value_channels="context.2.stages.0.f_value.weight", dsn="dsn.0.weight", classifier="cls.weight",
        norm="dsn.1", self_attention_stride=8),
    "pyramid": HeadLayout(
        required=("layer5.0.weight", "context.stages.0.f_key.0.weight", "context.up_dr.0.weight", "cls.weight",
                  "dsn.0.weight"),
        channels="layer5.0.weight", key_channels="context.stages.0.f_key.0.weight",
        value_channels="context.stages.0.f_value.weight", dsn="dsn.0.weight", classifier="cls.weight",
        norm="context.up_dr.1", self_attention_stride=8),  # the size-1 stage attends over all positions
    "asp": HeadLayout(
        required=("context.0.weight", f"{_ASP}f_key.0.weight", "context.2.conv5.0.weight", "cls.weight",
                  "dsn.0.weight"),
        channels="context.0.weight", key_channels=f"{_ASP}f_key.0.weight", value_channels=f"{_ASP}f_value.weight",
        dsn="dsn.0.weight", classifier="cls.weight", norm="dsn.1", branch="context.2.conv2.0.weight",
        self_attention_stride=16),  # pooled by 2 before the attention
}


class OCNetConfig(DilatedResNetConfig):
    """`head`: base, pyramid or asp (OCNet.pytorch's resnet101_<head>_oc_dsn)."""


def network_name(config: OCNetConfig) -> str:
    """OCNet.pytorch's name for the network, e.g. 'resnet101_pyramid_oc_dsn'."""
    depth = DEPTHS.get(config.backbone.blocks)
    resnet = f"resnet{depth}" if depth and config.backbone.width == 64 else config.backbone.name
    return f"{resnet}_{config.head}_oc_dsn"


class OCNetFamily(DilatedResNetFamily[OCNetConfig]):
    key = "ocnet_resnet"
    title = "OCNet.pytorch OCNet on dilated ResNet"
    framework = "OCNet.pytorch"
    framework_models = tuple(f"resnet101_{head}_oc_dsn" for head in HEADS)
    config_type = OCNetConfig
    heads = HEADS
    required_keys = ("conv1.weight", "layer1.0.conv1.weight", "layer4.0.conv1.weight")
    example_key = "context.stages.0.f_key.0.weight"
    normalisation = Normalisation.from_framework(channels=ChannelOrder.rgb, divisor=1.0, mean=CAFFE_MEAN_BGR,
                                                 std=(1.0, 1.0, 1.0))
    look_alikes = (
        look_alike(r"^layer6\.", "the OCNet.pytorch baseline (resnet101_baseline: layer5 and layer6, no "
                   "object context), which ocr-deploy does not export"),
        look_alike(r"^fc\.", "an ImageNet ResNet classification checkpoint (fc.*), not a segmentation "
                   "network"),
        look_alike(r"^backbone\.resinit\.", "an openseg.pytorch checkpoint (backbone.resinit.*)"),
    )

    def infer_config(self, weights: Mapping[str, torch.Tensor], *,
                     align_corners: bool | None = None) -> OCNetConfig:
        # OCNet.pytorch builds layer3/layer4 with their full dilation in every block.
        backbone = infer_resnet(weights, prefix="", stem_prefix="", halve_first_dilation=False)
        return OCNetConfig(**self.read_head(weights, backbone, align_corners=align_corners))

    def build(self, config: OCNetConfig) -> nn.Module:
        from exporters.resnet_oc_nets import OCNET_NETWORKS

        return OCNET_NETWORKS[config.head](config).eval()

    def network_spec(self, config: OCNetConfig) -> NetworkSpec:
        return NetworkSpec(family=self.key, title=self.title, variant=network_name(config),
                           num_classes=config.num_classes, align_corners=config.align_corners,
                           settings=self.settings(config))

    def example_config(self, *, num_classes: int, head: str = "pyramid") -> OCNetConfig:
        """Width-8 ResNet with one block per layer (two in layer3); heads 32 wide."""
        asp = head == "asp"
        widths = HeadWidths(channels=32, key_channels=8 if asp else 16, value_channels=16 if asp else 32,
                            dsn=24, branch=16 if asp else 0)
        return OCNetConfig(head=head, num_classes=num_classes, widths=widths,
                           backbone=ResNetConfig(blocks=(1, 1, 2, 1), width=8, deep_stem=True,
                                                 halve_first_dilation=False))


FAMILY = OCNetFamily()
