"""What every sink is: told each result in order, closed once, says what it needs rendered."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, cast

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.meta import ModelMeta
from ocr_deploy.sinks.manifest import MANIFEST_NAME, OutputManifest

if TYPE_CHECKING:
    from ocr_deploy.segmenter import SegResult


class OutputExists(OcrDeployError):
    """An output would replace a file this run did not write, or leave the output folder."""


@dataclass
class OutputClaims:
    """The files one run writes into its folder. A path is claimed once before it is written:
    it must stay inside the folder, must not be claimed twice (two inputs, one output name), and
    must not exist already unless `overwrite` or the folder's manifest shows that ocr-deploy
    wrote it and nobody changed it since (reruns replace their own outputs, never the user's
    files). `record` adds what the run wrote to that manifest."""

    folder: Path
    overwrite: bool = False
    _claimed: set[Path] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _manifest: OutputManifest | None = None

    def claim(self, name: str) -> Path:
        path = self.folder / name
        resolved, root = path.resolve(), self.folder.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            raise OutputExists(f"output name {name!r} would land outside the output folder "
                               f"{self.folder}; rename the input")
        if resolved == root / MANIFEST_NAME:
            raise OutputExists(f"output name {name!r} is reserved for ocr-deploy's record of its "
                               "outputs; rename the input")
        with self._lock:
            if resolved in self._claimed:
                raise OutputExists(f"two inputs would both write {path}; rename one of them")
            if os.path.lexists(path) and not self.overwrite and not self._loaded().owns(path):
                raise OutputExists(f"{path} already exists and was not written by ocr-deploy (or "
                                   "was changed since); pass --overwrite to replace it, or choose "
                                   "another -o folder")
            self._claimed.add(resolved)
        return path

    def record(self, paths: list[Path]) -> None:
        """Note `paths` (written by this run) in the folder's manifest, so that the next run may
        replace them."""
        with self._lock:
            manifest = self._loaded()
            manifest.record(paths)
            manifest.save()

    def _loaded(self) -> OutputManifest:
        if self._manifest is None:
            self._manifest = OutputManifest.load(self.folder)
        return self._manifest


@dataclass(frozen=True, kw_only=True)
class SinkContext:
    """What a sink may need to know about the run it writes."""

    folder: Path
    meta: ModelMeta
    is_video: bool  # frames form a sequence: per-frame names carry the frame index
    stem: str  # the source's name, for per-source files
    fps: float
    claims: OutputClaims | None = None  # None: a private set that never overwrites
    legend: bool = False  # colour and overlay outputs carry a legend of the classes present

    def __post_init__(self) -> None:
        if self.claims is None:
            object.__setattr__(self, "claims", OutputClaims(self.folder))

    def output_path(self, name: str) -> Path:
        """Where the file `name` goes, claimed for this run (see OutputClaims)."""
        return cast(OutputClaims, self.claims).claim(name)  # set in __post_init__

    def decorate(self, image: np.ndarray, result: SegResult) -> np.ndarray:
        """A colour or overlay image as written: with the legend of its classes if asked."""
        if not self.legend:
            return image
        from ocr_deploy.legend import draw_legend

        dataset = self.meta.dataset
        return draw_legend(image, result.class_fractions, dataset.classes, dataset.palette)


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
