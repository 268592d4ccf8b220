"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers.

Also the one place a CPU InferenceSession is made (`cpu_session`): metadata reading, export
verification and graph comparison all use it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocr_deploy.backends.base import BackendUnavailable
from ocr_deploy.backends.ort_gpu import (
    ORT_LOG_ERRORS_ONLY,
    GpuSettings,
    check_providers_took,
    quiet_onnxruntime,
    tensorrt_cache_dir,
)
from ocr_deploy.errors import ConfigError, ModelFileError
from ocr_deploy.fileio import ensure_output_folder
from ocr_deploy.meta import ModelMeta, meta_from_custom_map
from ocr_deploy.meta_checks import check_session
from ocr_deploy.vocabulary import Device, parse_choice

if TYPE_CHECKING:
    import onnxruntime as ort

_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
_TENSORRT = "TensorrtExecutionProvider"
# Providers tried before the CPU, per device; CPU always comes last.
_WANTED = {Device.auto: [_CUDA], Device.cpu: [], Device.cuda: [_CUDA],
           Device.tensorrt: [_TENSORRT, _CUDA]}
INSTALL_HINT = "pip install onnxruntime"


def choose_providers(device: str, available: list[str]) -> list[str]:
    """auto: CUDA when offered, else CPU. tensorrt: ONNX Runtime's TensorRT provider, which
    builds an engine per new input shape (minutes), so only when asked. CPU always last."""
    choice = parse_choice(Device, device, "--device")
    wanted = _WANTED[choice]
    chosen = [name for name in wanted if name in available]
    if choice in (Device.cuda, Device.tensorrt) and wanted[0] not in chosen:
        raise BackendUnavailable(f"--device {choice.value} needs onnxruntime-gpu with a CUDA "
                                 f"device; this onnxruntime offers {', '.join(available)}. Install "
                                 "`pip install onnxruntime-gpu` (instead of onnxruntime)")
    return chosen + [_CPU]


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ort_reason(error: BaseException) -> str:
    """The informative end of an ONNX Runtime error (its start repeats the path and source)."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"Load model from .* failed:", "", text)
    if "onnxruntime::" in text:  # drop the C++ location and signature before the reason
        text = text.rsplit(") ", 1)[-1] if ") " in text else text.rsplit(" ", 8)[-1]
    text = text.strip()
    return text if len(text) <= 160 else "..." + text[-157:]


def _session(model: Path | bytes, providers: list[str] | list[tuple[str, dict[str, Any]]], *,
             optimize: bool, threads: int | None, source: str) -> ort.InferenceSession:
    import onnxruntime as ort

    quiet_onnxruntime(ort)  # its default logger, for what is logged outside the session

    if isinstance(model, Path) and not model.is_file():
        raise ModelFileError(f"model not found: {model}")
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = ORT_LOG_ERRORS_ONLY
    try:
        return ort.InferenceSession(str(model) if isinstance(model, Path) else model, options,
                                    providers=providers)
    except Exception as error:  # ORT's own exception types are not importable portably
        raise ModelFileError(
            f"{source} is not a readable ONNX model ({ort_reason(error)})") from None


def cpu_session(model: Path | bytes, *, optimize: bool = True, threads: int | None = None,
                source: str | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU, for a file or serialized model bytes.

    optimize=False skips graph optimisation (enough to read metadata, and fast). threads=None
    leaves ONNX Runtime's own default. Missing or unreadable models raise ModelFileError.
    """
    name = source or (str(model) if isinstance(model, Path) else "the ONNX model in memory")
    return _session(model, [_CPU], optimize=optimize, threads=threads, source=name)


class OnnxRuntimeBackend:
    """One InferenceSession; ONNX Runtime documents concurrent `run` calls as safe."""

    name = "onnxruntime"

    def __init__(self, model: Path | bytes, *, device: str = "auto", threads: int | None = None,
                 source: str | None = None, fp16: bool = False):
        """`model`: a file, or serialized ONNX bytes (then `source` names it in messages).
        fp16: let ONNX Runtime's TensorRT provider build an FP32 graph in FP16."""
        import onnxruntime as ort

        source = source or (str(model) if isinstance(model, Path) else "the ONNX model in memory")
        # Every core by default: ORT's own default counts physical cores only.
        self._threads = threads or _cpu_threads()
        names = choose_providers(device, ort.get_available_providers())
        if fp16 and _TENSORRT not in names:
            raise ConfigError("FP16 compute of an FP32 graph is a TensorRT provider option: pass "
                              "--device tensorrt, or export an FP16 ONNX (export --precision fp16)")
        self.session = _session(model, _with_options(model, names, fp16=fp16, source=source),
                                optimize=True, threads=self._threads, source=source)
        check_providers_took(device, names, self.session.get_providers(), version=ort.__version__)
        self.meta: ModelMeta = check_session(meta_from_custom_map(
            self.session.get_modelmeta().custom_metadata_map, source=source), self.session, source=source)
        self.providers = tuple(self.session.get_providers())
        self._names = [output.name for output in self.session.get_outputs()]

    def run(self, graph_input: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self._names, {self.meta.input.name: graph_input})
        return dict(zip(self._names, outputs, strict=True))

    def close(self) -> None:
        """ONNX Runtime frees the session when it is no longer referenced."""

    def describe(self) -> str:
        providers = ", ".join(name.replace("ExecutionProvider", "") for name in self.providers)
        return f"onnxruntime {_version()} [{providers}], {self._threads} CPU threads"


def _with_options(model: Path | bytes, names: list[str], *, fp16: bool, source: str
                  ) -> list[str] | list[tuple[str, dict[str, Any]]]:
    """The providers with ocr-deploy's options (ort_gpu.GpuSettings) where a GPU one is asked;
    those options depend on the model's precision and size, read first from its metadata."""
    if names == [_CPU]:
        return names
    meta = meta_from_custom_map(cpu_session(model, optimize=False, source=source)
                                .get_modelmeta().custom_metadata_map, source=source)
    settings = GpuSettings(cache_dir=tensorrt_cache_dir(), fp16=fp16,
                           model_precision=meta.provenance.precision,
                           static_size=meta.input.fixed_size is not None and meta.input.batch is not None)
    if _TENSORRT in names:
        ensure_output_folder(settings.cache_dir)
    return settings.providers(names)


def _version() -> str:
    import onnxruntime as ort

    return ort.__version__


def unavailable_reason() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"not installed ({error}): {INSTALL_HINT}"
    return None


def status_detail() -> str:
    import onnxruntime as ort

    providers = ", ".join(p.replace("ExecutionProvider", "") for p in ort.get_available_providers())
    return f"onnxruntime {ort.__version__}: {providers}"


def read_meta(path: Path) -> ModelMeta:
    """Metadata of an exported ONNX file, read with ONNX Runtime (no torch, no onnx package)."""
    session = cpu_session(path, optimize=False)
    meta = meta_from_custom_map(session.get_modelmeta().custom_metadata_map, source=str(path))
    return check_session(meta, session, source=str(path))  # metadata agrees with the graph


def artifact_rows(path: Path) -> list[tuple[str, str]]:
    """An ONNX file carries nothing beyond its ModelMeta."""
    return []
