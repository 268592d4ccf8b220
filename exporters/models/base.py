"""What every model family provides: recognise its weights, read its settings from tensor shapes,
build the network, and say which output is the segmentation and what input it was trained on.

A family is one small module with one `ModelFamily` subclass; `exporters.models.FAMILIES` lists
them. Nothing here imports torch at import time.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ocr_deploy.errors import CheckpointError
from ocr_deploy.meta import NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

Config = TypeVar("Config")
RGBValues = tuple[float, float, float]


class ChannelOrder(str, Enum):
    """The order of the three colour channels a network reads."""

    rgb = "rgb"
    bgr = "bgr"


@dataclass(frozen=True)
class Normalisation:
    """Input normalisation a family was trained with, in ocr_deploy's InputSpec convention:
    mean and std in RGB order on 0..1 values, so channel c is (pixel/255 - mean[c]) / std[c].
    `channels` is the order the network reads its input channels in (openseg keeps BGR)."""

    mean: RGBValues
    std: RGBValues
    channels: ChannelOrder = ChannelOrder.rgb

    @classmethod
    def from_framework(cls, *, channels: ChannelOrder, divisor: float, mean: Sequence[float],
                       std: Sequence[float]) -> Normalisation:
        """From a framework's own statement: (pixel / divisor - mean) / std, with mean and std
        listed in the order of `channels` (e.g. Caffe-style ResNets: BGR, divisor 1, std 1)."""
        # pixel/divisor = (pixel/255) * factor, so (pixel/255 - mean/factor) / (std/factor).
        factor = 255.0 / divisor
        scaled_mean = tuple(float(value) / factor for value in mean)
        scaled_std = tuple(float(value) / factor for value in std)
        if channels is ChannelOrder.bgr:
            scaled_mean, scaled_std = scaled_mean[::-1], scaled_std[::-1]
        return cls(_three(scaled_mean), _three(scaled_std), channels)


def _three(values: tuple[float, ...]) -> RGBValues:
    if len(values) != 3:
        raise ValueError(f"expected three channel values, got {len(values)}")
    return (values[0], values[1], values[2])


@dataclass(frozen=True)
class OutputContract:
    """How to read a family's network: `network(x)[segmentation_index]` holds the class scores
    at 1/`output_stride` of the input size (1: already at input size), to be resized to the input
    with `align_corners`; the network expects input normalised as `normalisation` says."""

    segmentation_index: int
    output_stride: int
    align_corners: bool
    normalisation: Normalisation

    def segmentation(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return outputs[self.segmentation_index]


@dataclass(frozen=True)
class FamilyMatch:
    """How well a state dict fits a family: which of its required keys are missing, and which
    networks people mistake for it the keys resemble."""

    title: str
    required: int
    missing: tuple[str, ...]
    look_alikes: tuple[str, ...]
    sample: tuple[str, ...]  # the first few keys of the state dict, for messages

    @property
    def matched(self) -> bool:
        return not self.missing

    @property
    def score(self) -> float:
        """The share of required keys present (1.0 when matched)."""
        return (self.required - len(self.missing)) / self.required if self.required else 0.0

    @property
    def reason(self) -> str:
        if self.matched:
            return f"it has all {self.required} keys {self.title} needs"
        if self.look_alikes:
            return f"it looks like {self.look_alikes[0]}, not {self.title}"
        more = f" (and {len(self.missing) - 1} more)" if len(self.missing) > 1 else ""
        keys = ", ".join(repr(key) for key in self.sample)
        return (f"it lacks {self.missing[0]!r}{more} of the {self.required} keys {self.title} "
                f"needs; its keys look like {keys}")


class ModelFamily(ABC, Generic[Config]):
    """One network family. Subclasses set the class attributes and implement the abstract methods;
    `match` and `load` are shared."""

    key: ClassVar[str]  # stored in NetworkSpec.family, e.g. "hrnet_ocr"
    title: ClassVar[str]  # display name, e.g. "HRNet-OCR"
    # The codebase whose checkpoints this family reads, e.g. "openseg.pytorch", and the model names
    # that codebase's own configuration uses for it (openseg's config_dict['network']['model_name']),
    # so a container's stated model can be checked against the family the keys say.
    framework: ClassVar[str] = "HRNet-OCR reference"
    framework_models: ClassVar[tuple[str, ...]] = ()
    config_type: ClassVar[type]
    required_keys: ClassVar[tuple[str, ...]]  # present in every state dict of the family
    example_key: ClassVar[str]  # a distinctive key, named in error messages
    # (key pattern, description) of networks people mistake for this family.
    look_alikes: ClassVar[tuple[tuple[re.Pattern[str], str], ...]] = ()

    def match(self, weights: Mapping[str, Any]) -> FamilyMatch:
        """Whether a prefix-stripped state dict belongs to this family, and why (not)."""
        missing = tuple(key for key in self.required_keys if key not in weights)
        seen = tuple(description for pattern, description in self.look_alikes
                     if any(pattern.match(key) for key in weights))
        return FamilyMatch(self.title, len(self.required_keys), missing,
                           seen if missing else (), tuple(list(weights)[:3]))

    @abstractmethod
    def infer_config(self, weights: Mapping[str, torch.Tensor], *,
                     align_corners: bool | None = None) -> Config:
        """Every hyper-parameter, read back from tensor shapes. `align_corners` (which shapes
        cannot tell) overrides the family's default where the family has a choice."""

    @abstractmethod
    def build(self, config: Config) -> nn.Module:
        """A fresh eval-mode network; it keeps `config` as its `.config` attribute."""

    @abstractmethod
    def network_spec(self, config: Config) -> NetworkSpec:
        """The metadata record of this network."""

    @abstractmethod
    def output_contract(self, spec: NetworkSpec) -> OutputContract:
        """How to read the network that `spec` records (also for specs read back from files)."""

    @abstractmethod
    def example_config(self, *, num_classes: int) -> Config:
        """The smallest configuration with every code path of the family, for tests."""

    @abstractmethod
    def classifiers(self, network: nn.Module) -> dict[int, nn.Conv2d]:
        """The final K-channel convolution behind each network output, by output index."""

    def describe(self, config: Config) -> str:
        return self.network_spec(config).describe()

    def load(self, config: Config, weights: Mapping[str, torch.Tensor]) -> nn.Module:
        """An eval-mode network holding `weights`, loaded strictly after a readable fit check."""
        network = self.build(config)
        check_fit(weights, network.state_dict(), self.describe(config))
        network.load_state_dict(dict(weights), strict=True)
        return network.eval()


def check_fit(weights: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
              network: str) -> None:
    """Raise a readable error listing missing, unexpected and mis-shaped keys."""
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    misshaped = [f"{key} {list(weights[key].shape)} vs {list(expected[key].shape)}"
                 for key in expected
                 if key in weights and weights[key].shape != expected[key].shape]
    if not (missing or unexpected or misshaped):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("mis-shaped (file vs network)", misshaped)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
    raise CheckpointError(f"weights do not fit {network}; " + "; ".join(parts))
