"""openseg.pytorch's HRNet-W48 + OCR (`hrnet_w48_ocr`, `hrnet_w48_ocr_b`) and + ASP-OCR
(`hrnet_w48_asp_ocr`) as nn.Modules whose state-dict names equal openseg's (without the
`module.` prefix the trainer adds). ASP-OCR's pyramid is exporters/oc_heads.py's.

The HRNet backbone and OCR block are the reference's (exporters/hrnet_ocr.py) with openseg's
settings: every internal resize with align_corners=True, head convolutions with bias, and the
head's norm + activation as openseg's `bn_type` built it (InPlace-ABN: leaky ReLU 0.01).
"""

from __future__ import annotations

import torch
from torch import nn

from exporters.hrnet_ocr import HeadStyle, HRNetBackbone, SpatialGather, SpatialOCR, norm_act
from exporters.variants import (
    BatchNormKind,
    FuseUpsample,
    HRNetResizes,
    OpensegAspOcrConfig,
    OpensegOcrConfig,
)

# openseg's hrnet_backbone.py and nets/hrnet.py resize with align_corners=True throughout.
OPENSEG_RESIZES = HRNetResizes(FuseUpsample.resize, fuse_align_corners=True,
                               concat_align_corners=True)


def head_style(bn_type: BatchNormKind) -> HeadStyle:
    return HeadStyle(conv_bias=True, inplace_abn=bn_type is BatchNormKind.inplace_abn)


class OpensegHRNetOCR(nn.Module):
    """Returns [aux, out] at 1/4 of the input size (openseg upsamples both afterwards)."""

    def __init__(self, config: OpensegOcrConfig):
        super().__init__()
        self.config = config
        style = head_style(config.bn_type)
        channels, mid = config.backbone.concat_channels, config.mid_channels
        classes, aux = config.num_classes, config.aux_channels
        self.backbone = HRNetBackbone(config.backbone, OPENSEG_RESIZES)
        self.conv3x3 = nn.Sequential(nn.Conv2d(channels, mid, 3, padding=1), norm_act(mid, style))
        self.ocr_distri_head = SpatialOCR(mid, config.key_channels, style=style)
        self.spatial_gather = SpatialGather()
        self.cls_head = nn.Conv2d(mid, classes, 1)
        self.aux_head = nn.Sequential(nn.Conv2d(channels, aux, 3, padding=1), norm_act(aux, style),
                                      nn.Conv2d(aux, classes, 1))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone.concatenated(image)
        aux = self.aux_head(features)
        pixels = self.conv3x3(features)
        out = self.cls_head(self.ocr_distri_head(pixels, self.spatial_gather(pixels, aux)))
        return [aux, out]


class OpensegHRNetASPOCR(nn.Module):
    """Returns [aux, out] at 1/4 of the input size (openseg upsamples both afterwards)."""

    def __init__(self, config: OpensegAspOcrConfig):
        super().__init__()
        from exporters.oc_heads import ASPOCR, OCRContext

        self.config = config
        fused = config.bn_type is BatchNormKind.inplace_abn
        channels, branch = config.backbone.concat_channels, config.branch_channels
        classes, aux = config.num_classes, config.aux_channels
        self.backbone = HRNetBackbone(config.backbone, OPENSEG_RESIZES)
        context = OCRContext(branch, config.key_channels, fused=fused)
        self.asp_ocr_head = ASPOCR(channels, branch, config.out_channels, context, fused=fused,
                                   bias=True, dilations=config.dilations)
        self.cls_head = nn.Conv2d(config.out_channels, classes, 1, bias=False)
        self.aux_head = nn.Sequential(nn.Conv2d(channels, aux, 3, padding=1),
                                      norm_act(aux, head_style(config.bn_type)),
                                      nn.Conv2d(aux, classes, 1, bias=False))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone.concatenated(image)
        aux = self.aux_head(features)
        return [aux, self.cls_head(self.asp_ocr_head(features, aux))]
