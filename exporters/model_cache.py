"""A checkpoint given where a model is expected is exported once, cached by its sha256."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exporters.checkpoint_files import is_checkpoint
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.fileio import sha256_of

if TYPE_CHECKING:
    from ocr_deploy.backends import Backend

PYTORCH = "pytorch"


def cache_dir() -> Path:
    configured = os.environ.get("OCR_DEPLOY_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ocr-deploy"


def resolve_model(path: Path, *, log: Callable[[str], None] = lambda _: None) -> Path:
    """A model file as is; a checkpoint exported (verified) into the cache on first use."""
    if not is_checkpoint(path) or not path.exists():
        return path
    target = cache_dir() / f"{sha256_of(path)}.onnx"
    if target.is_file():
        log(f"using the cached export of {path.name}: {target}")
        return target
    try:
        import torch  # noqa: F401  (only to give a clear message when it is missing)
    except ImportError:
        raise OcrDeployError(f"{path.name} is a checkpoint; exporting it needs PyTorch: "
                             "pip install 'ocr-deploy[export]' (or pass an exported .onnx)") from None
    from exporters.export_job import ExportRequest, run_export

    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"exporting {path.name} once into the cache: {target}")
    run_export(ExportRequest(weights=path, output=target), log=log)
    return target


@dataclass(frozen=True)
class ModelOpener:
    """Opens the model `infer` runs, once its source has opened fine (see model_opener)."""

    path: Path
    backend: str | None = None
    device: str = "auto"

    @property
    def name(self) -> str:
        return self.path.name

    def __call__(self) -> Backend:
        from exporters.artifacts import open_artifact

        return open_artifact(self.path, backend=self.backend, device=self.device)


def model_opener(path: Path, *, backend: str | None = None, device: str = "auto",
                 log: Callable[[str], None] = lambda _: None) -> ModelOpener:
    """A checkpoint runs eagerly on PyTorch when that backend is asked for; otherwise it is
    exported once into the cache and run by the runtime, like any other artifact."""
    model = path if backend == PYTORCH else resolve_model(path, log=log)
    return ModelOpener(model, backend, device)
