"""Where frames come from: one argument for images, folders, globs, videos, cameras and URLs."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocr_deploy.errors import OcrDeployError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(OcrDeployError):
    """A source that cannot be opened or read."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    index: int  # frame number in a video, image number in a folder
    name: str  # stem for output files: relative path for folders, video stem otherwise
    timestamp_ms: float | None = None
    decode_ms: float = 0.0


@dataclass
class SourceReport:
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    dropped: int = 0  # live frames replaced by newer ones before they could be processed
    ended_early: str | None = None


@dataclass
class Source:
    """Base for all sources; subclasses implement `frames`."""

    kind: str
    name: str
    total: int | None = None  # frames expected after stride and max_frames, when known
    fps: float | None = None
    report: SourceReport = field(default_factory=SourceReport)

    @property
    def is_video(self) -> bool:
        return self.kind in ("video", "camera", "stream")

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release devices and files; safe to call more than once."""


def _read_image(path: Path) -> np.ndarray | None:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)  # cv2.imread cannot read non-ASCII paths
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


@dataclass
class ImageFiles(Source):
    paths: list[Path] = field(default_factory=list)
    root: Path | None = None  # names are relative to it, so sub-folders stay apart
    single: bool = False

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            start = time.perf_counter()
            image = _read_image(path)
            name = str(path.relative_to(self.root).with_suffix("")) if self.root else path.stem
            if image is None:
                if self.single:
                    raise SourceError(f"{path} is not a readable image (corrupt or unsupported)")
                self.report.skipped.append((str(path), "not a readable image"))
                continue
            yield Frame(image, index, name, None, (time.perf_counter() - start) * 1000.0)


def open_source(spec: str, *, recursive: bool = False, stride: int = 1,
                max_frames: int | None = None, open_timeout_s: float = 10.0) -> Source:
    """Image file, folder, glob, video file, camera index ('0') or stream URL."""
    if stride < 1:
        raise SourceError(f"--stride must be at least 1 (got {stride})")
    if max_frames is not None and max_frames < 1:
        raise SourceError(f"--max-frames must be at least 1 (got {max_frames})")
    from ocr_deploy.video import open_capture

    if spec.isdigit() or spec.lower().startswith(STREAM_SCHEMES):
        return open_capture(spec, live=True, stride=stride, max_frames=max_frames,
                            open_timeout_s=open_timeout_s)
    path = Path(spec).expanduser()
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return _image_set(sorted(p for p in path.glob(pattern) if _is_image(p)), spec, path,
                          max_frames)
    if not path.exists() and any(char in spec for char in "*?["):
        matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if _is_image(Path(p)))
        root = Path(os.path.commonpath([str(m.parent) for m in matches])) if matches else None
        return _image_set(matches, spec, root, max_frames)
    if not path.exists():
        raise SourceError(f"source not found: {spec} (give an image, folder, glob, video file, "
                          "camera index such as 0, or a stream URL)")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return open_capture(str(path), live=False, stride=stride, max_frames=max_frames,
                            open_timeout_s=open_timeout_s)
    if _read_image(path) is None:  # before any model loads: the error is the only output
        raise SourceError(f"{path} is not a readable image (corrupt or unsupported)")
    return ImageFiles(kind="image", name=path.stem, total=1, paths=[path], single=True)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _image_set(paths: list[Path], spec: str, root: Path | None,
               max_frames: int | None) -> ImageFiles:
    if not paths:
        raise SourceError(f"no images found in {spec} (looked for "
                          f"{', '.join(sorted(IMAGE_SUFFIXES))}; --recursive searches sub-folders)")
    paths = paths[:max_frames] if max_frames else paths
    name = root.name if root and root.name else "images"
    return ImageFiles(kind="images", name=name, total=len(paths), paths=paths, root=root)


def read_frames(specs: list[str], *, max_frames: int, stride: int = 1) -> list[tuple[str, np.ndarray]]:
    """Named uint8 BGR frames from image/folder/glob/video specs (at most max_frames each)."""
    from ocr_deploy.preprocess import as_bgr8

    frames = []
    for spec in specs:
        source = open_source(spec, stride=stride, max_frames=max_frames)
        try:
            frames += [(f"{frame.name}_{frame.index}" if source.is_video else frame.name,
                        as_bgr8(frame.image)) for frame in source.frames()]
        finally:
            source.close()
    if not frames:
        raise SourceError(f"no readable frames in {', '.join(specs)}")
    return frames
