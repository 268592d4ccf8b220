"""Checkpoint containers: where the state dict sits in a file, and what the file says about it.

Each framework wraps its weights its own way (CONTAINERS, first match wins): openseg.pytorch
`{'config_dict', 'state_dict'}`, mmsegmentation `{'meta', 'state_dict', ...}` (0.x releases and 1.x
training checkpoints), and the generic trainer containers ('state_dict', 'model', ...) or a bare
state dict (the HRNet-OCR reference, OCNet.pytorch). What a container states about the run (model
name, classes, normalisation, ...) becomes a `CheckpointSource`, checked against the weights in
exporters.source_checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporters.models.base import ChannelOrder, Normalisation
from exporters.safe_unpickle import InertObject
from ocr_deploy.errors import CheckpointError
from ocr_deploy.presets import RGB

if TYPE_CHECKING:
    import torch

_GENERIC_KEYS = ("state_dict", "model", "model_state_dict")


@dataclass(frozen=True)
class StatedNormalisation:
    """A framework's own statement: (pixel / divisor - mean) / std, mean/std in `channels` order."""

    channels: ChannelOrder
    divisor: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalisation(self) -> Normalisation:
        return Normalisation.from_framework(channels=self.channels, divisor=self.divisor,
                                            mean=self.mean, std=self.std)

    def describe(self) -> str:
        """'BGR, (pixel / 255 - mean) / std, mean (0.485, 0.456, 0.406) and std (...) in BGR order'."""
        mean, std = (", ".join(f"{value:g}" for value in values) for values in (self.mean, self.std))
        order = self.channels.value.upper()
        return (f"{order}, (pixel / {self.divisor:g} - mean) / std, mean ({mean}) and std ({std}) "
                f"in {order} order")


@dataclass(frozen=True, kw_only=True)
class CheckpointSource:
    """What a checkpoint's container says about the run that made it (None: not stated)."""

    container: str  # e.g. "openseg.pytorch checkpoint ('config_dict' + 'state_dict')"
    framework: str | None = None
    model_name: str | None = None
    backbone: str | None = None
    bn_type: str | None = None
    num_classes: int | None = None
    normalisation: StatedNormalisation | None = None
    dataset: str | None = None
    classes: tuple[str, ...] | None = None
    palette: tuple[RGB, ...] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerKind:
    name: str
    recognise: Callable[[Mapping[str, Any]], bool]
    read: Callable[[Mapping[str, Any], Path], CheckpointSource]


def unwrap(stored: Any, path: Path) -> tuple[dict[str, torch.Tensor], CheckpointSource]:
    """The flat name -> tensor dict inside a file's containers, and what the container says."""
    import torch

    kind = next((kind for kind in CONTAINERS if isinstance(stored, dict) and kind.recognise(stored)),
                None)
    if kind is not None:
        source = kind.read(stored, path)
        tensors = stored["state_dict"]
    else:
        tensors, source = _generic(stored)
    if not isinstance(tensors, dict) or not tensors:
        raise CheckpointError(f"{path} holds no state dict (found {type(tensors).__name__}); "
                              "pass a checkpoint saved with torch.save(model.state_dict(), ...)")
    not_tensors = [key for key, value in tensors.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries {not_tensors[:3]} are not tensors; expected a "
                              "state dict (or a training checkpoint with a 'state_dict' entry)")
    return tensors, source


def _generic(stored: Any) -> tuple[Any, CheckpointSource]:
    container = "flat state dict"
    for _ in range(3):
        if not isinstance(stored, dict):
            break
        inner = next((key for key in _GENERIC_KEYS if isinstance(stored.get(key), dict)), None)
        if inner is None:
            break
        container = f"training checkpoint ({inner!r} entry)"
        stored = stored[inner]
    return stored, CheckpointSource(container=container)


def _is_openseg(stored: Mapping[str, Any]) -> bool:
    return isinstance(stored.get("config_dict"), dict) and isinstance(stored.get("state_dict"), dict)


def _read_openseg(stored: Mapping[str, Any], path: Path) -> CheckpointSource:
    config = stored["config_dict"]
    where = _Fields(config, path, "config_dict")
    normalisation = None
    if where.get("normalize", "mean") is not None and where.get("normalize", "std") is not None:
        mode = where.text("data", "input_mode") or "BGR"
        normalisation = StatedNormalisation(
            channels=_channel_order(mode, path, "config_dict['data']['input_mode']"),
            divisor=where.number("normalize", "div_value") or 1.0,
            mean=where.triple("normalize", "mean"), std=where.triple("normalize", "std"))
    return CheckpointSource(
        container="openseg.pytorch checkpoint ('config_dict' + 'state_dict')",
        framework="openseg.pytorch", model_name=where.text("network", "model_name"),
        backbone=where.text("network", "backbone"), bn_type=where.text("network", "bn_type"),
        num_classes=_integer(where.number("data", "num_classes"), path),
        normalisation=normalisation, dataset=where.text("dataset"))


def _is_mmseg(stored: Mapping[str, Any]) -> bool:
    return isinstance(stored.get("meta"), dict) and isinstance(stored.get("state_dict"), dict)


def _read_mmseg(stored: Mapping[str, Any], path: Path) -> CheckpointSource:
    meta = stored["meta"]
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    if meta.get("mmseg_version"):
        framework = f"mmsegmentation {meta['mmseg_version']}"
    else:
        engine = meta.get("mmengine_version")
        framework = "mmsegmentation 1.x" + (f" (mmengine {engine})" if engine else "")
    classes = meta.get("CLASSES", dataset_meta.get("classes"))
    palette = meta.get("PALETTE", dataset_meta.get("palette"))
    config = meta.get("config", meta.get("cfg"))
    config = config if isinstance(config, str) else ""
    extra = sorted(key for key in stored if key not in ("meta", "state_dict"))
    notes = [f"training state left unused: {', '.join(extra)} (read without running pickled "
             "code)"] if extra else []
    # e.g. a palette saved as numpy arrays, which are never unpickled: left out, with a note.
    unread = [what for what, value in (("class names", classes), ("palette", palette))
              if _holds_stand_ins(value)]
    if unread:
        notes.append(f"the checkpoint stores its {' and '.join(unread)} as numpy objects, which "
                     "ocr-deploy does not unpickle; pass --dataset to choose names and colours")
    classes = None if _holds_stand_ins(classes) else classes
    palette = None if _holds_stand_ins(palette) else palette
    return CheckpointSource(
        container="mmsegmentation checkpoint ('meta' + 'state_dict')"
                  + (" with training state" if extra else ""),
        framework=framework, num_classes=_config_num_classes(config),
        normalisation=_config_normalisation(config, path),
        classes=None if classes is None else _class_names(classes, path),
        palette=None if palette is None else _palette(palette, path), notes=tuple(notes))


CONTAINERS: tuple[ContainerKind, ...] = (
    ContainerKind("openseg.pytorch", _is_openseg, _read_openseg),
    ContainerKind("mmsegmentation", _is_mmseg, _read_mmseg),
)


class _Fields:
    """Typed reads from a nested config dict, with messages naming the entry."""

    def __init__(self, data: Mapping[str, Any], path: Path, name: str):
        self.data, self.path, self.name = data, path, name

    def get(self, *keys: str) -> Any:
        value: Any = self.data
        for key in keys:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    def _where(self, keys: Sequence[str]) -> str:
        return self.name + "".join(f"[{key!r}]" for key in keys)

    def text(self, *keys: str) -> str | None:
        value = self.get(*keys)
        if value is None:
            return None
        if not isinstance(value, str):
            raise CheckpointError(f"{self.path}: {self._where(keys)} is {value!r}, not a name")
        return value

    def number(self, *keys: str) -> float | None:
        value = self.get(*keys)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CheckpointError(f"{self.path}: {self._where(keys)} is {value!r}, not a number")
        return float(value)

    def triple(self, *keys: str) -> tuple[float, float, float]:
        value = self.get(*keys)
        if not isinstance(value, Sequence) or len(value) != 3 or not all(
                isinstance(item, int | float) and not isinstance(item, bool) for item in value):
            raise CheckpointError(f"{self.path}: {self._where(keys)} is {value!r}, not three "
                                  "numbers (one per colour channel)")
        return (float(value[0]), float(value[1]), float(value[2]))


def _integer(value: float | None, path: Path) -> int | None:
    if value is None:
        return None
    if value != int(value):
        raise CheckpointError(f"{path}: the stated number of classes {value:g} is not a whole number")
    return int(value)


def _channel_order(mode: str, path: Path, where: str) -> ChannelOrder:
    try:
        return ChannelOrder(mode.lower())
    except ValueError:
        raise CheckpointError(f"{path}: {where} is {mode!r}; expected 'BGR' or 'RGB'") from None


def _holds_stand_ins(value: Any, depth: int = 2) -> bool:
    """Whether a list of names or colours (two levels at most) holds unpickled-object stand-ins."""
    if isinstance(value, InertObject):
        return True
    return depth > 0 and isinstance(value, list | tuple) and any(
        _holds_stand_ins(item, depth - 1) for item in value)


def _class_names(value: Any, path: Path) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(
            isinstance(name, str) for name in value):
        raise CheckpointError(f"{path}: the checkpoint's class names are {type(value).__name__}, "
                              "not a list of names")
    return tuple(name.strip() for name in value)


def _palette(value: Any, path: Path) -> tuple[RGB, ...]:
    def colour(item: Any) -> RGB:
        if not isinstance(item, Sequence) or len(item) != 3 or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in item):
            raise CheckpointError(f"{path}: the checkpoint's palette holds {item!r}, not an RGB "
                                  "colour of three 0..255 integers")
        return (int(item[0]), int(item[1]), int(item[2]))

    if not isinstance(value, Sequence) or isinstance(value, str):
        raise CheckpointError(f"{path}: the checkpoint's palette is {type(value).__name__}, not a "
                              "list of colours")
    return tuple(colour(item) for item in value)


_NUM_CLASSES = re.compile(r"\bnum_classes\s*=\s*(\d+)")
_LIST = r"\s*=\s*[\[(]([^\])]*)[\])]"
_MEAN, _STD = re.compile(r"\bmean" + _LIST), re.compile(r"\bstd" + _LIST)
_TO_RGB = re.compile(r"\b(?:bgr_)?to_rgb\s*=\s*(True|False)")


def _config_num_classes(config: str) -> int | None:
    """num_classes from mmseg's config text, when every head states the same number."""
    values = {int(value) for value in _NUM_CLASSES.findall(config)}
    return values.pop() if len(values) == 1 else None


def _config_normalisation(config: str, path: Path) -> StatedNormalisation | None:
    """mmseg's img_norm_cfg (0.x) or data_preprocessor (1.x): mean/std on 0..255, RGB when
    to_rgb / bgr_to_rgb is True (frames are read BGR)."""
    mean, std = _MEAN.search(config), _STD.search(config)
    if mean is None or std is None:
        return None
    try:
        values = [tuple(float(v) for v in found.group(1).split(",") if v.strip())
                  for found in (mean, std)]
    except ValueError:
        return None
    if any(len(triple) != 3 for triple in values):
        return None
    to_rgb = _TO_RGB.search(config)
    channels = ChannelOrder.bgr if to_rgb and to_rgb.group(1) == "False" else ChannelOrder.rgb
    return StatedNormalisation(channels=channels, divisor=1.0, mean=values[0], std=values[1])
