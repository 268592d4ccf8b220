"""The dilated ResNet under OCNet and OCR-on-ResNet: Bottleneck layers, layer3 and layer4 at
stride 1 with dilations 2 and 4 (output stride 8); returns the layer3 and layer4 features.

Both frameworks normalise with BatchNorm (InPlace-ABN with activation 'none' in their releases)
followed by a separate ReLU, so backbone keys do not depend on the normalisation layer type.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from exporters.resnet_configs import LAYER_DILATIONS, LAYER_STRIDES, ResNetConfig


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def _layer(in_channels: int, channels: int, count: int, *, stride: int, dilation: int,
           halve_first: bool) -> nn.Sequential:
    out_channels = channels * Bottleneck.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    first = max(dilation // 2, 1) if halve_first else dilation
    blocks = [Bottleneck(in_channels, channels, stride=stride, dilation=first, downsample=downsample)]
    blocks += [Bottleneck(out_channels, channels, dilation=dilation) for _ in range(count - 1)]
    return nn.Sequential(*blocks)


def _stem(config: ResNetConfig) -> OrderedDict[str, nn.Module]:
    width = config.width
    if not config.deep_stem:
        return OrderedDict([("conv1", nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)),
                            ("bn1", nn.BatchNorm2d(width)), ("relu1", nn.ReLU())])
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    widths = ((3, width, 2), (width, width, 1), (width, 2 * width, 1))
    for index, (in_channels, out_channels, stride) in enumerate(widths, start=1):
        layers[f"conv{index}"] = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                                           bias=False)
        layers[f"bn{index}"] = nn.BatchNorm2d(out_channels)
        layers[f"relu{index}"] = nn.ReLU()
    return layers


class DilatedResNet(nn.Module):
    """forward(image) -> (layer3, layer4), both at 1/8 of the input size.

    `stem_container`: openseg keeps the stem in a `resinit` Sequential (keys `resinit.conv1.*`);
    OCNet.pytorch registers it on the network itself (keys `conv1.*`), so its networks subclass
    this class with `stem_container=False`.
    """

    def __init__(self, config: ResNetConfig, *, stem_container: bool):
        super().__init__()
        stem = _stem(config)
        self._stem_names: tuple[str, ...] = () if stem_container else tuple(stem)
        if stem_container:
            self.resinit = nn.Sequential(stem)
        else:
            for name, module in stem.items():
                self.add_module(name, module)
        # ceil_mode=True in both frameworks: a 250-pixel side gives 63, not 62, after the pool.
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        in_channels = config.stem_channels
        for index, count in enumerate(config.blocks):
            channels = config.width * 2 ** index
            self.add_module(f"layer{index + 1}", _layer(
                in_channels, channels, count, stride=LAYER_STRIDES[index],
                dilation=LAYER_DILATIONS[index],
                halve_first=config.halve_first_dilation))
            in_channels = channels * Bottleneck.expansion

    def run_stem(self, image: torch.Tensor) -> torch.Tensor:
        if not self._stem_names:
            return self.resinit(image)
        x = image
        for name in self._stem_names:
            x = getattr(self, name)(x)
        return x

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.run_stem(image))
        layer3 = self.layer3(self.layer2(self.layer1(x)))
        return layer3, self.layer4(layer3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features(image)
