"""A checkpoint given where a model is expected is exported once, cached by its sha256."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ocr_deploy.fileio import sha256_of
from exporters.checkpoint_files import is_checkpoint
from ocr_deploy.errors import OcrDeployError

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
