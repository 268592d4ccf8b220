"""Where results go: label/colour/overlay images, an overlay video and a per-class CSV.

SINKS maps each `--save` kind to the Sink class that writes it. A new kind of output is one
module (a class with `needs`, `video_only`, `write` and `close`) and one row here; the render
set the Segmenter needs follows from the sinks' `needs`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.meta import ModelMeta
from ocr_deploy.sinks.base import OutputClaims, OutputExists, Sink, SinkContext, SinkType
from ocr_deploy.sinks.images import ColorImages, LabelImages, OverlayImages, encode_labels_png
from ocr_deploy.sinks.manifest import MANIFEST_NAME, OutputManifest
from ocr_deploy.sinks.tables import ClassTable
from ocr_deploy.sinks.videos import OverlayVideo
from ocr_deploy.vocabulary import SaveKind

if TYPE_CHECKING:
    from ocr_deploy.segmenter import SegResult

SINKS: Mapping[str, SinkType] = {
    SaveKind.labels: LabelImages,
    SaveKind.color: ColorImages,
    SaveKind.overlay: OverlayImages,
    SaveKind.video: OverlayVideo,
    SaveKind.csv: ClassTable,
}
SAVE_CHOICES = SaveKind.values()
IMAGE_DEFAULT = (SaveKind.labels, SaveKind.overlay)
VIDEO_DEFAULT = (SaveKind.video, SaveKind.csv)


@dataclass
class Outputs:
    """All sinks of one run, written in order and closed together. A lock keeps a close (an
    interrupted run finalising) from landing in the middle of a write; writes after the close
    are dropped. The files written are recorded in the folder's manifest of `claims`, also when
    a sink fails or the run was interrupted (see OutputClaims)."""

    sinks: list[Sink]
    claims: OutputClaims | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    @property
    def needs(self) -> frozenset[str]:
        return render_needs(self.sinks)

    def write(self, result: SegResult) -> bool:
        """Give `result` to every sink; False if the outputs were closed already."""
        with self._lock:
            if self._closed:
                return False
            for sink in self.sinks:
                sink.write(result)
            return True

    def close(self) -> list[Path]:
        """Close every sink, even when one fails (the first failure is raised afterwards).
        Returns the files that exist now, each once."""
        written: list[Path] = []
        failure: BaseException | None = None
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            for sink in self.sinks:
                try:
                    written += sink.close()
                except BaseException as error:
                    failure = failure or error
        existing = [path for path in dict.fromkeys(written) if path.is_file()]
        if self.claims is not None and existing:
            self.claims.record(existing)
        if failure is not None:
            raise failure
        return existing


def render_needs(sinks: Iterable[Sink | SinkType]) -> frozenset[str]:
    """What the Segmenter must render for these sinks (or sink classes)."""
    return frozenset().union(*(sink.needs for sink in sinks))


def sink_types(save: Iterable[str], *, is_video: bool,
               table: Mapping[str, SinkType] = SINKS) -> list[SinkType]:
    """The sink classes for `save`, in table order, once each; checked against the source."""
    rows = {str(kind): sink for kind, sink in table.items()}  # enum members and plain names
    wanted = {str(kind) for kind in save}
    unknown = wanted - set(rows)
    if unknown:
        raise OcrDeployError(f"--save takes {', '.join(rows)} (or none), not "
                             f"{', '.join(sorted(unknown))}")
    if not is_video and any(rows[kind].video_only for kind in wanted):
        video = [kind for kind, sink in rows.items() if sink.video_only]
        images = [kind for kind, sink in rows.items() if not sink.video_only]
        raise OcrDeployError(f"--save {'/'.join(video)} need a video, camera or stream source; "
                             f"for images use {_or_list(images)}")
    return [sink for kind, sink in rows.items() if kind in wanted]


def make_outputs(folder: Path, save: Iterable[str], *, meta: ModelMeta, is_video: bool,
                 stem: str, fps: float | None, overwrite: bool = False, legend: bool = False,
                 table: Mapping[str, SinkType] = SINKS) -> Outputs:
    """The run's sinks. Files that exist before the run are never replaced unless `overwrite`;
    sinks with one file per run claim it here, so that refusal comes before any frame."""
    claims = OutputClaims(folder, overwrite=overwrite)
    context = SinkContext(folder=folder, meta=meta, is_video=is_video, stem=stem,
                          fps=fps or 30.0, claims=claims, legend=legend)
    return Outputs([make(context) for make in sink_types(save, is_video=is_video, table=table)],
                   claims=claims)


def _or_list(names: list[str]) -> str:
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"


__all__ = ["IMAGE_DEFAULT", "MANIFEST_NAME", "SAVE_CHOICES", "SINKS", "VIDEO_DEFAULT", "ClassTable",
           "ColorImages", "LabelImages", "OutputClaims", "OutputExists", "OutputManifest", "Outputs",
           "OverlayImages", "OverlayVideo", "Sink", "SinkContext", "SinkType", "encode_labels_png",
           "make_outputs", "render_needs", "sink_types"]
