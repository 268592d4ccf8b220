"""ONNX Runtime on an NVIDIA GPU: deliberate provider options, and proof the providers took.

onnxruntime-gpu lists its CUDA and TensorRT providers whether or not cuDNN or the TensorRT
libraries can be loaded; session creation then falls back (TensorRT -> CUDA -> CPU) with only a
log line. So the providers a session actually uses are compared with what was asked, and an
explicit `--device cuda|tensorrt` that did not take is refused in one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr_deploy.backends.base import BackendUnavailable
from ocr_deploy.vocabulary import Device, Precision

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# ORT's own severity scale: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
ORT_LOG_ERRORS_ONLY = 3
# What is missing when a listed provider did not load, and where to get it.
MISSING = {
    CUDA: ("its CUDA provider did not load (the CUDA runtime or cuDNN libraries that this "
           "onnxruntime-gpu needs are missing, or no NVIDIA driver/GPU); install them with "
           'pip install "onnxruntime-gpu[cuda,cudnn]"'),
    TENSORRT: ("its TensorRT provider did not load (the TensorRT libraries, libnvinfer, are "
               'missing): pip install "ocr-deploy[tensorrt-cu12]" (or -cu13, to match '
               "onnxruntime-gpu's CUDA) and put its tensorrt_libs folder on LD_LIBRARY_PATH"),
}


@dataclass(frozen=True, kw_only=True)
class GpuSettings:
    """What the provider options are derived from."""

    cache_dir: Path  # TensorRT provider engines and timing caches
    fp16: bool = False  # asked for FP16 compute (TensorRT provider)
    model_precision: str = Precision.fp32
    static_size: bool = False  # one input size: an exhaustive cuDNN search pays off

    def options(self, provider: str) -> dict[str, Any]:
        """The provider options ocr-deploy passes, by provider name (CPU: none)."""
        if provider == CUDA:
            # EXHAUSTIVE benchmarks every convolution per new input shape (seconds each): worth it
            # for a fixed size, not for folders of images of many sizes.
            return {"cudnn_conv_algo_search": "EXHAUSTIVE" if self.static_size else "HEURISTIC"}
        if provider == TENSORRT:
            # Without the caches every process, and every new input shape, rebuilds the engine
            # for minutes. FP16 is only a flag for an FP32 graph; an FP16 graph carries its types.
            folder = str(self.cache_dir)
            return {"trt_engine_cache_enable": True, "trt_engine_cache_path": folder,
                    "trt_timing_cache_enable": True, "trt_timing_cache_path": folder,
                    "trt_fp16_enable": self.fp16 and self.model_precision == Precision.fp32}
        return {}

    def providers(self, names: list[str]) -> list[tuple[str, dict[str, Any]]]:
        return [(name, self.options(name)) for name in names]


def tensorrt_cache_dir() -> Path:
    """$OCR_DEPLOY_CACHE/onnxruntime-tensorrt, else ~/.cache/ocr-deploy/onnxruntime-tensorrt."""
    configured = os.environ.get("OCR_DEPLOY_CACHE")
    base = (Path(configured) if configured
            else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ocr-deploy")
    return base / "onnxruntime-tensorrt"


def check_providers_took(device: str, asked: Sequence[str], used: Sequence[str], *, version: str) -> None:
    """Refuse an explicit GPU device whose first provider is not in use; `auto` may fall back."""
    if device not in (Device.cuda, Device.tensorrt) or not asked or asked[0] in used:
        return
    running = ", ".join(name.replace("ExecutionProvider", "") for name in used) or "nothing"
    raise BackendUnavailable(f"--device {device}: onnxruntime-gpu {version} would run on {running}: "
                             f"{MISSING.get(asked[0], asked[0] + ' did not load')}; or use --device cpu")


def quiet_onnxruntime(ort: Any) -> None:
    """ONNX Runtime's default logger prints warnings (and provider load failures, which
    check_providers_took reports in one line instead) for every session: errors only."""
    ort.set_default_logger_severity(ORT_LOG_ERRORS_ONLY)
