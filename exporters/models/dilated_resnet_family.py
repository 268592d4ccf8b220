"""What the dilated-ResNet families share (openseg.pytorch's and OCNet.pytorch's OCNet / OCR):
one family per framework, its heads in a table that says where each head's widths live in the
state dict, the head told from key names and everything else read from tensor shapes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from exporters.models.base import FamilyMatch, ModelFamily, Normalisation, OutputContract
from exporters.resnet_configs import OUTPUT_STRIDE, HeadWidths, ResNetConfig, fused_norm, out_channels
from ocr_deploy.errors import CheckpointError
from ocr_deploy.meta import NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

# forward() returns [aux, out] at 1/8 of the input; openseg and OCNet.pytorch both upsample with
# bilinear align_corners=True.
SEGMENTATION_INDEX = 1
DEFAULT_ALIGN_CORNERS = True


@dataclass(frozen=True, kw_only=True)
class DilatedResNetConfig:
    """A head (the framework's own name for it) on a dilated ResNet. `fused`: InPlace-ABN
    (leaky-ReLU 0.01 in the BN-act modules) rather than torch BatchNorm + ReLU."""

    head: str
    backbone: ResNetConfig
    num_classes: int
    widths: HeadWidths
    fused: bool = True
    align_corners: bool = DEFAULT_ALIGN_CORNERS


@dataclass(frozen=True)
class HeadLayout:
    """Where a head's widths live in a state dict (keys whose out-channels give them), the keys
    that tell the head apart, and the stride of its all-pairs self-attention grid (None: none)."""

    required: tuple[str, ...]
    channels: str
    key_channels: str
    value_channels: str
    dsn: str
    classifier: str
    norm: str  # a BN-act module: 'x.weight' with InPlace-ABN, 'x.0.weight' with torch BN
    branch: str | None = None
    self_attention_stride: int | None = None


Config = TypeVar("Config", bound=DilatedResNetConfig)


class DilatedResNetFamily(ModelFamily[Config]):
    """A family whose heads are the rows of `heads`; `required_keys` (the backbone's) are
    required by every head, each head's own `required` keys in addition."""

    heads: ClassVar[dict[str, HeadLayout]]
    normalisation: ClassVar[Normalisation]

    def match(self, weights: Mapping[str, Any]) -> FamilyMatch:
        """The verdict of the head whose keys fit best (table order on ties)."""
        sample = tuple(list(weights)[:3])
        verdicts = []
        for layout in self.heads.values():
            required = self.required_keys + layout.required
            missing = tuple(key for key in required if key not in weights)
            verdicts.append(FamilyMatch(self.title, len(required), missing, (), sample))
        best = max(verdicts, key=lambda verdict: verdict.score)  # the first on ties
        if best.matched:
            return best
        seen = tuple(description for pattern, description in self.look_alikes
                     if any(pattern.match(key) for key in weights))
        return replace(best, look_alikes=seen)

    def head_of(self, weights: Mapping[str, Any]) -> str:
        for name, layout in self.heads.items():
            if all(key in weights for key in self.required_keys + layout.required):
                return name
        raise CheckpointError(f"the checkpoint is not a {self.title} state dict: "
                              f"{self.match(weights).reason}")

    @staticmethod
    def read_widths(weights: Mapping[str, Any], layout: HeadLayout) -> HeadWidths:
        return HeadWidths(channels=out_channels(weights, layout.channels),
                          key_channels=out_channels(weights, layout.key_channels),
                          value_channels=out_channels(weights, layout.value_channels),
                          dsn=out_channels(weights, layout.dsn),
                          branch=out_channels(weights, layout.branch) if layout.branch else 0)

    def read_head(self, weights: Mapping[str, torch.Tensor], backbone: ResNetConfig, *,
                  align_corners: bool | None) -> dict[str, Any]:
        """The config fields every head shares, as keyword arguments."""
        head = self.head_of(weights)
        layout = self.heads[head]
        return {"head": head, "backbone": backbone,
                "num_classes": out_channels(weights, layout.classifier),
                "widths": self.read_widths(weights, layout), "fused": fused_norm(weights, layout.norm),
                "align_corners": DEFAULT_ALIGN_CORNERS if align_corners is None else align_corners}

    def settings(self, config: Config) -> dict[str, Any]:
        """What a file's metadata records about the network (and output_contract reads back)."""
        widths = config.widths
        settings: dict[str, Any] = {
            "backbone": config.backbone.name, "bn_type": "inplace_abn" if config.fused else "torchbn",
            "channels": widths.channels, "key_channels": widths.key_channels,
            "value_channels": widths.value_channels}
        if widths.branch:
            settings["branch_channels"] = widths.branch
        settings["output_stride"] = OUTPUT_STRIDE
        stride = self.heads[config.head].self_attention_stride
        if stride is not None:
            settings["self_attention_stride"] = stride
        return settings

    def output_contract(self, spec: NetworkSpec) -> OutputContract:
        return OutputContract(segmentation_index=SEGMENTATION_INDEX,
                              output_stride=int(spec.settings.get("output_stride", OUTPUT_STRIDE)),
                              align_corners=spec.align_corners, normalisation=self.normalisation)

    def classifiers(self, network: nn.Module) -> dict[int, nn.Conv2d]:
        return network.classifiers()


def look_alike(pattern: str, description: str) -> tuple[re.Pattern[str], str]:
    return re.compile(pattern), description
