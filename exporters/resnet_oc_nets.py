"""The dilated-ResNet networks of openseg.pytorch (base_ocnet, asp_ocnet, spatial_ocrnet,
spatial_asp_ocrnet) and OCNet.pytorch (resnet101_{base,pyramid,asp}_oc_dsn).

Each returns [aux, out] at 1/8 of the input, before any upsampling (openseg upsamples both inside
its forward; the deploy graph does that instead, with the same align_corners=True). Attribute
names follow the frameworks' modules so their state dicts load strictly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import torch
from torch import nn

from exporters import hrnet_ocr
from exporters.oc_heads import (
    ASPOC,
    ASPOCR,
    BaseOC,
    BaseOCContext,
    OCRContext,
    PyramidOC,
    SelfAttentionBlock,
    conv_norm_act,
    head_style,
    norm_act,
)
from exporters.resnet_configs import ASP_DILATIONS, HeadWidths
from exporters.resnet_dilated import DilatedResNet

if TYPE_CHECKING:
    from exporters.models.ocnet_resnet import OCNetConfig
    from exporters.models.openseg_resnet import OpensegResNetConfig

    AnyConfig = Union[OCNetConfig, OpensegResNetConfig]

PYRAMID_SIZES = (1, 2, 3, 6)


def _dsn(config: AnyConfig, norm: nn.Module, *, dropout: float | None) -> nn.Sequential:
    """The auxiliary head on layer3: 3x3 conv, normalisation, [Dropout2d], 1x1 conv to K."""
    widths = config.widths
    layers = [nn.Conv2d(config.backbone.layer3_channels, widths.dsn, 3, padding=1), norm]
    if dropout is not None:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers, nn.Conv2d(widths.dsn, config.num_classes, 1))


def _pre(config: AnyConfig, *, fused: bool) -> list[nn.Module]:
    """3x3 conv (with bias) + BN-act from layer4 to the head width."""
    return conv_norm_act(config.backbone.layer4_channels, config.widths.channels, fused=fused, kernel=3)


def _stage(widths: HeadWidths, channels: int, *, fused: bool, depth: int, shared: bool,
           pool: int = 1) -> SelfAttentionBlock:
    return SelfAttentionBlock(channels, widths.key_channels, widths.value_channels, channels,
                              fused=fused, depth=depth, shared_query=shared, pool=pool)


class _Network(nn.Module):
    """`classifier_names`: module paths of the aux classifier and the segmentation classifier."""

    classifier_names: tuple[str, str]

    def classifiers(self) -> dict[int, nn.Conv2d]:
        return {index: self.get_submodule(name) for index, name in enumerate(self.classifier_names)}


class _Openseg(_Network):
    def __init__(self, config: OpensegResNetConfig):
        super().__init__()
        self.config = config
        self.backbone = DilatedResNet(config.backbone, stem_container=True)


class OpensegBaseOCNet(_Openseg):
    classifier_names = ("dsn.2", "cls")

    def __init__(self, config: OpensegResNetConfig):
        super().__init__(config)
        widths, fused = config.widths, config.fused
        self.oc_module_pre = nn.Sequential(*_pre(config, fused=fused))
        stage = _stage(widths, widths.channels, fused=fused, depth=2, shared=False)
        self.oc_module = BaseOC([stage], widths.channels, widths.channels, fused=fused, dropout=0.05)
        self.cls = nn.Conv2d(widths.channels, config.num_classes, 1)
        self.dsn = _dsn(config, norm_act(widths.dsn, fused=fused), dropout=None)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        layer3, layer4 = self.backbone(image)
        return [self.dsn(layer3), self.cls(self.oc_module(self.oc_module_pre(layer4)))]


class OpensegAspOCNet(_Openseg):
    classifier_names = ("dsn.2", "cls")

    def __init__(self, config: OpensegResNetConfig):
        super().__init__(config)
        widths, fused = config.widths, config.fused
        stage = _stage(widths, widths.branch, fused=fused, depth=2, shared=False, pool=2)
        context = BaseOCContext([stage], widths.branch, fused=fused, project=False)
        self.context = nn.Sequential(*_pre(config, fused=fused), ASPOC(
            widths.channels, widths.branch, 2 * widths.branch, context, fused=fused, bias=False,
            dilations=ASP_DILATIONS))
        self.cls = nn.Conv2d(2 * widths.branch, config.num_classes, 1)
        self.dsn = _dsn(config, norm_act(widths.dsn, fused=fused), dropout=None)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        layer3, layer4 = self.backbone(image)
        return [self.dsn(layer3), self.cls(self.context(layer4))]


class OpensegSpatialOCRNet(_Openseg):
    classifier_names = ("dsn_head.3", "head")

    def __init__(self, config: OpensegResNetConfig):
        super().__init__(config)
        widths, fused = config.widths, config.fused
        self.conv_3x3 = nn.Sequential(*_pre(config, fused=fused))
        self.spatial_ocr_head = hrnet_ocr.SpatialOCR(widths.channels, widths.key_channels,
                                                     style=head_style(fused=fused))
        self.head = nn.Conv2d(widths.channels, config.num_classes, 1)
        self.dsn_head = _dsn(config, norm_act(widths.dsn, fused=fused), dropout=0.05)
        self.spatial_gather = hrnet_ocr.SpatialGather()

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        layer3, layer4 = self.backbone(image)
        aux = self.dsn_head(layer3)
        pixels = self.conv_3x3(layer4)
        regions = self.spatial_gather(pixels, aux)
        return [aux, self.head(self.spatial_ocr_head(pixels, regions))]


class OpensegASPOCRNet(_Openseg):
    classifier_names = ("dsn_head.3", "head")

    def __init__(self, config: OpensegResNetConfig):
        super().__init__(config)
        widths, fused = config.widths, config.fused
        context = OCRContext(widths.branch, widths.key_channels, fused=fused)
        self.asp_ocr_head = ASPOCR(config.backbone.layer4_channels, widths.branch, widths.channels, context,
                                   fused=fused, bias=True, dilations=ASP_DILATIONS)
        self.head = nn.Conv2d(widths.channels, config.num_classes, 1)
        self.dsn_head = _dsn(config, norm_act(widths.dsn, fused=fused), dropout=0.1)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        layer3, layer4 = self.backbone(image)
        aux = self.dsn_head(layer3)
        return [aux, self.head(self.asp_ocr_head(layer4, aux))]


class _OCNet(DilatedResNet, _Network):
    """OCNet.pytorch keeps the ResNet's modules at the top level (a flat state dict), then
    `context`, `cls` and the `dsn` head on layer3; every BN-act is InPlace-ABN (leaky 0.01)."""

    classifier_names = ("dsn.3", "cls")

    def __init__(self, config: OCNetConfig):
        super().__init__(config.backbone, stem_container=False)
        self.config = config

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        layer3, layer4 = self.features(image)
        return [self.dsn(layer3), self.cls(self.context(self.before_context(layer4)))]

    def before_context(self, layer4: torch.Tensor) -> torch.Tensor:
        return layer4


class OCNetBaseOC(_OCNet):
    def __init__(self, config: OCNetConfig):
        super().__init__(config)
        widths = config.widths
        stage = _stage(widths, widths.channels, fused=True, depth=1, shared=True)
        self.context = nn.Sequential(*_pre(config, fused=True), BaseOC(
            [stage], widths.channels, widths.channels, fused=True, dropout=0.05))
        self.cls = nn.Conv2d(widths.channels, config.num_classes, 1)
        self.dsn = _dsn(config, norm_act(widths.dsn, fused=True), dropout=0.05)


class OCNetPyramidOC(_OCNet):
    def __init__(self, config: OCNetConfig):
        super().__init__(config)
        widths = config.widths
        # layer5 and the DSN use InPlace-ABN with activation 'none' here: a plain BatchNorm.
        self.layer5 = nn.Sequential(nn.Conv2d(config.backbone.layer4_channels, widths.channels, 3, padding=1),
                                    nn.BatchNorm2d(widths.channels))
        self.context = PyramidOC(widths.channels, widths.channels, widths.key_channels, widths.value_channels,
                                 PYRAMID_SIZES, fused=True, dropout=0.05)
        self.cls = nn.Conv2d(widths.channels, config.num_classes, 1)
        self.dsn = _dsn(config, nn.BatchNorm2d(widths.dsn), dropout=0.05)

    def before_context(self, layer4: torch.Tensor) -> torch.Tensor:
        return self.layer5(layer4)


class OCNetAspOC(_OCNet):
    def __init__(self, config: OCNetConfig):
        super().__init__(config)
        widths = config.widths
        stage = _stage(widths, widths.branch, fused=True, depth=1, shared=True, pool=2)
        context = BaseOCContext([stage], widths.branch, fused=True, project=True)
        self.context = nn.Sequential(*_pre(config, fused=True), ASPOC(
            widths.channels, widths.branch, 2 * widths.branch, context, fused=True, bias=False,
            dilations=ASP_DILATIONS))
        self.cls = nn.Conv2d(2 * widths.branch, config.num_classes, 1)
        self.dsn = _dsn(config, norm_act(widths.dsn, fused=True), dropout=0.1)


OPENSEG_NETWORKS: dict[str, type[_Openseg]] = {
    "base_ocnet": OpensegBaseOCNet, "asp_ocnet": OpensegAspOCNet,
    "spatial_ocrnet": OpensegSpatialOCRNet, "spatial_asp_ocrnet": OpensegASPOCRNet}
OCNET_NETWORKS: dict[str, type[_OCNet]] = {
    "base": OCNetBaseOC, "pyramid": OCNetPyramidOC, "asp": OCNetAspOC}
