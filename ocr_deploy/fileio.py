"""Writing files so that a failure never leaves a half-written artifact at the final path."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocr_deploy.errors import OcrDeployError


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def ensure_output_folder(folder: Path) -> list[Path]:
    """Create an output folder (and its parents) if needed, then check it takes files.
    Returns the folders it created, deepest first (see remove_empty_folders)."""
    created = [path for path in (folder, *folder.parents) if not os.path.lexists(path)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OcrDeployError(f"cannot create output folder {folder} ({error.strerror}); choose "
                             "a writable location") from None
    ensure_writable_dir(folder)
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders a run created (deepest first) where it left nothing in them."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone: either way it is not ours to remove
            return


class PartialFile:
    """A hidden temporary file beside `final` that becomes `final` only on commit.

    The real suffix stays last: OpenCV writers pick the file format from it.
    """

    MARK = ".partial"  # in every temporary name: .<stem>.<random>.partial<suffix>

    def __init__(self, final: Path):
        self.final = final
        handle, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.",
                                        suffix=f"{self.MARK}{final.suffix}")
        os.close(handle)
        self.temporary = Path(name)

    def commit(self) -> Path:
        # mkstemp creates 0600 files; a finished artifact gets the usual umask-based mode.
        os.chmod(self.temporary, 0o666 & ~_umask())
        os.replace(self.temporary, self.final)
        return self.final

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)

    @classmethod
    def remove_stale(cls, folder: Path) -> None:
        """Temporary files under `folder` left by a process killed mid-write."""
        for path in folder.rglob(f".*{cls.MARK}.*"):
            if path.is_file():
                path.unlink(missing_ok=True)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final`, renamed onto it only if the block succeeds."""
    partial = PartialFile(final)
    try:
        yield partial.temporary
        partial.commit()
    finally:
        partial.discard()


def atomic_write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as temporary:
        temporary.write_bytes(data)
