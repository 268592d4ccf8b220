"""Image files: one image, a folder (optionally recursive) or a glob pattern."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocr_deploy.sources.base import Frame, Source, SourceError, SourceOptions

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_GLOB_CHARS = "*?["


def read_image(path: Path) -> np.ndarray | None:
    """The image as OpenCV decodes it (any depth and channel count), or None if unreadable."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)  # cv2.imread cannot read non-ASCII paths
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


@dataclass
class ImageFiles(Source):
    paths: list[Path] = field(default_factory=list)
    root: Path | None = None  # names are relative to it, so sub-folders stay apart
    single: bool = False

    @property
    def skips_bad_frames(self) -> bool:
        return not self.single

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            start = time.perf_counter()
            image = read_image(path)
            name = str(path.relative_to(self.root).with_suffix("")) if self.root else path.stem
            if image is None:
                if self.single:
                    raise SourceError(f"{path} is not a readable image (corrupt or unsupported)")
                self.report.skipped.append((str(path), "not a readable image"))
                continue
            yield Frame(image, index, name, None, (time.perf_counter() - start) * 1000.0)


def is_folder(spec: str) -> bool:
    return Path(spec).expanduser().is_dir()


def open_folder(spec: str, options: SourceOptions) -> ImageFiles:
    path = Path(spec).expanduser()
    pattern = "**/*" if options.recursive else "*"
    return _image_set(sorted(p for p in path.glob(pattern) if _is_image(p)), spec, path,
                      options.max_frames)


def is_glob(spec: str) -> bool:
    return not Path(spec).expanduser().exists() and any(char in spec for char in _GLOB_CHARS)


def open_glob(spec: str, options: SourceOptions) -> ImageFiles:
    matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if _is_image(Path(p)))
    root = Path(os.path.commonpath([str(m.parent) for m in matches])) if matches else None
    return _image_set(matches, spec, root, options.max_frames)


def is_existing_path(spec: str) -> bool:
    """Any existing path that no earlier row of the table claimed is taken as one image."""
    return Path(spec).expanduser().exists()


def open_image(spec: str, options: SourceOptions) -> ImageFiles:
    path = Path(spec).expanduser()
    if read_image(path) is None:  # before any model loads: the error is the only output
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
