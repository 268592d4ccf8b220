"""TensorRT and CUDA availability, probed without ever creating a TensorRT object on a machine
that cannot run one (a TensorRT runtime made without a driver wraps NULL and crashes the process).

CUDA binding: cuda-python's `cuda.bindings.runtime`. It is NVIDIA's official 1:1 binding of the
CUDA runtime, a small wheel that carries the runtime itself (no libcudart to find), imports on a
machine without a GPU and reports errors as return codes, and it is what TensorRT's own Python
samples use. CuPy is ten times larger and only pays off with GPU pre/post-processing; PyCUDA
builds from source; Polygraphy's wrapper needs libcudart.so on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ocr_deploy.backends.base import BackendUnavailable

INSTALL_HINT = ('install it with: pip install "ocr-deploy[tensorrt]" '
                '(needs an NVIDIA GPU and driver)')


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]


def cuda_runtime() -> ModuleType:
    try:
        from cuda.bindings import runtime
    except ImportError as error:
        raise BackendUnavailable(
            f"cuda-python is not installed ({error}); {INSTALL_HINT}") from None
    return runtime


def cuda_check(result: tuple) -> Any:
    """cuda-python returns (error, *values): raise on error, return the value(s)."""
    runtime = cuda_runtime()
    error, *values = result
    if error != runtime.cudaError_t.cudaSuccess:
        name = runtime.cudaGetErrorName(error)[1].decode()
        text = runtime.cudaGetErrorString(error)[1].decode()
        raise BackendUnavailable(f"CUDA error {name}: {text}")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(device: int = 0) -> GpuInfo:
    runtime = cuda_runtime()
    error, count = runtime.cudaGetDeviceCount()  # never raises; 35 = no driver, 100 = no device
    if error != runtime.cudaError_t.cudaSuccess or not count:
        reason = runtime.cudaGetErrorString(error)[1].decode() if error else "no CUDA device"
        raise BackendUnavailable(f"no usable NVIDIA GPU ({reason}); TensorRT needs one with its "
                                 "driver: run an .onnx model with ONNX Runtime instead")
    properties = cuda_check(runtime.cudaGetDeviceProperties(device))
    name = properties.name.split(b"\0", 1)[0].decode() if isinstance(properties.name, bytes) \
        else str(properties.name)
    return GpuInfo(name, (int(properties.major), int(properties.minor)))


def tensorrt() -> ModuleType:
    """The tensorrt module, once a GPU is known to be there."""
    try:
        import tensorrt as trt
    except ImportError as error:  # also a missing libnvinfer behind the bindings
        raise BackendUnavailable(f"TensorRT is not installed ({error}); {INSTALL_HINT}") from None
    gpu_info()
    return trt


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT backend cannot run here, or None when it can."""
    try:
        tensorrt()
    except BackendUnavailable as error:
        return str(error)
    return None


def tensorrt_version(trt: ModuleType) -> tuple[int, ...]:
    return tuple(int(part) for part in trt.__version__.split(".")[:3] if part.isdigit())
