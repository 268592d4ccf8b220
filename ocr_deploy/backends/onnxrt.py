"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ocr_deploy.backends.base import BackendUnavailable
from ocr_deploy.meta import ModelMeta, meta_from_custom_map, ort_reason
from ocr_deploy.errors import ModelFileError

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
_CUDA, _TENSORRT = "CUDAExecutionProvider", "TensorrtExecutionProvider"


def choose_providers(device: str, available: list[str]) -> list[str]:
    """auto: CUDA when offered, else CPU. tensorrt: ONNX Runtime's TensorRT provider, which
    builds an engine per new input shape (minutes), so only when asked. CPU always last."""
    if device not in DEVICES:
        raise BackendUnavailable(f"--device must be one of {', '.join(DEVICES)}")
    wanted = {"auto": [_CUDA], "cpu": [], "cuda": [_CUDA], "tensorrt": [_TENSORRT, _CUDA]}[device]
    chosen = [name for name in wanted if name in available]
    if device in ("cuda", "tensorrt") and wanted[0] not in chosen:
        raise BackendUnavailable(f"--device {device} needs onnxruntime-gpu with a CUDA device; "
                                 f"this onnxruntime offers {', '.join(available)}. Install "
                                 "`pip install onnxruntime-gpu` (instead of onnxruntime)")
    return chosen + ["CPUExecutionProvider"]


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxRuntimeBackend:
    """One InferenceSession; ONNX Runtime documents concurrent `run` calls as safe."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, device: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        if not path.is_file():
            raise ModelFileError(f"model not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Every core by default: ORT's own default counts physical cores only.
        options.intra_op_num_threads = threads or _cpu_threads()
        options.log_severity_level = 3
        providers = choose_providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # ORT's own exception types are not importable portably
            raise ModelFileError(f"{path} is not a readable ONNX model ({ort_reason(error)})") from None
        self.meta: ModelMeta = meta_from_custom_map(
            self.session.get_modelmeta().custom_metadata_map, source=str(path))
        self.providers = tuple(self.session.get_providers())
        self._output = [self.meta.output.name]
        self._threads = options.intra_op_num_threads

    def run(self, graph_input: np.ndarray) -> np.ndarray:
        return self.session.run(self._output, {self.meta.input.name: graph_input})[0]

    def close(self) -> None:
        """ONNX Runtime frees the session when it is no longer referenced."""

    def describe(self) -> str:
        providers = ", ".join(name.replace("ExecutionProvider", "") for name in self.providers)
        return f"onnxruntime {_version()} [{providers}], {self._threads} CPU threads"


def _version() -> str:
    import onnxruntime as ort

    return ort.__version__
