"""mmsegmentation's OCRNet heads (FCNHead, OCRHead, with mmcv's ConvModule) and OCRNet on
HRNetV2, as nn.Modules whose state-dict names equal mmsegmentation's.

The heads take one feature map, so they serve any backbone: OCRNet on HRNetV2 feeds both the
branches resized (align_corners=False) and concatenated; on ResNet-D8, FCNHead reads stage 3 and
OCRHead stage 4. The HRNet backbone is the reference's (exporters/hrnet_ocr.py) with
mmsegmentation's resizes.
"""

from __future__ import annotations

import torch
from torch import nn

from exporters.hrnet_ocr import HRNetBackbone, RelationSoftmax, SpatialGather
from exporters.variants import FuseUpsample, HRNetResizes, MMSegOcrConfig

# mmseg's HRModule: Upsample(scale_factor=2**k, align_corners=False), then resize to the target
# size; resize_concat in the decode heads: align_corners=False.
MMSEG_RESIZES = HRNetResizes(FuseUpsample.scale_then_resize, fuse_align_corners=False,
                             concat_align_corners=False)


class ConvModule(nn.Module):
    """mmcv's ConvModule with a BatchNorm: conv (no bias) -> bn -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *,
                 dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size,
                              padding=kernel_size // 2 * dilation, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class FCNHead(nn.Module):
    """`num_convs` ConvModules then `conv_seg` (no input concat; dropout is a no-op in eval)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, kernel_size: int = 3,
                 num_convs: int = 1, dilation: int = 1):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(*(ConvModule(source, channels, kernel_size, dilation=dilation)
                                     for source in widths[:-1])) if num_convs else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.convs(x))


class ObjectAttentionBlock(nn.Module):
    """mmseg's OCR SelfAttentionBlock: two-ConvModule key/query projections, one-ConvModule
    value/out projections, similarity divided by sqrt(channels), then `bottleneck` on
    concat [context, query features]."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.channels = channels
        self.key_project = nn.Sequential(ConvModule(in_channels, channels),
                                         ConvModule(channels, channels))
        self.query_project = nn.Sequential(ConvModule(in_channels, channels),
                                           ConvModule(channels, channels))
        self.value_project = ConvModule(in_channels, channels)
        self.out_project = ConvModule(channels, in_channels)
        self.bottleneck = ConvModule(in_channels * 2, in_channels)
        self.relation = RelationSoftmax()

    def forward(self, query_feats: torch.Tensor, key_feats: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = query_feats.shape
        query = self.query_project(query_feats).flatten(2).transpose(1, 2)  # B, HW, C
        key = self.key_project(key_feats).flatten(2)  # B, C, K
        value = self.value_project(key_feats).flatten(2).transpose(1, 2)  # B, K, C
        weights = self.relation(torch.matmul(query, key) * self.channels ** -0.5)
        context = torch.matmul(weights, value).transpose(1, 2)  # B, C, HW
        context = self.out_project(context.reshape(batch, self.channels, height, width))
        return self.bottleneck(torch.cat([context, query_feats], dim=1))


class OCRHead(nn.Module):
    """3x3 `bottleneck` to `channels`, soft object regions from the previous head's logits
    (softmax over positions, scale 1), the object attention block, then `conv_seg`."""

    def __init__(self, in_channels: int, channels: int, ocr_channels: int, num_classes: int):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.object_context_block = ObjectAttentionBlock(channels, ocr_channels)
        self.bottleneck = ConvModule(in_channels, channels, 3)
        self.spatial_gather = SpatialGather()

    def forward(self, x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        feats = self.bottleneck(x)
        return self.conv_seg(self.object_context_block(feats, self.spatial_gather(feats, previous)))


class MMSegHRNetOCR(nn.Module):
    """CascadeEncoderDecoder(HRNet, [FCNHead, OCRHead]); returns [aux, out] at 1/4 of the input."""

    def __init__(self, config: MMSegOcrConfig):
        super().__init__()
        self.config = config
        channels = config.backbone.concat_channels
        self.backbone = HRNetBackbone(config.backbone, MMSEG_RESIZES)
        self.decode_head = nn.ModuleList([
            FCNHead(channels, config.fcn_channels, config.num_classes,
                    kernel_size=config.fcn_kernel, num_convs=config.fcn_convs),
            OCRHead(channels, config.channels, config.ocr_channels, config.num_classes)])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone.concatenated(image)
        aux = self.decode_head[0](features)
        return [aux, self.decode_head[1](features, aux)]
