"""HRNet-OCR as an nn.Module whose state-dict names and computation equal the reference's, and
the HRNet backbone and OCR blocks that the openseg.pytorch and mmsegmentation layouts reuse.

Written from the reference's documented behaviour (see shared/docs/hrnet_ocr_reference.md): module
attribute names and Sequential nesting are chosen so that checkpoint keys load strictly.
`align_corners` is an instance setting passed down to every resize, never a global; the other
frameworks differ only in settings (HRNetResizes for the backbone, HeadStyle for the OCR block).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from exporters.variants import BackboneConfig, FuseUpsample, HRNetResizes, OcrConfig, StageConfig

# InPlace-ABN's default activation: leaky ReLU with this slope, fused into the norm module.
INPLACE_ABN_SLOPE = 0.01


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


def _resize(x: torch.Tensor, like: torch.Tensor, align_corners: bool) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=align_corners)


def _upsample_branch(x: torch.Tensor, like: torch.Tensor, factor: int,
                     resizes: HRNetResizes) -> torch.Tensor:
    """A fuse layer's upsampling of a branch `factor` times smaller than the target branch."""
    if resizes.fuse is FuseUpsample.scale_then_resize:
        size = (x.shape[-2] * factor, x.shape[-1] * factor)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=resizes.fuse_align_corners)
    return _resize(x, like, resizes.fuse_align_corners)


def concat_branches(features: list[torch.Tensor], align_corners: bool) -> torch.Tensor:
    """Every branch upsampled to the first (highest-resolution) one, concatenated."""
    top = features[0]
    return torch.cat([top, *(_resize(x, top, align_corners) for x in features[1:])], dim=1)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv1x1(channels, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def _make_blocks(block: type[BasicBlock] | type[Bottleneck], in_channels: int, channels: int,
                 count: int) -> nn.Sequential:
    out_channels = channels * block.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(_conv1x1(in_channels, out_channels),
                                   nn.BatchNorm2d(out_channels))
    layers = [block(in_channels, channels, downsample)]
    layers += [block(out_channels, channels) for _ in range(count - 1)]
    return nn.Sequential(*layers)


def _fuse_path(source: int, target: int, channels: tuple[int, ...]) -> nn.Module | None:
    """How branch `source` reaches branch `target`: 1x1 conv (then upsample), or strided 3x3s."""
    if source == target:
        return None
    if source > target:
        return nn.Sequential(_conv1x1(channels[source], channels[target]),
                             nn.BatchNorm2d(channels[target]))
    steps = []
    for step in range(target - source):
        last = step == target - source - 1
        out_channels = channels[target] if last else channels[source]
        layers: list[nn.Module] = [_conv3x3(channels[source], out_channels, stride=2),
                                   nn.BatchNorm2d(out_channels)]
        if not last:
            layers.append(nn.ReLU())
        steps.append(nn.Sequential(*layers))
    return nn.Sequential(*steps)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by an all-to-all sum fusion."""

    def __init__(self, blocks: tuple[int, ...], channels: tuple[int, ...], resizes: HRNetResizes):
        super().__init__()
        self.resizes = resizes
        self.branches = nn.ModuleList(
            _make_blocks(BasicBlock, width, width, count)
            for count, width in zip(blocks, channels, strict=True))
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(source, target, channels) for source in range(len(channels)))
            for target in range(len(channels)))
        self.relu = nn.ReLU()

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, inputs, strict=True)]
        fused = []
        for target, paths in enumerate(self.fuse_layers):
            # Summation order follows the reference (branch 0 first) to keep float rounding equal.
            y = xs[0] if target == 0 else paths[0](xs[0])
            for source in range(1, len(xs)):
                if source == target:
                    y = y + xs[source]
                elif source > target:
                    y = y + _upsample_branch(paths[source](xs[source]), xs[target],
                                             2 ** (source - target), self.resizes)
                else:
                    y = y + paths[source](xs[source])
            fused.append(self.relu(y))
        return fused


def _transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
    """Adapts branch widths between stages and spawns the new, lower-resolution branch."""
    layers: list[nn.Module | None] = []
    for index, width in enumerate(current):
        if index < len(previous):
            same = previous[index] == width
            layers.append(None if same else nn.Sequential(
                _conv3x3(previous[index], width), nn.BatchNorm2d(width), nn.ReLU()))
            continue
        steps = []
        for step in range(index + 1 - len(previous)):
            out_channels = width if step == index - len(previous) else previous[-1]
            steps.append(nn.Sequential(_conv3x3(previous[-1], out_channels, stride=2),
                                       nn.BatchNorm2d(out_channels), nn.ReLU()))
        layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def _stage(config: StageConfig, resizes: HRNetResizes) -> nn.Sequential:
    return nn.Sequential(*(HighResolutionModule(config.blocks, config.channels, resizes)
                           for _ in range(config.modules)))


@dataclass(frozen=True)
class HeadStyle:
    """How an OCR head's conv + norm + activation units are written: convolutions with or
    without bias; the norm either the reference's nested Sequential(BatchNorm2d, ReLU) or
    openseg's InPlace-ABN module sitting directly at the index (leaky ReLU 0.01 fused in)."""

    conv_bias: bool = False
    inplace_abn: bool = False


REFERENCE_HEAD = HeadStyle()


class InPlaceABN(nn.BatchNorm2d):
    """InPlace-ABN in eval mode: BatchNorm then leaky ReLU (slope 0.01), with BatchNorm2d's
    state-dict names. The |w| + eps scale is converted when the checkpoint is loaded."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(super().forward(x), INPLACE_ABN_SLOPE)


def norm_act(channels: int, style: HeadStyle = REFERENCE_HEAD) -> nn.Module:
    if style.inplace_abn:
        return InPlaceABN(channels)
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())


def _conv_bn_relu(in_channels: int, out_channels: int,
                  style: HeadStyle = REFERENCE_HEAD) -> nn.Sequential:
    """1x1 conv, then the style's norm + activation (reference: no bias, Sequential(BN, ReLU))."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=style.conv_bias),
                         norm_act(out_channels, style))


class RegionSoftmax(nn.Softmax):
    """The gather step's softmax over all positions, per class: the K soft object regions. A
    module rather than an inline call so that forward hooks (`ocr-deploy explain`) can read it."""

    def __init__(self) -> None:
        super().__init__(dim=2)


class RelationSoftmax(nn.Softmax):
    """The distribution step's softmax over the K regions: each pixel's relation to the object
    regions. A module so that forward hooks can read it (`ocr-deploy explain`)."""

    def __init__(self) -> None:
        super().__init__(dim=-1)


class ObjectAttentionBlock(nn.Module):
    """Pixel-to-region attention: queries from pixels, keys and values from region features."""

    def __init__(self, in_channels: int, key_channels: int, style: HeadStyle = REFERENCE_HEAD):
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(*_conv_bn_relu(in_channels, key_channels, style),
                                     *_conv_bn_relu(key_channels, key_channels, style))
        self.f_object = nn.Sequential(*_conv_bn_relu(in_channels, key_channels, style),
                                      *_conv_bn_relu(key_channels, key_channels, style))
        self.f_down = _conv_bn_relu(in_channels, key_channels, style)
        self.f_up = _conv_bn_relu(key_channels, in_channels, style)
        self.relation = RelationSoftmax()

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = pixels.shape
        query = self.f_pixel(pixels).flatten(2).transpose(1, 2)  # B, HW, KEY
        key = self.f_object(regions).flatten(2)  # B, KEY, K
        value = self.f_down(regions).flatten(2).transpose(1, 2)  # B, K, KEY
        weights = self.relation(torch.matmul(query, key) * self.key_channels ** -0.5)
        context = torch.matmul(weights, value).transpose(1, 2)  # B, KEY, HW
        return self.f_up(context.reshape(batch, self.key_channels, height, width))


class SpatialOCR(nn.Module):
    def __init__(self, channels: int, key_channels: int, dropout: float = 0.05,
                 style: HeadStyle = REFERENCE_HEAD):
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(channels, key_channels, style)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1, bias=style.conv_bias),
            norm_act(channels, style),
            nn.Dropout2d(dropout))

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(pixels, regions)
        return self.conv_bn_dropout(torch.cat([context, pixels], dim=1))  # context first


def gather_regions(pixels: torch.Tensor, soft_regions: torch.Tensor,
                   softmax: nn.Module | None = None) -> torch.Tensor:
    """Object region representations [B, C, K, 1]: per class, a softmax over all pixels."""
    flat = soft_regions.flatten(2)  # B, K, HW
    weights = softmax(flat) if softmax is not None else torch.softmax(flat, dim=2)
    regions = torch.matmul(weights, pixels.flatten(2).transpose(1, 2))  # B, K, C
    return regions.transpose(1, 2).unsqueeze(3)


class SpatialGather(nn.Module):
    """`gather_regions` with its softmax as a submodule (`soft_regions`), which forward hooks
    can read; no parameters, so state dicts are unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.soft_regions = RegionSoftmax()

    def forward(self, pixels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return gather_regions(pixels, logits, self.soft_regions)


class HRNetBackbone(nn.Module):
    """HRNetV2: the stem, stage 1 and stages 2-4; `forward` returns the four branches (1/4 to
    1/32 of the input), `concatenated` the branches resized to 1/4 and concatenated."""

    def __init__(self, backbone: BackboneConfig, resizes: HRNetResizes):
        super().__init__()
        self.resizes = resizes
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = _make_blocks(Bottleneck, 64, backbone.stage1_channels, backbone.stage1_blocks)
        stage1_out = (backbone.stage1_channels * Bottleneck.expansion,)
        self.transition1 = _transition(stage1_out, backbone.stage2.channels)
        self.stage2 = _stage(backbone.stage2, resizes)
        self.transition2 = _transition(backbone.stage2.channels, backbone.stage3.channels)
        self.stage3 = _stage(backbone.stage3, resizes)
        self.transition3 = _transition(backbone.stage3.channels, backbone.stage4.channels)
        self.stage4 = _stage(backbone.stage4, resizes)

    @staticmethod
    def _run_transition(transition: nn.ModuleList,
                        features: list[torch.Tensor]) -> list[torch.Tensor]:
        # A new branch grows from the lowest-resolution branch of the previous stage.
        return [features[min(index, len(features) - 1)] if layer is None
                else layer(features[min(index, len(features) - 1)])
                for index, layer in enumerate(transition)]

    def branches(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(image)))
        x = self.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            features = stage(self._run_transition(transition, features))
        return features

    def concatenated(self, image: torch.Tensor) -> torch.Tensor:
        """The concatenated multi-resolution features at 1/4 scale."""
        return concat_branches(self.branches(image), self.resizes.concat_align_corners)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.branches(image)


class HRNetOCR(HRNetBackbone):
    """The reference layout: backbone modules at the top level, then the OCR head. Returns
    [aux, out], both at 1/4 of the input size; no upsampling inside."""

    def __init__(self, config: OcrConfig):
        super().__init__(config.backbone, HRNetResizes(FuseUpsample.resize, config.align_corners,
                                                       config.align_corners))
        self.config = config
        self.align_corners = config.align_corners
        self._build_head(config.backbone.concat_channels, config)

    def _build_head(self, channels: int, config: OcrConfig) -> None:
        mid, classes = config.mid_channels, config.num_classes
        self.conv3x3_ocr = nn.Sequential(nn.Conv2d(channels, mid, 3, padding=1),
                                         nn.BatchNorm2d(mid), nn.ReLU())
        self.ocr_distri_head = SpatialOCR(mid, config.key_channels)
        self.spatial_gather = SpatialGather()
        self.cls_head = nn.Conv2d(mid, classes, 1)
        self.aux_head = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels),
                                      nn.ReLU(), nn.Conv2d(channels, classes, 1))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = self.concatenated(image)
        aux = self.aux_head(features)
        pixels = self.conv3x3_ocr(features)
        regions = self.spatial_gather(pixels, aux)
        out = self.cls_head(self.ocr_distri_head(pixels, regions))
        return [aux, out]
