"""Several sources in one run (`ocr-deploy infer a.png b/ *.jpg clip.mp4`), in the order given.

Image specs only (files, folders, globs, as a shell expands `imgs/*.png`) become one set of
image files, named relative to their common folder, so the run is exactly that of one folder.
With a video among them the sources are chained: frames follow each other as one sequence,
named per source and frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ocr_deploy.sources.base import Frame, Source, SourceError
from ocr_deploy.sources.images import ImageFiles


@dataclass
class SourceChain(Source):
    """The frames of `parts`, one source after the other; every part is opened up front, so a
    missing or unreadable spec is the run's only error, before any model loads."""

    parts: list[Source] = field(default_factory=list)
    max_frames: int | None = None

    is_video: ClassVar[bool] = True

    def frames(self) -> Iterator[Frame]:
        produced = 0
        for part in self.parts:
            try:
                for frame in part.frames():
                    if self.max_frames is not None and produced >= self.max_frames:
                        return
                    produced += 1
                    yield frame
            finally:
                self._collect(part)

    def _collect(self, part: Source) -> None:
        report = part.report
        self.report.skipped += report.skipped
        self.report.oriented += report.oriented
        self.report.dropped += report.dropped
        if report.ended_early:
            self.report.ended_early = report.ended_early
        report.skipped, report.oriented, report.dropped = [], [], 0

    def reads_from(self, folder: Path) -> bool:
        return any(isinstance(part, ImageFiles) and part.reads_from(folder) for part in self.parts)

    def close(self) -> None:
        for part in self.parts:
            part.close()


def merge_image_files(parts: list[ImageFiles], max_frames: int | None) -> ImageFiles:
    """One set of image files from several, each file once, in the order given; names relative
    to the files' common folder."""
    paths: list[Path] = []
    decoded: dict[int, np.ndarray] = {}
    seen: set[Path] = set()
    for part in parts:
        for index, path in enumerate(part.paths):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            if index in part._decoded:
                decoded[len(paths)] = part._decoded[index]
            paths.append(path)
    paths = paths[:max_frames] if max_frames else paths
    root = Path(os.path.commonpath([str(path.resolve().parent) for path in paths]))
    return ImageFiles(kind="images", name=root.name or "images", total=len(paths),
                      paths=[path.resolve() for path in paths], root=root,
                      recursive=any(part.recursive for part in parts),
                      max_pixels=parts[0].max_pixels, _decoded=decoded)


def chain_sources(parts: list[Source], max_frames: int | None) -> Source:
    """Several opened sources as one: image files merged, anything else chained."""
    if not parts:
        raise SourceError("no source given")
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, ImageFiles) for part in parts):
        return merge_image_files([part for part in parts if isinstance(part, ImageFiles)], max_frames)
    if any(part.is_live for part in parts):
        for part in parts:
            part.close()
        raise SourceError("a camera or stream runs alone: give it as the only source")
    totals = [part.total for part in parts]
    total = None if None in totals else sum(t for t in totals if t is not None)
    if total is not None and max_frames is not None:
        total = min(total, max_frames)
    fps = next((part.fps for part in parts if part.fps), None)
    # Per-run files (the overlay video, the CSV) are named after the first video among them.
    name = next((part.name for part in parts if part.is_video), parts[0].name)
    return SourceChain(kind=f"{len(parts)} sources", name=name, total=total,
                       fps=fps, parts=parts, max_frames=max_frames)
