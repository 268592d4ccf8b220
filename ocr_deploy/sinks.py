"""Where results go: label/colour/overlay images, an overlay video and a per-class CSV.

Every file is written under a temporary name and renamed when complete, so an interrupted run
never leaves a half-written file; the video and CSV are finalised with the frames done so far.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.fileio import PartialFile, atomic_write_bytes
from ocr_deploy.meta import ModelMeta
from ocr_deploy.segmenter import SegResult

SAVE_CHOICES = ("labels", "color", "overlay", "video", "csv")
IMAGE_DEFAULT = ("labels", "overlay")
VIDEO_DEFAULT = ("video", "csv")
_VIDEO_FOURCC = "mp4v"  # available in every opencv-python wheel, plays in common players


def encode_labels_png(labels: np.ndarray) -> bytes:
    """8-bit PNG of class ids, or 16-bit when ids do not fit a byte (K > 255)."""
    import cv2

    image = labels if labels.dtype == np.uint8 else labels.astype(np.uint16)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OcrDeployError("could not encode a labels PNG")
    return data.tobytes()


def _encode(image: np.ndarray, suffix: str) -> bytes:
    import cv2

    ok, data = cv2.imencode(suffix, image)
    if not ok:
        raise OcrDeployError(f"could not encode a {suffix} image")
    return data.tobytes()


def _stem(result: SegResult, per_frame: bool) -> str:
    source = result.source
    name = source.name if source else "frame"
    return f"{name}_{source.index:06d}" if per_frame and source else name


@dataclass
class ImageOutputs:
    """Per-frame image files: <stem>_labels.png, <stem>_color.png, <stem>_overlay.jpg."""

    folder: Path
    kinds: tuple[str, ...]
    per_frame: bool  # video frames get their index in the name
    written: list[Path] = field(default_factory=list)

    def write(self, result: SegResult) -> None:
        stem = _stem(result, self.per_frame)
        files = {"labels": (f"{stem}_labels.png", lambda: encode_labels_png(result.labels)),
                 "color": (f"{stem}_color.png", lambda: _encode(result.color, ".png")),
                 "overlay": (f"{stem}_overlay.jpg", lambda: _encode(result.overlay, ".jpg"))}
        for kind in self.kinds:
            name, encode = files[kind]
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, encode())
            self.written.append(path)

    def close(self) -> list[Path]:
        return self.written


@dataclass
class VideoOutputs:
    """<stem>_overlay.mp4 (source size and frame rate) and <stem>_classes.csv."""

    folder: Path
    stem: str
    meta: ModelMeta
    fps: float
    video: bool
    table: bool
    _writer: Any = None
    _video_file: PartialFile | None = None
    _csv_file: PartialFile | None = None
    _csv_stream: TextIO | None = None
    _csv: Any = None
    frames: int = 0

    def write(self, result: SegResult) -> None:
        if self.video:
            self._write_video(result.overlay)
        if self.table:
            self._write_row(result)
        self.frames += 1

    def _write_video(self, image: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            partial = PartialFile(self.folder / f"{self.stem}_overlay.mp4")
            height, width = image.shape[:2]
            writer = cv2.VideoWriter(str(partial.temporary), cv2.VideoWriter_fourcc(*_VIDEO_FOURCC),
                                     self.fps, (width, height))
            if not writer.isOpened():
                writer.release()
                partial.discard()
                raise OcrDeployError(f"cannot write video into {self.folder} (OpenCV has no "
                                     f"{_VIDEO_FOURCC} encoder here)")
            self._video_file, self._writer = partial, writer
        self._writer.write(image)

    def _write_row(self, result: SegResult) -> None:
        if self._csv is None:
            self._csv_file = PartialFile(self.folder / f"{self.stem}_classes.csv")
            self._csv_stream = self._csv_file.temporary.open("w", newline="")
            self._csv = csv.writer(self._csv_stream)
            self._csv.writerow(["frame", "timestamp_ms", *self.meta.dataset.classes])
        source = result.source
        index = source.index if source else self.frames
        stamp = "" if source is None or source.timestamp_ms is None else f"{source.timestamp_ms:.1f}"
        self._csv.writerow([index, stamp, *(f"{value:.6f}" for value in result.class_fractions)])

    def close(self) -> list[Path]:
        """Finalise what was written so far (also after an interruption)."""
        written = []
        if self._writer is not None:
            self._writer.release()
            written.append(self._video_file.commit())
            self._writer = None
        if self._csv_stream is not None:
            self._csv_stream.close()
            written.append(self._csv_file.commit())
            self._csv_stream = None
        return written


@dataclass
class Outputs:
    """All writers for one run."""

    parts: list[Any]

    def write(self, result: SegResult) -> None:
        for part in self.parts:
            part.write(result)

    def close(self) -> list[Path]:
        return [path for part in self.parts for path in part.close()]


def make_outputs(folder: Path, save: tuple[str, ...], *, meta: ModelMeta, is_video: bool,
                 stem: str, fps: float | None) -> Outputs:
    unknown = set(save) - set(SAVE_CHOICES)
    if unknown:
        raise OcrDeployError(f"--save takes {', '.join(SAVE_CHOICES)} (or none), not "
                             f"{', '.join(sorted(unknown))}")
    if not is_video and {"video", "csv"} & set(save):
        raise OcrDeployError("--save video/csv need a video, camera or stream source; for "
                             "images use labels, color or overlay")
    parts: list[Any] = []
    images = tuple(kind for kind in save if kind in ("labels", "color", "overlay"))
    if images:
        parts.append(ImageOutputs(folder, images, per_frame=is_video))
    if {"video", "csv"} & set(save):
        parts.append(VideoOutputs(folder, stem, meta, fps or 30.0, "video" in save, "csv" in save))
    return Outputs(parts)
