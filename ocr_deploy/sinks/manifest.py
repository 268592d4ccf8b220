"""Which files of an output folder ocr-deploy wrote: `<folder>/.ocr-deploy-outputs.json`.

Each run records the files it wrote (path relative to the folder -> size, mtime_ns and a hash of
the first and last 64 KiB, taken right after writing). A later run may replace a recorded file
while all three still match, so reruns into the same folder work without --overwrite; a file the
user put there, replaced or edited since is not recorded or no longer matches, and stays
protected. A missing, damaged or foreign manifest reads as empty: then nothing is replaceable.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ocr_deploy.fileio import atomic_write_bytes

MANIFEST_NAME = ".ocr-deploy-outputs.json"
_FORMAT = "ocr-deploy-outputs/1"
_EDGE_BYTES = 64 * 1024
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a larger file is not one of ours: read as empty


@dataclass(frozen=True)
class FileStamp:
    """What identifies one written file cheaply: size, modification time, hash of its edges."""

    size: int
    mtime_ns: int
    edges: str  # sha256 of the first and the last 64 KiB (the whole file when smaller)

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        """The stamp of a regular file (symlinks are not followed); None for anything else."""
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                return None
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                digest.update(handle.read(_EDGE_BYTES))
                if info.st_size > _EDGE_BYTES:
                    handle.seek(max(_EDGE_BYTES, info.st_size - _EDGE_BYTES))
                    digest.update(handle.read(_EDGE_BYTES))
        except OSError:
            return None
        return cls(size=info.st_size, mtime_ns=info.st_mtime_ns, edges=digest.hexdigest())

    def unchanged(self, path: Path) -> bool:
        """Size and time still match (cheap, no read); see `FileStamp.of` for the full check."""
        try:
            info = os.lstat(path)
        except OSError:
            return False
        return (stat.S_ISREG(info.st_mode) and info.st_size == self.size
                and info.st_mtime_ns == self.mtime_ns)


@dataclass
class OutputManifest:
    """The record of one output folder. Not thread-safe: OutputClaims holds it under its lock."""

    folder: Path
    entries: dict[str, FileStamp] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_NAME

    @classmethod
    def load(cls, folder: Path) -> OutputManifest:
        return cls(folder, _read_entries(folder / MANIFEST_NAME))

    def key(self, path: Path) -> str | None:
        """`path` relative to the folder, as recorded; None when it lies outside."""
        resolved, root = Path(os.path.abspath(path)), Path(os.path.abspath(self.folder))
        try:
            return resolved.relative_to(root).as_posix()
        except ValueError:
            return None

    def owns(self, path: Path) -> bool:
        """True when ocr-deploy wrote `path` and nobody replaced or edited it since."""
        key = self.key(path)
        stamp = self.entries.get(key) if key else None
        return stamp is not None and stamp.unchanged(path) and FileStamp.of(path) == stamp

    def record(self, paths: Iterable[Path]) -> None:
        """Note `paths` as just written by this run (files that are gone are skipped)."""
        for path in paths:
            key, stamp = self.key(path), FileStamp.of(path)
            if key and key != MANIFEST_NAME and stamp is not None:
                self.entries[key] = stamp

    def save(self) -> None:
        """Merge with what the folder's manifest says now (another step of the same command may
        have recorded files), drop entries whose files are gone or changed, write atomically.
        Best effort: a folder that cannot take the manifest only costs the next run --overwrite."""
        merged = {**_read_entries(self.path), **self.entries}
        kept = {key: stamp for key, stamp in sorted(merged.items())
                if stamp.unchanged(self.folder / key)}
        self.entries = kept
        if not kept and not os.path.lexists(self.path):
            return  # nothing to remember: leave no file behind (an empty folder is removed)
        data = json.dumps({"format": _FORMAT, "files": {key: asdict(stamp) for key, stamp in kept.items()}},
                          indent=1).encode()
        try:
            atomic_write_bytes(self.path, data)
        except OSError:
            pass


def _read_entries(path: Path) -> dict[str, FileStamp]:
    """The entries of a manifest file; empty when it is missing, not a regular file, too large,
    not valid JSON or not in our format (never an error: the outputs are then just protected)."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_MANIFEST_BYTES:
            return {}
        document = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    files = document.get("files") if isinstance(document, dict) and document.get("format") == _FORMAT else None
    if not isinstance(files, dict):
        return {}
    entries: dict[str, FileStamp] = {}
    for key, value in files.items():
        stamp = _stamp(value)
        if isinstance(key, str) and stamp is not None and _safe_key(key):
            entries[key] = stamp
    return entries


def _stamp(value: object) -> FileStamp | None:
    if not isinstance(value, dict):
        return None
    size, mtime_ns, edges = value.get("size"), value.get("mtime_ns"), value.get("edges")
    if type(size) is not int or type(mtime_ns) is not int or not isinstance(edges, str):
        return None
    return FileStamp(size=size, mtime_ns=mtime_ns, edges=edges)


def _safe_key(key: str) -> bool:
    """A relative path below the folder (a hand-edited manifest cannot point elsewhere)."""
    parts = Path(key).parts
    return bool(parts) and not Path(key).is_absolute() and ".." not in parts and key != MANIFEST_NAME
