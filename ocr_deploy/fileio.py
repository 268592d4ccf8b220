"""Writing files so that a failure never leaves a half-written artifact at the final path."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocr_deploy.errors import OcrDeployError


def ensure_writable_dir(folder: Path, *, what: str = "output") -> None:
    """Fail early, with a clear reason, if files cannot be created in `folder`.

    Probes with a real file: permission bits alone say nothing for root or read-only mounts.
    """
    if not folder.exists():
        raise OcrDeployError(f"{what} folder {folder} does not exist; create it or choose another")
    if not folder.is_dir():
        raise OcrDeployError(f"{what} location {folder} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ocr-deploy-probe-"):
            pass
    except OSError as error:
        raise OcrDeployError(f"cannot write to {what} folder {folder} ({error.strerror}); choose "
                             "a writable folder") from None


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final`, renamed onto it only if the block succeeds."""
    # The real suffix stays last: OpenCV writers pick the file format from it.
    handle, temporary = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.",
                                         suffix=f".partial{final.suffix}")
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.replace(temporary_path, final)
    finally:
        temporary_path.unlink(missing_ok=True)


def atomic_write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as temporary:
        temporary.write_bytes(data)
