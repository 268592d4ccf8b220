"""Backends by name; a plain dict picks one, and heavy libraries load only when used."""

from __future__ import annotations

import importlib
from pathlib import Path

from ocr_deploy.backends.base import Backend, BackendUnavailable

# name -> (module, class); looked up lazily so that importing the runtime stays cheap.
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("ocr_deploy.backends.onnxrt", "OnnxRuntimeBackend"),
    "tensorrt": ("ocr_deploy.backends.trt", "TensorRTBackend"),
}
_BY_SUFFIX = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}


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


def backend_status() -> list[tuple[str, bool, str]]:
    """(name, usable here, what it runs on or why not) for every backend."""
    from ocr_deploy.backends.nvidia import tensorrt_unavailable_reason

    try:
        import onnxruntime as ort

        providers = ", ".join(p.replace("ExecutionProvider", "") for p in ort.get_available_providers())
        status = [("onnxruntime", True, f"onnxruntime {ort.__version__}: {providers}")]
    except ImportError as error:
        status = [("onnxruntime", False, f"not installed ({error}): pip install onnxruntime")]
    reason = tensorrt_unavailable_reason()
    if reason is None:
        import tensorrt as trt

        from ocr_deploy.backends.nvidia import gpu_info

        status.append(("tensorrt", True, f"TensorRT {trt.__version__} on {gpu_info().name}"))
    else:
        status.append(("tensorrt", False, reason))
    return status


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "backend_for", "backend_status",
           "open_backend"]
