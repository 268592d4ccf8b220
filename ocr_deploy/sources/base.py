"""What every source is made of: frames, the source itself and its report. No I/O here, so
every source module imports this one and none imports another."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ocr_deploy.errors import OcrDeployError


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
    oriented: list[tuple[str, str]] = field(default_factory=list)  # (name, how EXIF turned it)


@dataclass(frozen=True, kw_only=True)
class SourceOptions:
    """How a spec is opened; each kind of source uses the options that apply to it."""

    recursive: bool = False  # folders: search sub-folders too
    stride: int = 1  # videos and frame iterables: every N-th frame
    max_frames: int | None = None  # stop after N frames
    open_timeout_s: float = 10.0  # streams: give up connecting (and each read) after this
    max_pixels: int | None = None  # images and videos: refuse larger frames before decoding

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise SourceError(f"--stride must be at least 1 (got {self.stride})")
        if self.max_frames is not None and self.max_frames < 1:
            raise SourceError(f"--max-frames must be at least 1 (got {self.max_frames})")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise SourceError(f"--max-pixels must be at least 1 (got {self.max_pixels})")


@dataclass
class Source:
    """Base for all sources; subclasses implement `frames` and say what kind of sequence
    they are through the two class attributes below (a user-made subclass sets them too)."""

    kind: str
    name: str
    total: int | None = None  # frames expected after stride and max_frames, when known
    fps: float | None = None
    report: SourceReport = field(default_factory=SourceReport)

    # Frames form a sequence in time: outputs are named per frame, and video/CSV outputs apply.
    is_video: ClassVar[bool] = False
    # Frames arrive in real time: the pipeline queues none, so results never lag the source.
    is_live: ClassVar[bool] = False

    @property
    def skips_bad_frames(self) -> bool:
        """A frame the model cannot take is skipped and reported (folders, videos) rather than
        being the run's error (a single image)."""
        return True

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release devices and files; safe to call more than once."""
