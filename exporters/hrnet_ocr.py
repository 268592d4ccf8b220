"""HRNet-OCR as an nn.Module whose state-dict names and computation equal the reference's.

Written from the reference's documented behaviour (see shared/docs/hrnet_ocr_reference.md): module
attribute names and Sequential nesting are chosen so that checkpoint keys load strictly.
`align_corners` is an instance setting passed down to every resize, never a global.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from exporters.variants import BackboneConfig, OcrConfig, StageConfig


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


def _resize(x: torch.Tensor, like: torch.Tensor, align_corners: bool) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=align_corners)


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

    def __init__(self, blocks: tuple[int, ...], channels: tuple[int, ...], align_corners: bool):
        super().__init__()
        self.align_corners = align_corners
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
                    y = y + _resize(paths[source](xs[source]), xs[target], self.align_corners)
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


def _stage(config: StageConfig, align_corners: bool) -> nn.Sequential:
    return nn.Sequential(*(HighResolutionModule(config.blocks, config.channels, align_corners)
                           for _ in range(config.modules)))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv without bias, then the reference's nested Sequential(BN, ReLU)."""
    return nn.Sequential(_conv1x1(in_channels, out_channels),
                         nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU()))


class ObjectAttentionBlock(nn.Module):
    """Pixel-to-region attention: queries from pixels, keys and values from region features."""

    def __init__(self, in_channels: int, key_channels: int):
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(*_conv_bn_relu(in_channels, key_channels),
                                     *_conv_bn_relu(key_channels, key_channels))
        self.f_object = nn.Sequential(*_conv_bn_relu(in_channels, key_channels),
                                      *_conv_bn_relu(key_channels, key_channels))
        self.f_down = _conv_bn_relu(in_channels, key_channels)
        self.f_up = _conv_bn_relu(key_channels, in_channels)

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = pixels.shape
        query = self.f_pixel(pixels).flatten(2).transpose(1, 2)  # B, HW, KEY
        key = self.f_object(regions).flatten(2)  # B, KEY, K
        value = self.f_down(regions).flatten(2).transpose(1, 2)  # B, K, KEY
        weights = torch.softmax(torch.matmul(query, key) * self.key_channels ** -0.5, dim=-1)
        context = torch.matmul(weights, value).transpose(1, 2)  # B, KEY, HW
        return self.f_up(context.reshape(batch, self.key_channels, height, width))


class SpatialOCR(nn.Module):
    def __init__(self, channels: int, key_channels: int, dropout: float = 0.05):
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(channels, key_channels)
        self.conv_bn_dropout = nn.Sequential(
            _conv1x1(2 * channels, channels),
            nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU()),
            nn.Dropout2d(dropout))

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(pixels, regions)
        return self.conv_bn_dropout(torch.cat([context, pixels], dim=1))  # context first


def gather_regions(pixels: torch.Tensor, soft_regions: torch.Tensor) -> torch.Tensor:
    """Object region representations [B, C, K, 1]: per class, a softmax over all pixels."""
    weights = torch.softmax(soft_regions.flatten(2), dim=2)  # B, K, HW
    regions = torch.matmul(weights, pixels.flatten(2).transpose(1, 2))  # B, K, C
    return regions.transpose(1, 2).unsqueeze(3)


class HRNetOCR(nn.Module):
    """Returns [aux, out], both at 1/4 of the input size; no upsampling inside."""

    def __init__(self, config: OcrConfig):
        super().__init__()
        self.config = config
        self.align_corners = config.align_corners
        backbone: BackboneConfig = config.backbone
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = _make_blocks(Bottleneck, 64, backbone.stage1_channels, backbone.stage1_blocks)
        stage1_out = (backbone.stage1_channels * Bottleneck.expansion,)
        self.transition1 = _transition(stage1_out, backbone.stage2.channels)
        self.stage2 = _stage(backbone.stage2, config.align_corners)
        self.transition2 = _transition(backbone.stage2.channels, backbone.stage3.channels)
        self.stage3 = _stage(backbone.stage3, config.align_corners)
        self.transition3 = _transition(backbone.stage3.channels, backbone.stage4.channels)
        self.stage4 = _stage(backbone.stage4, config.align_corners)
        self._build_head(backbone.concat_channels, config)

    def _build_head(self, channels: int, config: OcrConfig) -> None:
        mid, classes = config.mid_channels, config.num_classes
        self.conv3x3_ocr = nn.Sequential(nn.Conv2d(channels, mid, 3, padding=1),
                                         nn.BatchNorm2d(mid), nn.ReLU())
        self.ocr_distri_head = SpatialOCR(mid, config.key_channels)
        self.cls_head = nn.Conv2d(mid, classes, 1)
        self.aux_head = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels),
                                      nn.ReLU(), nn.Conv2d(channels, classes, 1))

    @staticmethod
    def _run_transition(transition: nn.ModuleList,
                        features: list[torch.Tensor]) -> list[torch.Tensor]:
        # A new branch grows from the lowest-resolution branch of the previous stage.
        return [features[min(index, len(features) - 1)] if layer is None
                else layer(features[min(index, len(features) - 1)])
                for index, layer in enumerate(transition)]

    def backbone_features(self, image: torch.Tensor) -> torch.Tensor:
        """The concatenated multi-resolution features at 1/4 scale."""
        x = self.relu(self.bn1(self.conv1(image)))
        x = self.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            features = stage(self._run_transition(transition, features))
        top = features[0]
        upsampled = [_resize(x, top, self.align_corners) for x in features[1:]]
        return torch.cat([top, *upsampled], dim=1)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone_features(image)
        aux = self.aux_head(features)
        pixels = self.conv3x3_ocr(features)
        regions = gather_regions(pixels, aux)
        out = self.cls_head(self.ocr_distri_head(pixels, regions))
        return [aux, out]
