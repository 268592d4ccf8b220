"""A checkpoint given where a model is expected is exported once, cached by its sha256.

An entry is `<sha256>.onnx` plus `<sha256>.json`, the record of what was exported: the
checkpoint's sha256 and size, the ONNX file's size and sha256. An entry is used only when the
record matches both files; anything else (a truncated file, another file put in its place, an
entry from before records) is exported again. A lock file per entry makes two processes that
want the same entry export it once: the second waits, then finds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exporters.checkpoint_files import is_checkpoint
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.fileio import atomic_write_bytes, sha256_of

if TYPE_CHECKING:
    from ocr_deploy.backends import Backend

PYTORCH = "pytorch"


def cache_dir() -> Path:
    configured = os.environ.get("OCR_DEPLOY_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ocr-deploy"


@dataclass(frozen=True)
class CacheRecord:
    """What a cache entry was made from and what it holds."""

    checkpoint_sha256: str
    checkpoint_bytes: int
    onnx_bytes: int
    onnx_sha256: str

    @classmethod
    def read(cls, path: Path) -> CacheRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(str(data["checkpoint_sha256"]), int(data["checkpoint_bytes"]),
                       int(data["onnx_bytes"]), str(data["onnx_sha256"]))
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return None


def entry_problem(onnx: Path, record: Path, *, sha256: str, size: int) -> str | None:
    """Why the cache entry cannot be used for the checkpoint (sha256, size), None if it can."""
    if not onnx.is_file():
        return "is missing" if not os.path.lexists(onnx) else "is not a regular file"
    kept = CacheRecord.read(record)
    if kept is None:
        return "has no readable record of what it was exported from"
    if (kept.checkpoint_sha256, kept.checkpoint_bytes) != (sha256, size):
        return "was recorded for another checkpoint"
    if onnx.stat().st_size != kept.onnx_bytes:
        return f"is {onnx.stat().st_size} bytes, not the {kept.onnx_bytes} recorded (truncated or replaced)"
    if sha256_of(onnx) != kept.onnx_sha256:
        return "is not the file that was exported (its sha256 differs from the record)"
    return None


@contextmanager
def _entry_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (fcntl; without it, as on Windows, no lock)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def resolve_model(path: Path, *, log: Callable[[str], None] = lambda _: None) -> Path:
    """A model file as is; a checkpoint exported (verified) into the cache on first use."""
    if not is_checkpoint(path) or not path.exists():
        return path
    if not path.is_file():  # a FIFO would block the hashing forever
        raise OcrDeployError(f"{path} is not a regular file (a folder, FIFO, device or socket); "
                             "give a checkpoint file")
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OcrDeployError(f"cannot create the export cache {folder} ({error.strerror}); set "
                             "OCR_DEPLOY_CACHE to a writable folder") from None
    digest, size = sha256_of(path), path.stat().st_size
    target, record = folder / f"{digest}.onnx", folder / f"{digest}.json"
    with _entry_lock(folder / f"{digest}.lock"):
        problem = entry_problem(target, record, sha256=digest, size=size)
        if problem is None:
            log(f"using the cached export of {path.name}: {target}")
            return target
        try:
            import torch  # noqa: F401  (only to give a clear message when it is missing)
        except ImportError:
            raise OcrDeployError(f"{path.name} is a checkpoint; exporting it needs PyTorch: "
                                 "pip install 'ocr-deploy[export]' (or pass an exported .onnx)") from None
        from exporters.export_job import ExportRequest, run_export

        if os.path.lexists(target):
            log(f"the cached export {target.name} {problem}: exporting {path.name} again")
            record.unlink(missing_ok=True)
        log(f"exporting {path.name} once into the cache: {target}")
        run_export(ExportRequest(weights=path, output=target), log=log)
        kept = CacheRecord(digest, size, target.stat().st_size, sha256_of(target))
        atomic_write_bytes(record, json.dumps(asdict(kept)).encode())
    return target


@dataclass(frozen=True)
class ModelOpener:
    """Opens the model `infer` runs, once its source has opened fine (see model_opener)."""

    path: Path
    backend: str | None = None
    device: str = "auto"
    shown_as: str | None = None  # how the model is named to the user (a cached export: its checkpoint)

    @property
    def name(self) -> str:
        return self.shown_as or self.path.name

    def __call__(self) -> Backend:
        from exporters.artifacts import open_artifact

        return open_artifact(self.path, backend=self.backend, device=self.device)


def model_opener(path: Path, *, backend: str | None = None, device: str = "auto",
                 log: Callable[[str], None] = lambda _: None) -> ModelOpener:
    """A checkpoint runs eagerly on PyTorch when that backend is asked for; otherwise it is
    exported once into the cache and run by the runtime, like any other artifact."""
    model = path if backend == PYTORCH else resolve_model(path, log=log)
    shown = f"{path.name} (cached export {model.name[:12]}...)" if model != path else None
    return ModelOpener(model, backend, device, shown)
