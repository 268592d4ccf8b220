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
from ocr_deploy.sources.headers import read_header_size, too_many_pixels
from ocr_deploy.sources.orientation import DESCRIPTIONS, apply_orientation, exif_orientation

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_GLOB_CHARS = "*?["


def read_image(path: Path) -> np.ndarray | None:
    """The image as OpenCV decodes it (any depth and channel count), turned the way it is
    displayed (its EXIF orientation), or None if unreadable."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)  # cv2.imread cannot read non-ASCII paths
    # IMREAD_UNCHANGED keeps depth and alpha but ignores EXIF orientation: applied here.
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return None if image is None else apply_orientation(image, exif_orientation(data))


def orientation_note(path: Path) -> str | None:
    """How the file's EXIF orientation turned it ('rotated 90° clockwise'), None if upright."""
    try:
        with path.open("rb") as stream:
            head = stream.read(256 * 1024)
    except OSError:
        return None
    return DESCRIPTIONS.get(exif_orientation(head))


def regular_file(path: Path) -> Path:
    """`path` if it is a regular file; a FIFO, device or socket would block or never end."""
    if path.exists() and not path.is_file():
        raise SourceError(f"{path} is not a regular file (a folder, FIFO, device or socket); "
                          "give an image or video file")
    return path


def oversized(path: Path, max_pixels: int | None) -> str | None:
    """Why `path` is refused by the pixel limit, read from its header (nothing decoded)."""
    return too_many_pixels(read_header_size(path), max_pixels)


def read_image_file(path: Path, max_pixels: int | None) -> tuple[np.ndarray | None, str]:
    """One input image, or None and why not (a sentence that follows the path): not a file,
    over the pixel limit (from its header, nothing decoded), or unreadable."""
    if not path.is_file():
        return None, "is not a regular file"
    limit = oversized(path, max_pixels)
    if limit is not None:
        return None, f"is too large: {limit}"
    image = read_image(path)
    return image, "is not a readable image (corrupt or unsupported)"


@dataclass
class ImageFiles(Source):
    paths: list[Path] = field(default_factory=list)
    root: Path | None = None  # names are relative to it, so sub-folders stay apart
    single: bool = False
    recursive: bool = False  # the root was searched with its sub-folders
    max_pixels: int | None = None
    _decoded: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # decoded at open

    @property
    def skips_bad_frames(self) -> bool:
        return not self.single

    def frames(self) -> Iterator[Frame]:
        names = output_names(self.paths, self.root)
        for index, path in enumerate(self.paths):
            start = time.perf_counter()
            image = self._decoded.pop(index, None)
            if image is None:
                image, why = read_image_file(path, self.max_pixels)
                if image is None:
                    if self.single:
                        raise SourceError(f"{path} {why}")
                    self.report.skipped.append((str(path), why))
                    continue
            turned = orientation_note(path)
            if turned is not None:
                self.report.oriented.append((path.name, turned))
            yield Frame(image, index, names[index], None, (time.perf_counter() - start) * 1000.0)


    def reads_from(self, folder: Path) -> bool:
        """Would files written into `folder` be among this source's inputs on a rerun?"""
        folder = folder.resolve()
        if self.single:
            return False
        if self.recursive and self.root is not None and folder.is_relative_to(self.root.resolve()):
            return True
        return any(path.resolve().parent == folder for path in self.paths)


def output_names(paths: list[Path], root: Path | None) -> list[str]:
    """Output stem per input: its path relative to the root without its suffix, or with the
    suffix kept where two inputs would share a stem (img.png and img.jpg: 'img.png', 'img.jpg')."""
    def relative(path: Path) -> Path:
        return path.relative_to(root) if root else Path(path.name)

    stems = [str(relative(path).with_suffix("")) for path in paths]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1  # case-insensitive file systems
    return [str(relative(path)) if counts[stem.lower()] > 1 else stem
            for path, stem in zip(paths, stems, strict=True)]


def is_folder(spec: str) -> bool:
    return Path(spec).expanduser().is_dir()


def open_folder(spec: str, options: SourceOptions) -> ImageFiles:
    path = Path(spec).expanduser()
    pattern = "**/*" if options.recursive else "*"
    return _image_set(sorted(p for p in path.glob(pattern) if _is_image(p)), spec, path,
                      options, recursive=options.recursive)


def is_glob(spec: str) -> bool:
    return not Path(spec).expanduser().exists() and any(char in spec for char in _GLOB_CHARS)


def open_glob(spec: str, options: SourceOptions) -> ImageFiles:
    # Resolved and deduplicated: '..' in a pattern can match one file by several spellings, and
    # names relative to the resolved root never climb out of the output folder.
    found = (Path(p).resolve() for p in glob.glob(os.path.expanduser(spec), recursive=True))
    matches = sorted({path for path in found if _is_image(path)})
    root = Path(os.path.commonpath([str(m.parent) for m in matches])) if matches else None
    return _image_set(matches, spec, root, options, recursive="**" in spec)


def is_existing_path(spec: str) -> bool:
    """Any existing path that no earlier row of the table claimed is taken as one image."""
    return Path(spec).expanduser().exists()


def open_image(spec: str, options: SourceOptions) -> ImageFiles:
    path = regular_file(Path(spec).expanduser())
    # Decoded once, here, before any model loads (an unreadable image is the only output), and
    # handed to the run rather than decoded again.
    image, why = read_image_file(path, options.max_pixels)
    if image is None:
        raise SourceError(f"{path} {why}")
    return ImageFiles(kind="image", name=path.stem, total=1, paths=[path], single=True,
                      max_pixels=options.max_pixels, _decoded={0: image})


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _image_set(paths: list[Path], spec: str, root: Path | None, options: SourceOptions, *,
               recursive: bool) -> ImageFiles:
    if not paths:
        raise SourceError(f"no images found in {spec} (looked for "
                          f"{', '.join(sorted(IMAGE_SUFFIXES))}; --recursive searches sub-folders)")
    max_frames = options.max_frames
    paths = paths[:max_frames] if max_frames else paths
    name = root.name if root and root.name else "images"
    return ImageFiles(kind="images", name=name, total=len(paths), paths=paths, root=root,
                      recursive=recursive, max_pixels=options.max_pixels)
