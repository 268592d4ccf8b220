"""Backends by name; a plain dict picks one, and heavy libraries load only when used."""

from __future__ import annotations

import importlib
from pathlib import Path

from ocr_deploy.backends.base import Backend, BackendUnavailable

# name -> (module, class); looked up lazily so that importing the runtime stays cheap.
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("ocr_deploy.backends.onnxrt", "OnnxRuntimeBackend"),
}
_BY_SUFFIX = {".onnx": "onnxruntime"}


def backend_for(path: Path, requested: str | None = None) -> str:
    if requested is not None:
        if requested not in BACKENDS:
            raise BackendUnavailable(f"unknown backend {requested!r}; choose one of "
                                     + ", ".join(BACKENDS))
        return requested
    name = _BY_SUFFIX.get(path.suffix.lower())
    if name is None:
        raise BackendUnavailable(f"cannot tell the backend of {path.name}; models end in "
                                 + " or ".join(_BY_SUFFIX) + " (or pass --backend)")
    return name


def open_backend(path: Path, *, backend: str | None = None, device: str = "auto") -> Backend:
    module_name, class_name = BACKENDS[backend_for(path, backend)]
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(path, device=device)


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "backend_for", "open_backend"]
