"""Backends by name: one table row per backend; its module loads only when that backend is used.

Adding a backend = one module (the Backend class plus the BackendModule functions, see base.py)
and one row in BACKEND_TABLE. Every function here is a loop over the table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ocr_deploy.backends.base import Backend, BackendModule, BackendUnavailable
from ocr_deploy.meta import ModelMeta
from ocr_deploy.vocabulary import Device, parse_choice


@dataclass(frozen=True, kw_only=True)
class BackendSpec:
    """One backend: where its code lives, which files it opens and where it can run."""

    name: str
    module: str  # imported on first use only
    backend_class: str  # constructed as backend_class(path, device=..., threads=..., **options)
    suffixes: tuple[str, ...]  # lower case, with the dot
    devices: tuple[Device, ...]

    def load(self) -> BackendModule:
        return cast(BackendModule, importlib.import_module(self.module))

    def unavailable_reason(self) -> str | None:
        try:
            module = self.load()
        except ImportError as error:  # the module itself needs something missing
            return f"cannot import {self.module} ({error})"
        return module.unavailable_reason()

    def opens(self, path: Path) -> bool:
        return path.name.lower().endswith(self.suffixes)

    def open(self, path: Path, *, device: str = "auto", **options: Any) -> Backend:
        chosen = parse_choice(Device, device, "--device")
        if chosen not in self.devices:
            raise BackendUnavailable(
                f"the {self.name} backend runs with --device {', '.join(self.devices)}, not "
                f"{chosen}; {_who_runs_on(chosen)}")
        backend_class = getattr(self.load(), self.backend_class)
        return cast(Backend, backend_class(path, device=chosen, **options))


BACKEND_TABLE: tuple[BackendSpec, ...] = (
    BackendSpec(name="onnxruntime", module="ocr_deploy.backends.onnxrt",
                backend_class="OnnxRuntimeBackend", suffixes=(".onnx",), devices=tuple(Device)),
    BackendSpec(name="tensorrt", module="ocr_deploy.backends.trt",
                backend_class="TensorRTBackend", suffixes=(".engine", ".plan"),
                devices=(Device.auto, Device.cuda, Device.tensorrt)),
    # .xml (an IR) picks OpenVINO; an .onnx file goes to ONNX Runtime unless --backend openvino.
    BackendSpec(name="openvino", module="ocr_deploy.backends.openvino",
                backend_class="OpenVinoBackend", suffixes=(".xml", ".onnx"),
                devices=(Device.auto, Device.cpu)),
)
BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in BACKEND_TABLE}


def _who_runs_on(device: Device) -> str:
    suffixes = list(dict.fromkeys(suffix for spec in BACKEND_TABLE if device in spec.devices
                                  for suffix in spec.suffixes))
    return f"use a {' or '.join(suffixes)} model there" if suffixes else "no backend runs there"


def spec_for(path: Path, requested: str | None = None, *,
             table: tuple[BackendSpec, ...] = BACKEND_TABLE) -> BackendSpec:
    """The backend asked for by name, else the one whose file suffix the path has. `table`
    lets the build side add its own rows (PyTorch for checkpoints)."""
    if requested is not None:
        for spec in table:
            if spec.name == requested:
                return spec
        raise BackendUnavailable(f"unknown backend {requested!r}; choose one of "
                                 + ", ".join(spec.name for spec in table))
    for spec in table:
        if spec.opens(path):
            return spec
    suffixes = list(dict.fromkeys(suffix for spec in table for suffix in spec.suffixes))
    raise BackendUnavailable(f"cannot tell the backend of {path.name}; models end in "
                             + " or ".join(suffixes) + " (or pass --backend)")


def backend_for(path: Path, requested: str | None = None) -> str:
    return spec_for(path, requested).name


def open_backend(path: Path, *, backend: str | None = None, device: str = "auto",
                 **options: Any) -> Backend:
    """Open a model made by ocr-deploy; options (threads=...) go to the backend class."""
    return spec_for(path, backend).open(path, device=device, **options)


def read_meta(path: Path) -> ModelMeta:
    """The metadata that travels with a model file, read without running it."""
    return spec_for(path).load().read_meta(path)


def backend_status() -> list[tuple[str, bool, str]]:
    """(name, usable here, what it runs on or why not) for every backend."""
    status = []
    for spec in BACKEND_TABLE:
        reason = spec.unavailable_reason()
        detail = spec.load().status_detail() if reason is None else reason
        status.append((spec.name, reason is None, detail))
    return status


__all__ = ["BACKENDS", "BACKEND_TABLE", "Backend", "BackendModule", "BackendSpec",
           "BackendUnavailable", "backend_for", "backend_status", "open_backend", "read_meta",
           "spec_for"]
