"""Per-frame image files: <stem>_labels.png, <stem>_color.png, <stem>_overlay.jpg.

Each file is written under a temporary name and renamed when complete."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.fileio import atomic_write_bytes
from ocr_deploy.sinks.base import SinkContext

if TYPE_CHECKING:
    from ocr_deploy.segmenter import SegResult


def encode_labels_png(labels: np.ndarray) -> bytes:
    """8-bit PNG of class ids, or 16-bit when ids do not fit a byte (K > 255)."""
    import cv2

    image = labels if labels.dtype == np.uint8 else labels.astype(np.uint16)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OcrDeployError("could not encode a labels PNG")
    return data.tobytes()


def encode_image(image: np.ndarray, suffix: str) -> bytes:
    import cv2

    ok, data = cv2.imencode(suffix, image)
    if not ok:
        raise OcrDeployError(f"could not encode a {suffix} image")
    return data.tobytes()


def frame_stem(result: SegResult, per_frame: bool) -> str:
    source = result.source
    name = source.name if source else "frame"
    return f"{name}_{source.index:06d}" if per_frame and source else name


@dataclass
class ImageFileSink:
    """One file per frame, named <stem>_<what><suffix>; subclasses say what and how."""

    context: SinkContext
    written: list[Path] = field(default_factory=list)

    needs: ClassVar[frozenset[str]] = frozenset()
    video_only: ClassVar[bool] = False
    what: ClassVar[str] = ""
    suffix: ClassVar[str] = ".png"

    def encode(self, result: SegResult) -> bytes:
        raise NotImplementedError

    def write(self, result: SegResult) -> None:
        stem = frame_stem(result, self.context.is_video)
        path = self.context.output_path(f"{stem}_{self.what}{self.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)  # folder sources keep their sub-folders
        atomic_write_bytes(path, self.encode(result))
        self.written.append(path)

    def close(self) -> list[Path]:
        return self.written


class LabelImages(ImageFileSink):
    what = "labels"

    def encode(self, result: SegResult) -> bytes:
        return encode_labels_png(result.labels)


class ColorImages(ImageFileSink):
    needs = frozenset({"color"})
    what = "color"

    def encode(self, result: SegResult) -> bytes:
        return encode_image(self.context.decorate(result.color, result), ".png")


class OverlayImages(ImageFileSink):
    needs = frozenset({"overlay"})
    what = "overlay"
    suffix = ".jpg"

    def encode(self, result: SegResult) -> bytes:
        return encode_image(self.context.decorate(result.overlay, result), ".jpg")
