"""TensorRT backend: a plain plan plus its JSON sidecar, named-tensor API only (TensorRT 10).

One CUDA stream per backend; device and pinned host buffers for the input and every output,
allocated once per input shape and reused; an execution context is not thread-safe, so `run`
holds a lock. Plans load through the full `tensorrt` package, or, where only the lean runtime
(`tensorrt_lean`, what a robot carries) is installed, through it: version-compatible plans only.
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
    cuda_versions,
    gpu_info,
    tensorrt_logger,
    tensorrt_runtime,
    tensorrt_unavailable_reason,
)
from ocr_deploy.engine_sidecar import check_compatible, read_sidecar
from ocr_deploy.errors import ModelFileError
from ocr_deploy.meta import ModelMeta
from ocr_deploy.preprocess import FrameError

if TYPE_CHECKING:  # the named-tensor API, checked against tensorrt-stubs
    import tensorrt as trt_api

_CACHED_SHAPES = 4  # buffer sets kept for recently used input shapes
# TensorRT DataType names -> numpy, for both runtimes (the lean bindings need not have nptype).
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64,
                "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in NUMPY_DTYPES:
        raise ModelFileError(f"the engine has a {name} tensor; ocr-deploy reads "
                             f"{', '.join(NUMPY_DTYPES)} only")
    return np.dtype(NUMPY_DTYPES[name])


@dataclass
class _Buffer:
    """One tensor's pinned host memory (viewed as `host`) and its device memory."""

    host_ptr: int
    device_ptr: int
    host: np.ndarray

    def free(self) -> None:
        from cuda.bindings import runtime as cuda

        cuda.cudaFree(self.device_ptr)
        cuda.cudaFreeHost(self.host_ptr)


def _allocate(shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
    # Imported where used, as everywhere here, so that mypy checks each call against typings/;
    # cuda-python is known to be there once the backend exists (gpu_info checked it).
    from cuda.bindings import runtime as cuda

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

    def free(self) -> None:
        for buffer in (self.input, *self.outputs.values()):
            buffer.free()


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
        trt, self.runtime_module = tensorrt_runtime()
        gpu = gpu_info()
        check_compatible(self.sidecar, plan=path, tensorrt_version=trt.__version__,
                         gpu_name=gpu.name, compute_capability=gpu.compute_capability,
                         runtime=self.runtime_module)
        self._trt, self._gpu = trt, gpu
        runtime: trt_api.Runtime = trt.Runtime(tensorrt_logger(trt))
        if self.sidecar.version_compatible and self.runtime_module == "tensorrt":
            # A version-compatible plan carries the lean runtime's host code for the full one.
            runtime.engine_host_code_allowed = True
        self._runtime: trt_api.Runtime | None = runtime
        engine: trt_api.ICudaEngine | None = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ModelFileError(f"TensorRT could not load {path.name} (see its log above); "
                                 f"{self.sidecar.rebuild_hint()}")
        self._engine: trt_api.ICudaEngine | None = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        missing = {self.meta.input.name, self.meta.output.name} - set(names)
        if missing:
            raise ModelFileError(f"{path.name} has no tensor(s) {sorted(missing)} that its sidecar "
                                 f"names; {self.sidecar.rebuild_hint()}")
        self._input = self.meta.input.name
        # I/O tensors keep the network's order, which the ONNX parser takes from the graph.
        self._outputs = {name: numpy_dtype(engine.get_tensor_dtype(name)) for name in names
                         if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT}
        self._context: trt_api.IExecutionContext | None = engine.create_execution_context()
        cuda_runtime()  # checked by gpu_info already; the import below is for the type check
        from cuda.bindings import runtime as cuda

        self._stream: Any = cuda_check(cuda.cudaStreamCreateWithFlags(cuda.cudaStreamNonBlocking))
        self._buffers: OrderedDict[tuple, _ShapeBuffers] = OrderedDict()
        self._lock = threading.Lock()

    def _live_context(self) -> trt_api.IExecutionContext:
        if self._context is None:
            raise FrameError("this TensorRT backend is closed")
        return self._context

    def _buffers_for(self, shape: tuple[int, ...], dtype: np.dtype) -> _ShapeBuffers:
        key = (shape, dtype.str)
        if key in self._buffers:
            self._buffers.move_to_end(key)
            return self._buffers[key]
        context = self._live_context()
        if not context.set_input_shape(self._input, shape):
            raise FrameError(f"TensorRT rejected input shape {shape}")
        made: list[_Buffer] = []
        try:
            made.append(_allocate(shape, dtype))
            for name, out_dtype in self._outputs.items():
                made.append(_allocate(context.get_tensor_shape(name)[:], out_dtype))
        except BaseException:
            for buffer in made:
                buffer.free()
            raise
        buffers = _ShapeBuffers(made[0], dict(zip(self._outputs, made[1:], strict=True)))
        self._buffers[key] = buffers
        if len(self._buffers) > _CACHED_SHAPES:
            self._buffers.popitem(last=False)[1].free()
        return buffers

    def run(self, graph_input: np.ndarray) -> dict[str, np.ndarray]:
        shape = tuple(graph_input.shape)
        profile = self.sidecar.profile
        if not profile.contains(shape):
            raise FrameError(f"input {shape} is outside the engine's profile {profile.min}.."
                             f"{profile.max}; pass --size inside it, or rebuild with "
                             "--min-size/--max-size")
        from cuda.bindings import runtime as cuda

        to_device = cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            buffers = self._buffers_for(shape, graph_input.dtype)
            np.copyto(buffers.input.host, graph_input)
            context = self._live_context()
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
        return (f"{self.runtime_module} {self._trt.__version__} on {self._gpu.name} "
                f"(sm_{major}{minor}), {self.sidecar.precision} engine")

    def close(self) -> None:
        """Release the execution context, then the engine (its device memory) and the runtime,
        in that order (a context uses its engine), then buffers and stream. Safe to repeat."""
        with self._lock:
            self._context = None
            self._engine = None
            self._runtime = None
            for buffers in self._buffers.values():
                buffers.free()
            self._buffers.clear()
            if self._stream is not None:
                from cuda.bindings import runtime as cuda

                cuda.cudaStreamDestroy(self._stream)
                self._stream = None

    def __del__(self) -> None:
        if getattr(self, "_stream", None) is not None:
            self.close()


def unavailable_reason() -> str | None:
    """Why not, followed by the CUDA driver and runtime versions and the extra that fits."""
    reason = tensorrt_unavailable_reason()
    return None if reason is None else f"{reason}; {cuda_versions().describe()}"


def status_detail() -> str:
    trt, name = tensorrt_runtime()
    kind = "full" if name == "tensorrt" else "lean runtime: version-compatible plans only"
    return f"TensorRT {trt.__version__} ({kind}) on {gpu_info().name}; {cuda_versions().describe()}"


def read_meta(path: Path) -> ModelMeta:
    """The metadata in the plan's JSON sidecar; the plan itself stays a plain TensorRT plan."""
    return read_sidecar(path).meta


def artifact_rows(path: Path) -> list[tuple[str, str]]:
    """What the engine was built for: precision, TensorRT, GPU, profile and its ONNX."""
    return read_sidecar(path).rows()
