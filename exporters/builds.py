"""`ocr-deploy build MODEL.onnx --backend NAME`: one table row per backend that has a build step.

Each row names the module whose `build_from_options(options, *, log)` turns an FP32 (or FP16)
ocr-deploy ONNX into that backend's artifact and returns a `BuiltArtifact`; the module loads only
when its backend is asked for. A backend that runs .onnx files as they are (ONNX Runtime) has no
row. Options a builder does not use must be refused by it, in one line, not ignored.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ocr_deploy.errors import ConfigError
from ocr_deploy.vocabulary import Precision

Size = tuple[int, int]


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """Everything `ocr-deploy build` can be told; each builder reads the fields that apply."""

    model: Path
    output: Path | None = None
    precision: Precision | None = None  # None: the backend's default
    shape: Size | None = None  # static input size
    min_shape: Size | None = None  # TensorRT dynamic profile: all three
    opt_shape: Size | None = None
    max_shape: Size | None = None
    batch: int | None = None
    workspace_gib: float = 4.0  # TensorRT builder workspace
    timing_cache: Path | None = None  # TensorRT timing cache file
    opt_level: int = 3  # TensorRT builder optimisation level
    frames: str | None = None  # images that prove a reduced-precision artifact against FP32
    calibration: str | None = None  # images/video for INT8 calibration (OpenVINO)
    format: str | None = None  # OpenVINO: "ir" (default) or "onnx" (QDQ, INT8 only)
    min_agreement: float | None = None  # share of labels equal to FP32; None: the builder's gate
    tf32: bool = False  # TensorRT: allow TF32 in FP32 layers
    version_compatible: bool = False  # TensorRT: a plan the lean runtime can run
    exclude_lean_runtime: bool = False  # TensorRT: ... without the lean runtime inside the plan


@dataclass(frozen=True)
class BuiltArtifact:
    """What a build wrote, for the command line to print."""

    path: Path
    file_bytes: int
    seconds: float
    rows: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class BuilderRow:
    backend: str
    module: str  # provides build_from_options(options, *, log) -> BuiltArtifact
    suffix: str  # of the artifact it writes
    precisions: tuple[Precision, ...]  # what `bench --all` builds and measures, default first
    static_shape: bool = False  # the artifact is built for one input size (`--size`)

    def build(self, options: BuildOptions, log: Callable[[str], None]) -> BuiltArtifact:
        return importlib.import_module(self.module).build_from_options(options, log=log)


BUILDERS: tuple[BuilderRow, ...] = (
    BuilderRow(backend="tensorrt", module="exporters.tensorrt_build", suffix=".engine",
               precisions=(Precision.fp16, Precision.fp32), static_shape=True),
    BuilderRow(backend="openvino", module="exporters.openvino_build", suffix=".xml",
               precisions=(Precision.fp32, Precision.bf16, Precision.int8)),
)


# Options only the TensorRT builder reads, as name=default: refused for every other backend.
TENSORRT_ONLY: dict[str, object] = {"tf32": False, "version_compatible": False,
                                    "exclude_lean_runtime": False}


def run_build(options: BuildOptions, *, backend: str = "tensorrt",
              log: Callable[[str], None] = lambda _: None) -> BuiltArtifact:
    for row in BUILDERS:
        if row.backend == backend:
            if backend != "tensorrt":
                refuse_unused(options, backend, **TENSORRT_ONLY)
            return row.build(options, log)
    raise ConfigError(f"--backend {backend} has no build step; `build` makes artifacts for "
                      f"{', '.join(row.backend for row in BUILDERS)} (ONNX Runtime runs the "
                      ".onnx file as it is)")


# BuildOptions fields whose command-line flag has another name.
_FLAGS = {"calibration": "--calib", "workspace_gib": "--workspace", "shape": "--size",
          "min_shape": "--min-size", "opt_shape": "--opt-size", "max_shape": "--max-size"}


def refuse_unused(options: BuildOptions, backend: str, **unused: object) -> None:
    """One line for options this backend's build does not take (given as name=default)."""
    for name, default in unused.items():
        if getattr(options, name) != default:
            flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
            raise ConfigError(f"{flag} does not apply to --backend {backend}")
