"""The choices ocr-deploy understands, spelled once: the library validates against these enums
and the command line offers exactly them.

Each is a `str` enum, so a member equals its value (`Device.cpu == "cpu"`), JSON metadata keeps
plain strings, and callers of the Python API may pass either.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from ocr_deploy.errors import ConfigError


class Choice(str, Enum):
    """Base of every choice: prints as its value, parses with a message listing the options."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


ChoiceT = TypeVar("ChoiceT", bound=Choice)


def parse_choice(kind: type[ChoiceT], value: str | ChoiceT, option: str) -> ChoiceT:
    """`value` as a member of `kind`, or a ConfigError that names the option and its choices."""
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{option} must be one of {', '.join(kind.values())} "
                          f"(got {value!r})") from None


class Device(Choice):
    """Where a backend runs. `tensorrt`: ONNX Runtime's TensorRT execution provider."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


class SizePolicy(Choice):
    """How frames are sized for the network (see preprocess.plan_size). sliding: overlapping
    tiles of the network input, class scores averaged where they overlap (ocr_deploy.tiling)."""

    auto = "auto"
    native = "native"
    resize = "resize"
    letterbox = "letterbox"
    reference = "reference"
    sliding = "sliding"


class OutputKind(Choice):
    """What an exported graph returns: class ids, or float32 scores at input size."""

    labels = "labels"
    logits = "logits"
    probs = "probs"


class InputFormat(Choice):
    """raw: uint8 NHWC BGR frames, normalised in the graph; normalized: float32 NCHW RGB."""

    raw = "raw"
    normalized = "normalized"


class Precision(Choice):
    """Numeric precision of an artifact. Which nodes stay FP32 in an FP16 graph is a separate
    field (Provenance.fp32_islands), never a suffix of this value. bf16: an FP32 graph that
    asks its runtime (OpenVINO on CPUs with AMX/AVX-512 BF16) to compute in bfloat16; int8: a
    post-training quantized graph whose OCR islands and classifier stay in higher precision."""

    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"


class ArtifactFormat(Choice):
    """What `build --backend openvino` writes: an OpenVINO IR, or (int8 only) a QDQ ONNX file."""

    ir = "ir"
    onnx = "onnx"


class PerformanceMode(Choice):
    """What a CPU backend (OpenVINO) tunes for: one frame at a time, or many frames at once."""

    latency = "latency"
    throughput = "throughput"


class SaveKind(Choice):
    """What `infer` writes: per-frame images, or per-source video and CSV."""

    labels = "labels"
    color = "color"
    overlay = "overlay"
    video = "video"
    csv = "csv"
