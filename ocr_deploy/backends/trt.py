"""TensorRT backend: a plain plan plus its JSON sidecar, named-tensor API only.

One CUDA stream per backend; device and pinned host buffers allocated once per input shape and
reused; an execution context is not thread-safe, so `run` holds a lock.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ocr_deploy.backends.base import BackendUnavailable
from ocr_deploy.backends.nvidia import cuda_check, cuda_runtime, gpu_info, tensorrt
from ocr_deploy.engine_sidecar import check_compatible, read_sidecar
from ocr_deploy.errors import ModelFileError
from ocr_deploy.preprocess import FrameError

_CACHED_SHAPES = 4  # buffer sets kept for recently used input shapes


def _pinned_array(pointer: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = (ctypes.c_uint8 * size).from_address(pointer)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


@dataclass
class _Buffers:
    """Device and pinned host memory for one input shape."""

    device_in: int
    device_out: int
    host_in_ptr: int
    host_out_ptr: int
    host_in: np.ndarray
    host_out: np.ndarray

    def free(self, runtime: Any) -> None:
        for pointer in (self.device_in, self.device_out):
            runtime.cudaFree(pointer)
        for pointer in (self.host_in_ptr, self.host_out_ptr):
            runtime.cudaFreeHost(pointer)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: Path, *, device: str = "auto"):
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
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModelFileError(f"TensorRT could not load {path.name} (see its log above); "
                                 f"{self.sidecar.rebuild_hint()}")
        names = {self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)}
        missing = {self.meta.input.name, self.meta.output.name} - names
        if missing:
            raise ModelFileError(f"{path.name} has no tensor(s) {sorted(missing)} that its sidecar "
                                 f"names; {self.sidecar.rebuild_hint()}")
        self._context = self._engine.create_execution_context()
        self._cuda = cuda_runtime()
        self._stream = cuda_check(self._cuda.cudaStreamCreateWithFlags(
            self._cuda.cudaStreamNonBlocking))
        self._input, self._output = self.meta.input.name, self.meta.output.name
        self._out_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._output)))
        self._buffers: OrderedDict[tuple, _Buffers] = OrderedDict()
        self._lock = threading.Lock()

    def _buffers_for(self, shape: tuple[int, ...], dtype: np.dtype) -> _Buffers:
        key = (shape, dtype.str)
        if key in self._buffers:
            self._buffers.move_to_end(key)
            return self._buffers[key]
        if not self._context.set_input_shape(self._input, shape):
            raise FrameError(f"TensorRT rejected input shape {shape}")
        out_shape = tuple(self._context.get_tensor_shape(self._output))
        in_bytes = int(np.prod(shape)) * dtype.itemsize
        out_bytes = int(np.prod(out_shape)) * self._out_dtype.itemsize
        cuda = self._cuda
        pointers: list[tuple[int, bool]] = []  # (pointer, pinned host memory?)
        try:
            for size, pinned in ((in_bytes, True), (out_bytes, True), (in_bytes, False),
                                 (out_bytes, False)):
                allocate = cuda.cudaMallocHost if pinned else cuda.cudaMalloc
                pointers.append((cuda_check(allocate(size)), pinned))
        except BaseException:
            for pointer, pinned in pointers:
                (cuda.cudaFreeHost if pinned else cuda.cudaFree)(pointer)
            raise
        (host_in, _), (host_out, _), (device_in, _), (device_out, _) = pointers
        buffers = _Buffers(device_in, device_out, host_in, host_out,
                           _pinned_array(host_in, shape, dtype),
                           _pinned_array(host_out, out_shape, self._out_dtype))
        self._buffers[key] = buffers
        if len(self._buffers) > _CACHED_SHAPES:
            self._buffers.popitem(last=False)[1].free(cuda)
        return buffers

    def run(self, graph_input: np.ndarray) -> np.ndarray:
        shape = tuple(graph_input.shape)
        profile = self.sidecar.profile
        if not profile.contains(shape):
            raise FrameError(f"input {shape} is outside the engine's profile {profile.min}.."
                             f"{profile.max}; pass --size inside it, or rebuild with "
                             "--min-shape/--max-shape")
        cuda = self._cuda
        with self._lock:
            buffers = self._buffers_for(shape, graph_input.dtype)
            np.copyto(buffers.host_in, graph_input)
            context = self._context
            context.set_input_shape(self._input, shape)
            missing = context.infer_shapes()
            if missing:
                raise FrameError(f"TensorRT could not infer shapes for {missing}")
            context.set_tensor_address(self._input, buffers.device_in)
            context.set_tensor_address(self._output, buffers.device_out)
            cuda_check(cuda.cudaMemcpyAsync(buffers.device_in, buffers.host_in_ptr,
                                            buffers.host_in.nbytes,
                                            cuda.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
            if not context.execute_async_v3(int(self._stream)):
                raise FrameError("TensorRT execution failed (see its log above)")
            cuda_check(cuda.cudaMemcpyAsync(buffers.host_out_ptr, buffers.device_out,
                                            buffers.host_out.nbytes,
                                            cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))
            cuda_check(cuda.cudaStreamSynchronize(self._stream))
            return buffers.host_out.copy()

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
