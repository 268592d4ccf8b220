"""TensorRT backend: a plain plan plus its JSON sidecar, named-tensor API only (TensorRT 10).

One CUDA stream per backend; device and pinned host buffers for the input and every output,
allocated once per input shape and reused; an execution context is not thread-safe, so `run`
holds a lock.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocr_deploy.backends.base import BackendUnavailable
from ocr_deploy.backends.nvidia import (
    cuda_check,
    cuda_runtime,
    gpu_info,
    tensorrt,
    tensorrt_unavailable_reason,
)
from ocr_deploy.engine_sidecar import check_compatible, read_sidecar
from ocr_deploy.errors import ModelFileError
from ocr_deploy.meta import ModelMeta
from ocr_deploy.preprocess import FrameError

if TYPE_CHECKING:  # the named-tensor API, checked against tensorrt-stubs
    import tensorrt as trt_api

_CACHED_SHAPES = 4  # buffer sets kept for recently used input shapes


@dataclass
class _Buffer:
    """One tensor's pinned host memory (viewed as `host`) and its device memory."""

    host_ptr: int
    device_ptr: int
    host: np.ndarray

    def free(self, cuda: Any) -> None:
        cuda.cudaFree(self.device_ptr)
        cuda.cudaFreeHost(self.host_ptr)


def _allocate(cuda: Any, shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
    size = max(1, int(np.prod(shape)) * dtype.itemsize)
    host_ptr = cuda_check(cuda.cudaMallocHost(size))
    try:
        device_ptr = cuda_check(cuda.cudaMalloc(size))
    except BaseException:
        cuda.cudaFreeHost(host_ptr)
        raise
    raw = (ctypes.c_uint8 * size).from_address(host_ptr)
    host = np.frombuffer(memoryview(raw), dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    return _Buffer(host_ptr, device_ptr, host)


@dataclass
class _ShapeBuffers:
    """Everything one input shape needs: the input and every output, by tensor name."""

    input: _Buffer
    outputs: dict[str, _Buffer]

    def free(self, cuda: Any) -> None:
        for buffer in (self.input, *self.outputs.values()):
            buffer.free(cuda)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: Path, *, device: str = "auto", threads: int | None = None):
        """`threads` is accepted for a signature shared by every backend; TensorRT computes on
        the GPU, so it has no CPU threads to set."""
        if device == "cpu":
            raise BackendUnavailable("the TensorRT backend runs on a GPU; use an .onnx model "
                                     "with --device cpu")
        self.sidecar = read_sidecar(path)
        self.meta = self.sidecar.meta
        trt = tensorrt()
        gpu = gpu_info()
        check_compatible(self.sidecar, plan=path, tensorrt_version=trt.__version__,
                         gpu_name=gpu.name, compute_capability=gpu.compute_capability)
        self._trt, self._gpu = trt, gpu
        self._logger: trt_api.ILogger = trt.Logger(trt.Logger.WARNING)
        self._runtime: trt_api.Runtime = trt.Runtime(self._logger)
        engine: trt_api.ICudaEngine | None = self._runtime.deserialize_cuda_engine(
            path.read_bytes())
        if engine is None:
            raise ModelFileError(f"TensorRT could not load {path.name} (see its log above); "
                                 f"{self.sidecar.rebuild_hint()}")
        self._engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        missing = {self.meta.input.name, self.meta.output.name} - set(names)
        if missing:
            raise ModelFileError(f"{path.name} has no tensor(s) {sorted(missing)} that its sidecar "
                                 f"names; {self.sidecar.rebuild_hint()}")
        self._input = self.meta.input.name
        # I/O tensors keep the network's order, which the ONNX parser takes from the graph.
        self._outputs = {name: np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                         for name in names
                         if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT}
        self._context: trt_api.IExecutionContext = engine.create_execution_context()
        self._cuda = cuda_runtime()
        self._stream: Any = cuda_check(self._cuda.cudaStreamCreateWithFlags(
            self._cuda.cudaStreamNonBlocking))
        self._buffers: OrderedDict[tuple, _ShapeBuffers] = OrderedDict()
        self._lock = threading.Lock()

    def _buffers_for(self, shape: tuple[int, ...], dtype: np.dtype) -> _ShapeBuffers:
        key = (shape, dtype.str)
        if key in self._buffers:
            self._buffers.move_to_end(key)
            return self._buffers[key]
        if not self._context.set_input_shape(self._input, shape):
            raise FrameError(f"TensorRT rejected input shape {shape}")
        cuda = self._cuda
        made: list[_Buffer] = []
        try:
            made.append(_allocate(cuda, shape, dtype))
            for name, out_dtype in self._outputs.items():
                made.append(_allocate(cuda, tuple(self._context.get_tensor_shape(name)), out_dtype))
        except BaseException:
            for buffer in made:
                buffer.free(cuda)
            raise
        buffers = _ShapeBuffers(made[0], dict(zip(self._outputs, made[1:], strict=True)))
        self._buffers[key] = buffers
        if len(self._buffers) > _CACHED_SHAPES:
            self._buffers.popitem(last=False)[1].free(cuda)
        return buffers

    def run(self, graph_input: np.ndarray) -> dict[str, np.ndarray]:
        shape = tuple(graph_input.shape)
        profile = self.sidecar.profile
        if not profile.contains(shape):
            raise FrameError(f"input {shape} is outside the engine's profile {profile.min}.."
                             f"{profile.max}; pass --size inside it, or rebuild with "
                             "--min-shape/--max-shape")
        cuda, to_device = self._cuda, self._cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            buffers = self._buffers_for(shape, graph_input.dtype)
            np.copyto(buffers.input.host, graph_input)
            context = self._context
            context.set_input_shape(self._input, shape)
            missing = context.infer_shapes()
            if missing:
                raise FrameError(f"TensorRT could not infer shapes for {missing}")
            context.set_tensor_address(self._input, buffers.input.device_ptr)
            for name, buffer in buffers.outputs.items():
                context.set_tensor_address(name, buffer.device_ptr)
            cuda_check(cuda.cudaMemcpyAsync(buffers.input.device_ptr, buffers.input.host_ptr,
                                            buffers.input.host.nbytes, to_device, self._stream))
            if not context.execute_async_v3(int(self._stream)):
                raise FrameError("TensorRT execution failed (see its log above)")
            for buffer in buffers.outputs.values():
                cuda_check(cuda.cudaMemcpyAsync(buffer.host_ptr, buffer.device_ptr,
                                                buffer.host.nbytes, to_host, self._stream))
            cuda_check(cuda.cudaStreamSynchronize(self._stream))
            return {name: buffer.host.copy() for name, buffer in buffers.outputs.items()}

    def describe(self) -> str:
        major, minor = self._gpu.compute_capability
        return (f"tensorrt {self._trt.__version__} on {self._gpu.name} (sm_{major}{minor}), "
                f"{self.sidecar.precision} engine")

    def close(self) -> None:
        with self._lock:
            for buffers in self._buffers.values():
                buffers.free(self._cuda)
            self._buffers.clear()
            if self._stream is not None:
                self._cuda.cudaStreamDestroy(self._stream)
                self._stream = None

    def __del__(self) -> None:
        if getattr(self, "_stream", None) is not None:
            self.close()


def unavailable_reason() -> str | None:
    return tensorrt_unavailable_reason()


def status_detail() -> str:
    return f"TensorRT {tensorrt().__version__} on {gpu_info().name}"


def read_meta(path: Path) -> ModelMeta:
    """The metadata in the plan's JSON sidecar; the plan itself stays a plain TensorRT plan."""
    return read_sidecar(path).meta


def artifact_rows(path: Path) -> list[tuple[str, str]]:
    """What the engine was built for: precision, TensorRT, GPU, profile and its ONNX."""
    return read_sidecar(path).rows()
