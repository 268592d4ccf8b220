"""Object-context heads on a dilated ResNet: OCNet's self-attention blocks (Base-OC, Pyramid-OC,
ASP-OC) and openseg.pytorch's ASP-OCR, as ONNX-exportable torch modules. OCR's object attention,
region gathering and BN-act units are exporters/hrnet_ocr.py's (openseg's head style).

Attribute names and Sequential indices follow the frameworks' modules so their checkpoint keys
load strictly. `fused` selects the normalisation layer the weights were trained with: InPlace-ABN
(one module, leaky_relu(BN(x), 0.01), keys `x.1.weight`) or torch BatchNorm + ReLU (keys
`x.1.0.weight`). Every self-attention scales the similarity by key_channels ** -0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from exporters import hrnet_ocr


def head_style(*, fused: bool) -> hrnet_ocr.HeadStyle:
    """openseg's and OCNet.pytorch's head units: convs with bias, InPlace-ABN or BN + ReLU."""
    return hrnet_ocr.HeadStyle(conv_bias=True, inplace_abn=fused)


def norm_act(channels: int, *, fused: bool) -> nn.Module:
    return hrnet_ocr.norm_act(channels, head_style(fused=fused))


def conv_norm_act(in_channels: int, out_channels: int, *, fused: bool, kernel: int = 1,
                  dilation: int = 1, bias: bool = True) -> list[nn.Module]:
    padding = dilation * (kernel // 2)
    return [nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=bias),
            norm_act(out_channels, fused=fused)]


class SimilaritySoftmax(nn.Softmax):
    """The self-attention's softmax over key positions (rows: query positions). A module rather
    than an inline call so that forward hooks (`ocr-deploy explain`) can read the attention."""

    def __init__(self) -> None:
        super().__init__(dim=-1)


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_channels: int,
           softmax: nn.Module | None = None) -> torch.Tensor:
    """Self-attention over every position of a map: query/key [B, Ck, h, w], value [B, Cv, h, w]
    -> context [B, Cv, h, w]. Softmax over the key positions of similarity * Ck ** -0.5."""
    batch, channels, height, width = value.shape
    similarity = torch.matmul(query.flatten(2).transpose(1, 2), key.flatten(2))  # B, hw, hw
    scaled = similarity * key_channels ** -0.5
    weights = softmax(scaled) if softmax is not None else torch.softmax(scaled, dim=-1)
    context = torch.matmul(weights, value.flatten(2).transpose(1, 2))  # B, hw, Cv
    return context.transpose(1, 2).reshape(batch, channels, height, width)


def _projection(in_channels: int, key_channels: int, *, depth: int, fused: bool) -> nn.Sequential:
    layers = conv_norm_act(in_channels, key_channels, fused=fused)
    for _ in range(depth - 1):
        layers += conv_norm_act(key_channels, key_channels, fused=fused)
    return nn.Sequential(*layers)


class SelfAttentionBlock(nn.Module):
    """OCNet's object-context block: keys and queries from `depth` 1x1 conv + BN-act layers
    (openseg: 2; OCNet.pytorch: 1, and its query projection IS its key projection), values from
    one 1x1 conv, output through `W`. `pool` > 1 max-pools the input first (keys, queries and
    values) and upsamples the context back with bilinear align_corners=True."""

    def __init__(self, in_channels: int, key_channels: int, value_channels: int, out_channels: int, *,
                 fused: bool, depth: int, shared_query: bool, pool: int = 1):
        super().__init__()
        self.key_channels, self.pool = key_channels, pool
        self.f_key = _projection(in_channels, key_channels, depth=depth, fused=fused)
        # Shared, the state dict still lists f_key.* and f_query.*; loading fills the one module
        # twice and f_query's entries (registered second) win, exactly as in OCNet.pytorch.
        self.f_query = self.f_key if shared_query else _projection(in_channels, key_channels,
                                                                    depth=depth, fused=fused)
        self.f_value = nn.Conv2d(in_channels, value_channels, 1)
        self.W = nn.Conv2d(value_channels, out_channels, 1)
        self.similarity = SimilaritySoftmax()

    def projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        query = self.f_query(x)
        key = query if self.f_query is self.f_key else self.f_key(x)  # one conv when shared
        return query, key, self.f_value(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(x, self.pool) if self.pool > 1 else x
        context = self.W(attend(*self.projections(pooled), self.key_channels, self.similarity))
        if self.pool > 1:
            context = F.interpolate(context, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return context


Span = tuple[slice, int, int]  # rows (or columns) of a map, the regions in them, each region's size


def _to_blocks(x: torch.Tensor, rows: int, columns: int, height: int, width: int) -> torch.Tensor:
    """[B, C, rows*height, columns*width] -> [B*rows*columns, C, height, width], block by block.
    (Sizes are passed in, not derived from x, so that a dynamic-shape export stays simple.)"""
    batch, channels = x.shape[:2]
    x = x.reshape(batch, channels, rows, height, columns, width).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(batch * rows * columns, channels, height, width)


def _from_blocks(x: torch.Tensor, batch: int, rows: int, columns: int, height: int, width: int) -> torch.Tensor:
    channels = x.shape[1]
    x = x.reshape(batch, rows, columns, channels, height, width).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, channels, rows * height, columns * width)


class PyramidSelfAttentionBlock(SelfAttentionBlock):
    """Pyramid-OC's stage: the map cut into parts x parts regions, self-attention inside each.

    OCNet's partition: steps of h // parts and w // parts, the last row and column of regions
    taking the remainder. The equal regions of each of the four corners of that grid run as one
    batch (four attentions instead of parts**2 slices, which keeps the export fast with dynamic
    height and width). Needs a feature map of at least `parts` positions a side, as OCNet does.
    """

    def __init__(self, in_channels: int, key_channels: int, value_channels: int, out_channels: int, *,
                 parts: int, fused: bool):
        super().__init__(in_channels, key_channels, value_channels, out_channels, fused=fused,
                         depth=1, shared_query=True)
        self.parts = parts

    def corner_spans(self, height: int, width: int) -> tuple[tuple[Span, Span], tuple[Span, Span]]:
        """The (row spans, column spans) of the partition, each span (slice, regions, region
        size): the attention runs once per (row span, column span) pair, rows outer."""
        inner = self.parts - 1
        step_h, step_w = height // self.parts, width // self.parts
        # Rows [0, inner*step_h) hold `inner` equal steps; the rest is the last row of regions.
        last_h, last_w = height - inner * step_h, width - inner * step_w
        row_spans = ((slice(0, inner * step_h), inner, step_h), (slice(inner * step_h, height), 1, last_h))
        column_spans = ((slice(0, inner * step_w), inner, step_w), (slice(inner * step_w, width), 1, last_w))
        return row_spans, column_spans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projections = self.projections(x)
        if self.parts == 1:
            return self.W(attend(*projections, self.key_channels, self.similarity))
        batch, _, height, width = x.shape
        row_spans, column_spans = self.corner_spans(height, width)
        rows = []
        for row_span, row_count, block_h in row_spans:
            corners = []
            for column_span, column_count, block_w in column_spans:
                shape = (row_count, column_count, block_h, block_w)
                query, key, value = [_to_blocks(t[..., row_span, column_span], *shape) for t in projections]
                context = attend(query, key, value, self.key_channels, self.similarity)
                corners.append(_from_blocks(context, batch, *shape))
            rows.append(torch.cat(corners, dim=3))
        return self.W(torch.cat(rows, dim=2))


def _sum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


class BaseOC(nn.Module):
    """Base-OC: the stages' contexts summed, concatenated before the input, 1x1 conv + BN-act."""

    def __init__(self, stages: Sequence[nn.Module], in_channels: int, out_channels: int, *,
                 fused: bool, dropout: float):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.conv_bn_dropout = nn.Sequential(nn.Conv2d(2 * in_channels, out_channels, 1),
                                             norm_act(out_channels, fused=fused), nn.Dropout2d(dropout))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        context = _sum([stage(feats) for stage in self.stages])
        return self.conv_bn_dropout(torch.cat([context, feats], dim=1))


class BaseOCContext(nn.Module):
    """ASP-OC's context branch: only the summed context, through BN-act (openseg) or through a
    1x1 conv + BN-act (OCNet.pytorch, `project=True`)."""

    def __init__(self, stages: Sequence[nn.Module], channels: int, *, fused: bool, project: bool):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        layers = conv_norm_act(channels, channels, fused=fused) if project else [
            norm_act(channels, fused=fused), nn.Dropout2d(0.0)]
        self.conv_bn_dropout = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.conv_bn_dropout(_sum([stage(feats) for stage in self.stages]))


class PyramidOC(nn.Module):
    """Pyramid-OC: `up_dr` (1x1 conv + BN-act widening the input to groups x channels), then the
    stages' contexts (sizes 1, 2, 3, 6), concatenated, 1x1 conv + BN-act + dropout."""

    def __init__(self, in_channels: int, out_channels: int, key_channels: int, value_channels: int,
                 sizes: Sequence[int], *, fused: bool, dropout: float):
        super().__init__()
        groups = len(sizes)
        self.stages = nn.ModuleList(
            PyramidSelfAttentionBlock(in_channels, key_channels, value_channels, out_channels,
                                      parts=size, fused=fused) for size in sizes)
        self.conv_bn_dropout = nn.Sequential(nn.Conv2d(2 * in_channels * groups, out_channels, 1),
                                             norm_act(out_channels, fused=fused), nn.Dropout2d(dropout))
        self.up_dr = nn.Sequential(*conv_norm_act(in_channels, in_channels * groups, fused=fused))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        context = [self.up_dr(feats)] + [stage(feats) for stage in self.stages]
        return self.conv_bn_dropout(torch.cat(context, dim=1))


class ASPOC(nn.Module):
    """ASP-OC: five branches (3x3 conv + BN-act + object context; 1x1 conv; three dilated 3x3
    convs), concatenated, 1x1 conv + BN-act + dropout. `bias`: whether the branch convs have one."""

    def __init__(self, features: int, branch: int, out_channels: int, context: nn.Module, *,
                 fused: bool, bias: bool, dilations: Sequence[int], dropout: float = 0.1):
        super().__init__()
        self.context = nn.Sequential(*conv_norm_act(features, branch, fused=fused, kernel=3), context)
        self.conv2 = nn.Sequential(*conv_norm_act(features, branch, fused=fused, bias=bias))
        for name, dilation in zip(("conv3", "conv4", "conv5"), dilations, strict=True):
            self.add_module(name, nn.Sequential(*conv_norm_act(features, branch, fused=fused, kernel=3,
                                                               dilation=dilation, bias=bias)))
        self.conv_bn_dropout = nn.Sequential(nn.Conv2d(5 * branch, out_channels, 1, bias=bias),
                                             norm_act(out_channels, fused=fused), nn.Dropout2d(dropout))

    def fuse(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        branches = [context, self.conv2(x), self.conv3(x), self.conv4(x), self.conv5(x)]
        return self.conv_bn_dropout(torch.cat(branches, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(x, self.context(x))


class OCRContext(nn.Module):
    """openseg's SpatialOCR_Context: the object attention's context alone (ASP-OCR's branch)."""

    def __init__(self, channels: int, key_channels: int, *, fused: bool):
        super().__init__()
        self.object_context_block = hrnet_ocr.ObjectAttentionBlock(channels, key_channels,
                                                                   head_style(fused=fused))

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        return self.object_context_block(pixels, regions)


class ASPOCR(ASPOC):
    """ASP-OCR: ASP-OC whose context branch is OCR over regions gathered from the aux logits."""

    def __init__(self, features: int, branch: int, out_channels: int, context: nn.Module, *,
                 fused: bool, bias: bool, dilations: Sequence[int], dropout: float = 0.1):
        super().__init__(features, branch, out_channels, context, fused=fused, bias=bias,
                         dilations=dilations, dropout=dropout)
        self.spatial_gather = hrnet_ocr.SpatialGather()

    def forward(self, x: torch.Tensor, soft_regions: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        pixels = self.context[1](self.context[0](x))
        regions = self.spatial_gather(pixels, soft_regions)
        return self.fuse(x, self.context[2](pixels, regions))
