"""What every sink is: told each result in order, closed once, says what it needs rendered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from ocr_deploy.meta import ModelMeta

if TYPE_CHECKING:
    from ocr_deploy.segmenter import SegResult


@dataclass(frozen=True, kw_only=True)
class SinkContext:
    """What a sink may need to know about the run it writes."""

    folder: Path
    meta: ModelMeta
    is_video: bool  # frames form a sequence: per-frame names carry the frame index
    stem: str  # the source's name, for per-source files
    fps: float


class Sink(Protocol):
    """Receives every result of a run, in order, from one thread.

    `needs` names the renderings of a SegResult it reads ("color", "overlay"), so that the
    Segmenter renders them in its own stage rather than in the writer's. `close` finalises what
    was written so far (also after an interruption) and returns the files it wrote.
    """

    needs: ClassVar[frozenset[str]]

    def write(self, result: SegResult) -> None: ...

    def close(self) -> list[Path]: ...


class SinkType(Protocol):
    """A row of the sink table: a Sink class, built from the run's context."""

    needs: frozenset[str]
    video_only: bool  # only for sources that are a sequence of frames (videos, cameras)

    def __call__(self, context: SinkContext) -> Sink: ...
