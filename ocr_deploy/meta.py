"""ModelMeta: what a deployed model computes, stored as versioned JSON inside the artifact.

Everything a runtime needs to feed the graph and read its output travels with the model file:
ONNX `metadata_props` (key META_KEY) or, for a TensorRT plan, a JSON sidecar.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ocr_deploy.errors import ModelFileError
from ocr_deploy.presets import RGB, TestSizePolicy
from ocr_deploy.vocabulary import Precision

META_KEY = "ocr_deploy"
SCHEMA_VERSION = 2  # 2: NetworkSpec names its model family (version 1 files still read)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIDE = 32


@dataclass(frozen=True)
class InputSpec:
    """The graph input. 'raw': uint8 NHWC BGR frames as OpenCV decodes them, normalised inside the
    graph. 'normalized': float32 NCHW RGB, already (x/255 - mean)/std."""

    format: str = "raw"
    name: str = "image"
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB order, on 0..1 values
    std: tuple[float, float, float] = IMAGENET_STD
    batch: int | None = None  # None: dynamic
    height: int | None = None
    width: int | None = None
    min_side: int = MIN_SIDE

    @property
    def dtype(self) -> str:
        return "uint8" if self.format == "raw" else "float32"

    @property
    def layout(self) -> str:
        return "NHWC, BGR" if self.format == "raw" else "NCHW, RGB"

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        if self.height is None or self.width is None:
            return None
        return (self.height, self.width)


@dataclass(frozen=True)
class OutputSpec:
    """'labels': class index per pixel [N,H,W]; 'logits'/'probs': float32 [N,K,H,W]."""

    kind: str = "labels"
    name: str = "labels"
    dtype: str = "uint8"


# Metadata written before model families were recorded describes HRNet-OCR by its two OCR widths.
_LEGACY_FAMILY, _LEGACY_TITLE = "hrnet_ocr", "HRNet-OCR"
_LEGACY_SETTINGS = ("mid_channels", "key_channels")


@dataclass(frozen=True, kw_only=True)
class NetworkSpec:
    """The network in the artifact. `family` is a key of the exporters' FAMILIES table, `title`
    its display name; `settings` holds the family's own JSON-able hyper-parameters; `align_corners`
    is the resize mode of the upsampling to input size."""

    family: str
    variant: str
    num_classes: int
    align_corners: bool
    settings: dict[str, Any] = field(default_factory=dict)
    title: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkSpec:
        """From stored JSON, including files written before families were recorded."""
        if "family" not in data:
            data = {"family": _LEGACY_FAMILY, "title": _LEGACY_TITLE,
                    "variant": data["variant"], "num_classes": data["num_classes"],
                    "align_corners": data["align_corners"],
                    "settings": {name: data[name] for name in _LEGACY_SETTINGS}}
        return cls(**{item.name: data[item.name] for item in fields(cls) if item.name in data})

    def describe(self) -> str:
        """'HRNet-OCR tiny, K=19, mid_channels 32, key_channels 16, align_corners=True'."""
        settings = "".join(f", {name} {value}" for name, value in self.settings.items())
        return (f"{self.title} {self.variant}, K={self.num_classes}{settings}, "
                f"align_corners={self.align_corners}")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    palette: tuple[RGB, ...]
    test_policy: TestSizePolicy
    flip_pairs: tuple[tuple[int, int], ...] = ()


# Before fp32_islands was a field, an FP16 graph without islands said so in its precision.
_LEGACY_FP16_NO_ISLANDS = "fp16-no-islands"


@dataclass(frozen=True)
class Provenance:
    """Where the artifact came from and its numeric precision (a vocabulary.Precision value).
    fp32_islands: whether an FP16 graph kept the OCR softmax islands in FP32."""

    checkpoint_name: str
    checkpoint_sha256: str
    toolkit_version: str
    precision: str = "fp32"
    notes: tuple[str, ...] = ()
    fp32_islands: bool = True

    def __post_init__(self) -> None:
        if self.precision == _LEGACY_FP16_NO_ISLANDS:  # older files still read
            object.__setattr__(self, "precision", "fp16")
            object.__setattr__(self, "fp32_islands", False)
        if self.precision not in Precision.values():
            raise ValueError(f"precision {self.precision!r} is not one of "
                             f"{', '.join(Precision.values())}")

    def describe_precision(self) -> str:
        if self.precision != Precision.fp16:  # fp32, bf16 (an inference hint), int8
            return self.precision
        return "fp16, " + ("OCR softmax islands in fp32" if self.fp32_islands else "no fp32 islands")


@dataclass(frozen=True)
class ModelMeta:
    network: NetworkSpec
    dataset: DatasetSpec
    input: InputSpec
    output: OutputSpec
    provenance: Provenance
    schema_version: int = field(default=SCHEMA_VERSION)

    @property
    def num_classes(self) -> int:
        return self.network.num_classes

    def with_precision(self, precision: str, *, fp32_islands: bool | None = None) -> ModelMeta:
        """The same model recorded at another precision (conversions, builds); fp32_islands
        None keeps what the provenance says."""
        islands = self.provenance.fp32_islands if fp32_islands is None else fp32_islands
        return replace(self, provenance=replace(self.provenance, precision=str(precision),
                                                fp32_islands=islands))

    def deployment_size(self) -> tuple[int, int] | None:
        """The size the model usually runs at: its fixed input, else its dataset's test size."""
        if self.input.fixed_size:
            return self.input.fixed_size
        policy = self.dataset.test_policy
        if policy.kind in ("resize-pad", "squash") and policy.size:
            return (policy.size, policy.size)
        return (1024, 2048) if self.dataset.name == "cityscapes" else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, *, source: str = "model") -> ModelMeta:
        """Parsed and checked for sense (ocr_deploy.meta_checks.check_values): K, class names,
        palette, input and output; anything else is one 'damaged metadata' ModelFileError."""
        from ocr_deploy.meta_checks import check_values

        try:
            data = json.loads(text)
            version = int(data.get("schema_version", 0))
            if version > SCHEMA_VERSION:
                raise ModelFileError(f"{source} was made by a newer ocr-deploy (metadata schema "
                                     f"{version} > {SCHEMA_VERSION}); upgrade ocr-deploy")
            meta = _build(cls, data)
        except RecursionError:  # JSON nested thousands deep: no metadata ocr-deploy writes
            raise ModelFileError(f"{source} has damaged ocr-deploy metadata (nested too deeply to "
                                 "be ours); export the model again with `ocr-deploy export`") from None
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
            raise ModelFileError(f"{source} has damaged ocr-deploy metadata ({error}); export the "
                                 "model again with `ocr-deploy export`") from None
        return check_values(meta, source=source)


def _build(kind: type, data: dict[str, Any]) -> Any:
    """Rebuild nested frozen dataclasses from JSON, turning lists back into tuples."""
    nested = {"dataset": DatasetSpec, "input": InputSpec, "output": OutputSpec,
              "provenance": Provenance, "test_policy": TestSizePolicy}
    values = {}
    for item in fields(kind):
        if item.name not in data:
            continue
        value = data[item.name]
        if item.name == "network" and isinstance(value, dict):
            value = NetworkSpec.from_dict(value)
        elif item.name in nested and isinstance(value, dict):
            value = _build(nested[item.name], value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        values[item.name] = value
    return kind(**values)


def meta_from_custom_map(custom: dict[str, str], *, source: str) -> ModelMeta:
    if META_KEY not in custom:
        raise ModelFileError(f"{source} has no ocr-deploy metadata; make the model with "
                             "`ocr-deploy export CHECKPOINT` (it embeds classes, palette and "
                             "input format)")
    return ModelMeta.from_json(custom[META_KEY], source=source)
