"""<stem>_classes.csv: per frame, its index, timestamp and the share of pixels of each class.

Written under a temporary name and renamed when closed, with the rows done so far."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from ocr_deploy.fileio import PartialFile
from ocr_deploy.sinks.base import SinkContext

if TYPE_CHECKING:
    from ocr_deploy.segmenter import SegResult


@dataclass
class ClassTable:
    context: SinkContext
    frames: int = 0
    _file: PartialFile | None = None
    _stream: TextIO | None = None
    _csv: Any = None

    needs: ClassVar[frozenset[str]] = frozenset()
    video_only: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._path = self.context.output_path(f"{self.context.stem}_classes.csv")  # before frames

    def write(self, result: SegResult) -> None:
        if self._csv is None:
            self._file = PartialFile(self._path)
            self._stream = self._file.temporary.open("w", newline="")
            self._csv = csv.writer(self._stream)
            self._csv.writerow(["frame", "timestamp_ms", *self.context.meta.dataset.classes])
        source = result.source
        index = source.index if source else self.frames
        stamp = ("" if source is None or source.timestamp_ms is None
                 else f"{source.timestamp_ms:.1f}")
        self._csv.writerow([index, stamp, *(f"{value:.6f}" for value in result.class_fractions)])
        self.frames += 1

    def close(self) -> list[Path]:
        if self._stream is None:
            return []
        self._stream.close()
        self._stream = None
        return [self._file.commit()]
