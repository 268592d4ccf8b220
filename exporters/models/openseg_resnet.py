"""OCNet and OCR on a dilated ResNet as openseg.pytorch trains them: base_ocnet (Base-OC),
asp_ocnet (ASP-OC), spatial_ocrnet (OCR) and spatial_asp_ocrnet (ASP-OCR).

Frames stay BGR; Caffe BGR means are subtracted, no division (std 1). The networks live in
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
from exporters.resnet_configs import CAFFE_MEAN_BGR, HeadWidths, ResNetConfig, infer_resnet
from ocr_deploy.meta import NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

_OCR = "spatial_ocr_head.object_context_block."
_ASP_OCR = "asp_ocr_head.context.2.object_context_block."
_ASP_OC = "context.2.context.2.stages.0."

HEADS = {
    "base_ocnet": HeadLayout(
        required=("oc_module_pre.0.weight", "oc_module.stages.0.f_key.0.weight", "cls.weight", "dsn.0.weight"),
        channels="oc_module_pre.0.weight", key_channels="oc_module.stages.0.f_key.0.weight",
        value_channels="oc_module.stages.0.f_value.weight", dsn="dsn.0.weight", classifier="cls.weight",
        norm="dsn.1", self_attention_stride=8),
    "asp_ocnet": HeadLayout(
        required=("context.0.weight", f"{_ASP_OC}f_key.0.weight", "context.2.conv5.0.weight", "cls.weight",
                  "dsn.0.weight"),
        channels="context.0.weight", key_channels=f"{_ASP_OC}f_key.0.weight",
        value_channels=f"{_ASP_OC}f_value.weight", dsn="dsn.0.weight", classifier="cls.weight", norm="dsn.1",
        branch="context.2.conv2.0.weight", self_attention_stride=16),  # keys and queries pooled by 2
    "spatial_ocrnet": HeadLayout(
        required=("conv_3x3.0.weight", f"{_OCR}f_pixel.0.weight", "head.weight", "dsn_head.0.weight"),
        channels="conv_3x3.0.weight", key_channels=f"{_OCR}f_pixel.0.weight",
        value_channels=f"{_OCR}f_down.0.weight", dsn="dsn_head.0.weight", classifier="head.weight",
        norm="dsn_head.1"),
    "spatial_asp_ocrnet": HeadLayout(
        required=(f"{_ASP_OCR}f_pixel.0.weight", "asp_ocr_head.conv5.0.weight", "head.weight",
                  "dsn_head.0.weight"),
        channels="asp_ocr_head.conv_bn_dropout.0.weight", key_channels=f"{_ASP_OCR}f_pixel.0.weight",
        value_channels=f"{_ASP_OCR}f_down.0.weight", dsn="dsn_head.0.weight", classifier="head.weight",
        norm="dsn_head.1", branch="asp_ocr_head.context.0.weight"),
}


class OpensegResNetConfig(DilatedResNetConfig):
    """`head` is openseg's model name (config_dict['network']['model_name'])."""


class OpensegResNetFamily(DilatedResNetFamily[OpensegResNetConfig]):
    key = "openseg_resnet"
    title = "openseg.pytorch OCNet/OCR on dilated ResNet"
    framework = "openseg.pytorch"
    framework_models = tuple(HEADS)
    config_type = OpensegResNetConfig
    heads = HEADS
    required_keys = ("backbone.resinit.conv1.weight", "backbone.layer1.0.conv1.weight",
                     "backbone.layer4.0.conv1.weight")
    example_key = "backbone.resinit.conv1.weight"
    normalisation = Normalisation.from_framework(channels=ChannelOrder.bgr, divisor=1.0, mean=CAFFE_MEAN_BGR,
                                                 std=(1.0, 1.0, 1.0))
    look_alikes = (
        look_alike(r"^isa_head\.", "an openseg.pytorch ISA-Net checkpoint (isa_head.*), a head "
                   "ocr-deploy does not export; supported openseg heads: " + ", ".join(HEADS)),
        look_alike(r"^(head\.\d+|aspp_head)\.", "an openseg.pytorch DeepLabV3 checkpoint (an ASPP "
                   "head), which ocr-deploy does not export"),
        look_alike(r"^ppm\.", "an openseg.pytorch PSPNet checkpoint (ppm.*), which ocr-deploy does not "
                   "export"),
        look_alike(r"^cls_head\.\d+\.", "an openseg.pytorch FCN checkpoint (cls_head.N.*), which "
                   "ocr-deploy does not export"),
        look_alike(r"^backbone\.(stage\d|transition\d)", "an openseg.pytorch HRNet checkpoint"),
        look_alike(r"^(decode_head|auxiliary_head|backbone\.stem)\.", "an mmsegmentation checkpoint"),
    )

    def infer_config(self, weights: Mapping[str, torch.Tensor], *,
                     align_corners: bool | None = None) -> OpensegResNetConfig:
        # openseg turns strides into dilations: the first block of layer3/layer4 gets half.
        backbone = infer_resnet(weights, prefix="backbone.", stem_prefix="backbone.resinit.",
                                halve_first_dilation=True)
        return OpensegResNetConfig(**self.read_head(weights, backbone, align_corners=align_corners))

    def build(self, config: OpensegResNetConfig) -> nn.Module:
        from exporters.resnet_oc_nets import OPENSEG_NETWORKS

        return OPENSEG_NETWORKS[config.head](config).eval()

    def network_spec(self, config: OpensegResNetConfig) -> NetworkSpec:
        return NetworkSpec(family=self.key, title=self.title,
                           variant=f"{config.head} {config.backbone.name}",
                           num_classes=config.num_classes, align_corners=config.align_corners,
                           settings=self.settings(config))

    def example_config(self, *, num_classes: int, head: str = "base_ocnet") -> OpensegResNetConfig:
        """Width-8 ResNet with one block per layer; heads 32 wide."""
        asp = head in ("asp_ocnet", "spatial_asp_ocrnet")
        key_channels = 8 if asp else 16
        # OCR's values are projected to the key width (f_down).
        value_channels = key_channels if head.startswith("spatial") else 16
        widths = HeadWidths(channels=32, key_channels=key_channels, value_channels=value_channels, dsn=24,
                            branch=16 if asp else 0)
        return OpensegResNetConfig(head=head, num_classes=num_classes, widths=widths,
                                   backbone=ResNetConfig(blocks=(1, 1, 2, 1), width=8, deep_stem=True,
                                                         halve_first_dilation=True))


FAMILY = OpensegResNetFamily()
