"""Dataset presets: class names, palettes (RGB) and the reference's single-scale test-size policy.

Names and colours are facts from public dataset definitions; each JSON file says where they came
from. Policies follow the HRNet-OCR reference test script.
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass
from importlib import resources

from ocr_deploy.errors import ConfigError

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class TestSizePolicy:
    """How the reference sizes a test image before the single-scale forward pass.

    kind: 'native' (whole frame as is), 'resize-pad' (long side to `size`, then pad bottom-right
    with black to size x size) or 'squash' (resize to size x size, aspect ratio not kept).
    """

    kind: str
    size: int | None = None

    def describe(self) -> str:
        if self.kind == "resize-pad":
            return f"long side resized to {self.size}, padded bottom-right to {self.size}x{self.size}"
        if self.kind == "squash":
            return f"resized to {self.size}x{self.size}"
        return "full frame at native size in one pass"


@dataclass(frozen=True)
class DatasetPreset:
    name: str
    classes: tuple[str, ...]
    palette: tuple[RGB, ...]
    test_policy: TestSizePolicy
    flip_pairs: tuple[tuple[int, int], ...] = ()  # classes swapped by a horizontal flip

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# Cityscapes label ids -> train ids (everything else is ignored as 255).
CITYSCAPES_LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                             23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

_RESIZE_PAD_520 = TestSizePolicy("resize-pad", 520)
_POLICIES = {
    "cityscapes": TestSizePolicy("native"),
    "ade20k": _RESIZE_PAD_520,
    "pascal-context-59": _RESIZE_PAD_520,
    "pascal-context-60": _RESIZE_PAD_520,
    "cocostuff": _RESIZE_PAD_520,
    "lip": TestSizePolicy("squash", 473),
}
_FLIP_PAIRS = {"lip": ((14, 15), (16, 17), (18, 19))}


def preset_names() -> tuple[str, ...]:
    return tuple(_POLICIES)


def load_preset(name: str) -> DatasetPreset:
    if name not in _POLICIES:
        raise ConfigError(f"unknown dataset preset {name!r}; choose one of: "
                          + ", ".join(preset_names()))
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return DatasetPreset(name=name,
                         classes=tuple(label.strip() for label in data["classes"]),
                         palette=tuple((int(r), int(g), int(b)) for r, g, b in data["palette"]),
                         test_policy=_POLICIES[name],
                         flip_pairs=_FLIP_PAIRS.get(name, ()))


def generated_palette(num_classes: int) -> tuple[RGB, ...]:
    """Distinct, deterministic colours: hues a golden angle apart, alternating brightness."""
    colours = []
    for index in range(num_classes):
        hue = (index * 0.618033988749895) % 1.0
        value = 0.95 if index % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, value)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colours)


def generic_preset(num_classes: int) -> DatasetPreset:
    return DatasetPreset(name="generic",
                         classes=tuple(f"class_{index}" for index in range(num_classes)),
                         palette=generated_palette(num_classes),
                         test_policy=TestSizePolicy("native"))


def resolve_preset(name: str | None, num_classes: int) -> tuple[DatasetPreset, str | None]:
    """The preset for a model with `num_classes` outputs, and a note when it had to be guessed."""
    if name is not None:
        preset = load_preset(name)
        if preset.num_classes != num_classes:
            raise ConfigError(f"--dataset {name} has {preset.num_classes} classes but the model "
                              f"predicts {num_classes}; pick a matching preset or leave --dataset out")
        return preset, None
    matches = [candidate for candidate in preset_names()
               if load_preset(candidate).num_classes == num_classes]
    if len(matches) == 1:
        return load_preset(matches[0]), f"dataset preset {matches[0]!r} inferred from K={num_classes}"
    why = "several presets" if matches else "no preset"
    return generic_preset(num_classes), (
        f"{why} with K={num_classes}: generic class names and a generated palette; "
        "pass --dataset to name the classes")
