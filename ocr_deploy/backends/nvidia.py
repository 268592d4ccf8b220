"""TensorRT and CUDA availability, probed without ever creating a TensorRT object on a machine
that cannot run one (a TensorRT runtime made without a driver wraps NULL and crashes the process).

CUDA binding: cuda-python's `cuda.bindings.runtime`. It is NVIDIA's official 1:1 binding of the
CUDA runtime, a small wheel that carries the runtime itself (no libcudart to find), imports on a
machine without a GPU and reports errors as return codes, and it is what TensorRT's own Python
samples use. CuPy is ten times larger and only pays off with GPU pre/post-processing; PyCUDA
builds from source; Polygraphy's wrapper needs libcudart.so on disk.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ocr_deploy.backends.base import BackendUnavailable

INSTALL_HINT = ('install it with: pip install "ocr-deploy[tensorrt]" (CUDA 13 builds), or '
                '"ocr-deploy[tensorrt-cu12]" for a CUDA 12 driver (needs an NVIDIA GPU and driver)')
# Python modules that can load a plan, preferred first: the full TensorRT, then the lean runtime
# (tensorrt-lean, ~46 MB), which runs version-compatible plans only.
RUNTIMES = ("tensorrt", "tensorrt_lean")
# The driver's CUDA version (major) -> the extra whose TensorRT and cuda-python builds it runs.
EXTRA_FOR_DRIVER = {13: "tensorrt-cu13", 12: "tensorrt-cu12"}


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
    cuda_runtime()
    from cuda.bindings import runtime  # again, for the type check: typings/cuda
    error, *values = result
    if error != runtime.cudaError_t.cudaSuccess:
        name = runtime.cudaGetErrorName(error)[1].decode()
        text = runtime.cudaGetErrorString(error)[1].decode()
        raise BackendUnavailable(f"CUDA error {name}: {text}")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(device: int = 0) -> GpuInfo:
    cuda_runtime()
    from cuda.bindings import runtime
    error, count = runtime.cudaGetDeviceCount()  # never raises; 35 = no driver, 100 = no device
    if error != runtime.cudaError_t.cudaSuccess or not count:
        reason = runtime.cudaGetErrorString(error)[1].decode() if error else "no CUDA device"
        raise BackendUnavailable(f"no usable NVIDIA GPU ({reason}); TensorRT needs one with its "
                                 "driver: run an .onnx model with ONNX Runtime instead")
    properties = cuda_check(runtime.cudaGetDeviceProperties(device))
    name = properties.name.split(b"\0", 1)[0].decode() if isinstance(properties.name, bytes) \
        else str(properties.name)
    return GpuInfo(name, (int(properties.major), int(properties.minor)))


def _import_runtime(name: str) -> ModuleType:
    """One TensorRT Python module; ImportError also for a package of type stubs only
    (tensorrt-stubs leaves a `tensorrt` folder that imports as an empty namespace)."""
    module = importlib.import_module(name)  # ImportError also for a missing libnvinfer
    if not hasattr(module, "Runtime"):
        raise ImportError(f"only type stubs of {name} are installed, not the library")
    return module


def tensorrt() -> ModuleType:
    """The full tensorrt module (builder and runtime), once a GPU is known to be there."""
    try:
        trt = _import_runtime("tensorrt")
    except ImportError:
        lean, name = tensorrt_runtime()  # the one message when neither runtime is there
        raise BackendUnavailable(f"{name} {lean.__version__} runs version-compatible plans but "
                                 f"cannot build them: {INSTALL_HINT}") from None
    gpu_info()
    return trt


def tensorrt_runtime() -> tuple[ModuleType, str]:
    """(module, its name) of the first of RUNTIMES that imports, once a GPU is known to be there:
    the full TensorRT, else the lean runtime."""
    errors = []
    for name in RUNTIMES:
        try:
            module = _import_runtime(name)
        except ImportError as error:
            errors.append(f"{name}: {error}")
            continue
        gpu_info()
        return module, name
    raise BackendUnavailable(f"TensorRT is not installed ({'; '.join(errors)}); {INSTALL_HINT}")


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT backend cannot run here (neither runtime, or no GPU), or None."""
    try:
        tensorrt_runtime()
    except BackendUnavailable as error:
        return str(error)
    return None


@functools.cache
def tensorrt_logger(trt: ModuleType) -> Any:
    """The one logger per TensorRT library (tensorrt, tensorrt_lean) for the whole process.

    A cached module-level singleton on purpose: TensorRT itself keeps one global logger pointer
    per library, so a logger per builder or runtime would only replace it for every other user.
    """
    return trt.Logger(trt.Logger.WARNING)


@dataclass(frozen=True)
class CudaVersions:
    """The driver's CUDA version (None: no driver) and that of cuda-python's CUDA runtime."""

    driver: tuple[int, int] | None
    runtime: tuple[int, int] | None

    def fitting_extra(self) -> str | None:
        return EXTRA_FOR_DRIVER.get(min(self.driver[0], max(EXTRA_FOR_DRIVER))) if self.driver else None

    def describe(self) -> str:
        """One line for `info`: both versions and which extra fits this driver."""
        runtime = (f"cuda-python's CUDA runtime {self.runtime[0]}.{self.runtime[1]}" if self.runtime
                   else "cuda-python not installed")
        if self.driver is None:
            return f"CUDA: no NVIDIA driver found; {runtime}"
        driver = f"driver supports CUDA {self.driver[0]}.{self.driver[1]}"
        extra = self.fitting_extra()
        advice = (f'pip install "ocr-deploy[{extra}]" fits it' if extra
                  else "too old for TensorRT 10 (needs CUDA 12 or newer): update the driver")
        mismatch = (" (newer than the driver: install the extra that fits)"
                    if self.runtime and self.runtime[0] > self.driver[0] else "")
        return f"CUDA: {driver}, {runtime}{mismatch}; {advice}"


def _cuda_version(code: int) -> tuple[int, int] | None:
    return (code // 1000, code % 1000 // 10) if code > 0 else None


def cuda_versions() -> CudaVersions:
    """Never raises: no cuda-python, or no driver, give None for that side."""
    try:
        cuda_runtime()
    except BackendUnavailable:
        return CudaVersions(None, None)
    from cuda.bindings import runtime
    driver_error, driver = runtime.cudaDriverGetVersion()  # 0 when no driver is loaded
    runtime_error, version = runtime.cudaRuntimeGetVersion()
    success = runtime.cudaError_t.cudaSuccess
    return CudaVersions(_cuda_version(driver) if driver_error == success else None,
                        _cuda_version(version) if runtime_error == success else None)


def tensorrt_version(trt: ModuleType) -> tuple[int, ...]:
    return tuple(int(part) for part in trt.__version__.split(".")[:3] if part.isdigit())
