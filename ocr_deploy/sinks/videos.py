"""<stem>_overlay.mp4: the overlays as one video at the source's size and frame rate.

Written under a temporary name and renamed when closed, so an interrupted run leaves a playable
video of the frames done and never a half-written file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.fileio import PartialFile
from ocr_deploy.sinks.base import SinkContext

if TYPE_CHECKING:
    from ocr_deploy.segmenter import SegResult

_VIDEO_FOURCC = "mp4v"  # available in every opencv-python wheel, plays in common players


@dataclass
class OverlayVideo:
    context: SinkContext
    _writer: Any = None
    _file: PartialFile | None = None
    _size: tuple[int, int] = (0, 0)  # (width, height) of the video, from its first frame

    needs: ClassVar[frozenset[str]] = frozenset({"overlay"})
    video_only: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._path = self.context.output_path(f"{self.context.stem}_overlay.mp4")  # before frames

    def write(self, result: SegResult) -> None:
        import cv2

        image = self.context.decorate(result.overlay, result)
        if self._writer is None:
            self._open(image)
            self._size = image.shape[1], image.shape[0]
        elif (image.shape[1], image.shape[0]) != self._size:  # several sources of other sizes
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)

    def _open(self, first: np.ndarray) -> None:
        import cv2

        folder = self.context.folder
        partial = PartialFile(self._path)
        height, width = first.shape[:2]
        writer = cv2.VideoWriter(str(partial.temporary), cv2.VideoWriter_fourcc(*_VIDEO_FOURCC),
                                 self.context.fps, (width, height))
        if not writer.isOpened():
            writer.release()
            partial.discard()
            raise OcrDeployError(f"cannot write video into {folder} (OpenCV has no "
                                 f"{_VIDEO_FOURCC} encoder here)")
        self._file, self._writer = partial, writer

    def close(self) -> list[Path]:
        if self._writer is None:
            return []
        self._writer.release()
        self._writer = None
        return [self._file.commit()]
