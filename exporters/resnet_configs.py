"""Settings of the dilated-ResNet families (OCNet and OCR heads), read back from tensor shapes.

No torch needed to read them: the FAMILIES table imports this module, the networks live in
exporters/resnet_dilated.py, exporters/oc_heads.py and exporters/resnet_oc_nets.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ocr_deploy.errors import CheckpointError

# Bottleneck blocks per layer of the standard depths.
DEPTHS: dict[tuple[int, int, int, int], int] = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
# layer3 and layer4 run at stride 1 with dilations 2 and 4: features at 1/8 of the input.
OUTPUT_STRIDE = 8
LAYER_DILATIONS = (1, 1, 2, 4)
LAYER_STRIDES = (1, 2, 1, 1)
# The ASP branches' dilations (for output stride 8; tensor shapes cannot tell them).
ASP_DILATIONS = (12, 24, 36)
# Caffe's BGR means, which every released dilated-ResNet OCNet/OCR model was trained with.
CAFFE_MEAN_BGR = (102.9801, 115.9465, 122.7717)


@dataclass(frozen=True)
class ResNetConfig:
    """A dilated Bottleneck ResNet. `width` is layer1's bottleneck width (64 in every released
    model; smaller only in tests); the deep stem is three 3x3 convs (64, 64, 128 at width 64),
    the plain one a 7x7 conv. `halve_first_dilation`: the first block of a dilated layer uses
    half the layer's dilation (openseg's converted strides) instead of all of it (OCNet.pytorch)."""

    blocks: tuple[int, int, int, int]
    width: int
    deep_stem: bool
    halve_first_dilation: bool

    @property
    def name(self) -> str:
        """Like openseg's backbone names: 'deepbase_resnet101_dilated8'."""
        depth = DEPTHS.get(self.blocks)
        body = f"resnet{depth}" if depth else "resnet-" + "-".join(map(str, self.blocks))
        width = "" if self.width == 64 else f"-w{self.width}"
        return f"{'deepbase_' if self.deep_stem else ''}{body}{width}_dilated{OUTPUT_STRIDE}"

    @property
    def stem_channels(self) -> int:
        return 2 * self.width if self.deep_stem else self.width

    @property
    def layer3_channels(self) -> int:
        return self.width * 4 * 4

    @property
    def layer4_channels(self) -> int:
        return self.width * 8 * 4


@dataclass(frozen=True)
class HeadWidths:
    """Channel widths of a context head. `channels`: the features the classifier reads;
    `branch`: width of each ASP branch (0 without ASP); `dsn`: the auxiliary head's hidden width."""

    channels: int
    key_channels: int
    value_channels: int
    dsn: int
    branch: int = 0


def indices(weights: Mapping[str, Any], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(match.group(1)) for key in weights if (match := regex.match(key))})


def out_channels(weights: Mapping[str, Any], key: str) -> int:
    if key not in weights:
        raise CheckpointError(f"the checkpoint lacks {key!r}; it is not a complete state dict of "
                              "this network")
    return int(weights[key].shape[0])


def infer_resnet(weights: Mapping[str, Any], *, prefix: str, stem_prefix: str,
                 halve_first_dilation: bool) -> ResNetConfig:
    """Depth from the block counts, width from layer1, stem from the presence of a third conv."""
    blocks = tuple(len(indices(weights, rf"^{re.escape(prefix)}layer{layer}\.(\d+)\.conv1\."))
                   for layer in (1, 2, 3, 4))
    if 0 in blocks:
        raise CheckpointError(f"the checkpoint's ResNet has no layer{blocks.index(0) + 1} "
                              f"blocks under {prefix!r}; it is not a complete dilated ResNet")
    conv1 = weights.get(f"{stem_prefix}conv1.weight")
    if conv1 is None:
        raise CheckpointError(f"the checkpoint lacks the ResNet stem {stem_prefix}conv1.weight")
    deep = f"{stem_prefix}conv3.weight" in weights
    expected_kernel = 3 if deep else 7
    if int(conv1.shape[-1]) != expected_kernel:
        raise CheckpointError(f"{stem_prefix}conv1 is {int(conv1.shape[-1])}x{int(conv1.shape[-1])}"
                              f" but a {'deep' if deep else 'plain'} stem starts with a "
                              f"{expected_kernel}x{expected_kernel} conv")
    return ResNetConfig(blocks=(blocks[0], blocks[1], blocks[2], blocks[3]),
                        width=out_channels(weights, f"{prefix}layer1.0.conv1.weight"),
                        deep_stem=deep, halve_first_dilation=halve_first_dilation)


def fused_norm(weights: Mapping[str, Any], norm: str) -> bool:
    """InPlace-ABN keeps the BN-act module at `norm` itself ('dsn.1.weight'); torch BN wraps it
    in Sequential(BatchNorm2d, ReLU) ('dsn.1.0.weight')."""
    if f"{norm}.weight" in weights:
        return True
    if f"{norm}.0.weight" in weights:
        return False
    raise CheckpointError(f"the checkpoint has no normalisation at {norm!r} (neither "
                          f"{norm}.weight nor {norm}.0.weight)")
