"""mmsegmentation's OCRNet on ResNetV1c-D8 (configs/ocrnet/ocrnet_r50-d8, ocrnet_r101-d8) as an
nn.Module whose state-dict names equal mmsegmentation's.

ResNetV1c: a deep stem `stem.0..8` (3x3 convs to stem/2, stem/2, stem channels, each with BN
and ReLU), then MaxPool2d(3, 2, 1) with ceil_mode=False; Bottleneck layers as in
exporters/resnet_dilated.py (style 'pytorch': stride on the 3x3), strides (1, 2, 1, 1),
dilations (1, 1, 2, 4), contract_dilation=True (first block of layer3/layer4 at half the
dilation). CascadeEncoderDecoder: FCNHead (`decode_head.0`) on layer3, OCRHead
(`decode_head.1`) on layer4 with the FCN logits as soft object regions; both at 1/8.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from exporters.mmseg_ocr import FCNHead, OCRHead
from exporters.resnet_dilated import DilatedResNet

if TYPE_CHECKING:
    from exporters.models.mmseg_resnet_ocr import MMSegResNetOcrConfig

_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _deep_stem(channels: int) -> nn.Sequential:
    half = channels // 2
    widths = ((3, half, 2), (half, half, 1), (half, channels, 1))
    modules: list[nn.Module] = []
    for in_channels, out_channels, stride in widths:
        modules += [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(out_channels), nn.ReLU()]
    return nn.Sequential(*modules)


class ResNetV1c(nn.Module):
    """forward(image) -> (layer3, layer4) at 1/8. The Bottleneck layers are DilatedResNet's (with
    halved first dilations); only the stem and the pool differ, and the stem is as wide as
    layer1's bottleneck (64 in mmseg), so layer1 reads the same width as after a plain stem."""

    def __init__(self, config: MMSegResNetOcrConfig):
        super().__init__()
        backbone = config.backbone
        self.stem = _deep_stem(backbone.width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # ceil_mode=False in mmseg
        body = DilatedResNet(replace(backbone, deep_stem=False, halve_first_dilation=True),
                             stem_container=True)
        for name in _LAYERS:
            self.add_module(name, getattr(body, name))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.stem(image))
        layer3 = self.layer3(self.layer2(self.layer1(x)))
        return layer3, self.layer4(layer3)


class MMSegResNetOCR(nn.Module):
    """CascadeEncoderDecoder(ResNetV1c-D8, [FCNHead on layer3, OCRHead on layer4]); returns
    [aux, out] at 1/8 of the input."""

    def __init__(self, config: MMSegResNetOcrConfig):
        super().__init__()
        self.config = config
        backbone = config.backbone
        self.backbone = ResNetV1c(config)
        self.decode_head = nn.ModuleList([
            FCNHead(backbone.layer3_channels, config.fcn_channels, config.num_classes,
                    kernel_size=config.fcn_kernel, num_convs=config.fcn_convs),
            OCRHead(backbone.layer4_channels, config.channels, config.ocr_channels, config.num_classes)])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        layer3, layer4 = self.backbone(image)
        aux = self.decode_head[0](layer3)
        return [aux, self.decode_head[1](layer4, aux)]
