"""What runs on the Ray workers: one Segmenter per actor, the existing sinks and the existing
pipelines. Plain Python (no Ray import): runner.py wraps these for Ray, and a test can call them
directly.

A worker is handed work units (see `work_units`): one video, or a few images. Each image unit is
decoded, prepared, inferred, finished and written in overlapping threads (Segmenter.stream, as
`infer` runs a folder), so a worker keeps its CPUs busy and frames never cross Ray's object
store: only paths go in and result rows come out. Each video runs the video pipeline of `infer`.

Rows returned are those of results.parquet (see table.py) plus an `error` column: an input that
fails is a row with its error, so one bad file never stops a batch of good ones.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ocr_deploy import sinks
from ocr_deploy.backends import Backend
from ocr_deploy.batch.plan import WorkItem
from ocr_deploy.batch.table import Row, errors_schema, results_schema
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.preprocess import FrameError
from ocr_deploy.segmenter import Segmenter, SegResult
from ocr_deploy.sinks import Outputs, SinkContext
from ocr_deploy.sinks.base import OutputClaims
from ocr_deploy.sources.base import Frame

_NO_IMAGE = np.zeros((1, 1, 3), np.uint8)  # stands in for images a row does not keep
CRASH_ON_ENV = "OCR_DEPLOY_BATCH_CRASH_ON"  # test hook: a worker dies on inputs whose path has this
IMAGES_PER_UNIT = 8  # images per worker call: long enough to overlap its stages, short enough
#                      that the last calls of a run spread over every worker


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """Everything a worker needs, sent to it once (it must pickle)."""

    model: str
    model_sha256: str
    out: str
    image_save: tuple[str, ...]
    video_save: tuple[str, ...]
    device: str = "auto"
    backend: str | None = None
    threads: int | None = None  # CPU threads of the backend: the worker's CPU share
    size: tuple[int, int] | None = None
    policy: str = "auto"
    alpha: float = 0.5
    batch: int = 1
    max_pixels: int | None = None
    retries: int = 1  # further attempts of a video that failed, or of a unit that crashed a worker
    crash_on: str | None = None  # test hook (CRASH_ON_ENV): the process exits on such a unit

    def open_backend(self) -> Backend:
        from ocr_deploy.backends import open_backend

        return open_backend(Path(self.model), backend=self.backend, device=self.device,
                            threads=self.threads)

    def segmenter(self, backend: Backend, *, is_video: bool) -> Segmenter:
        """A Segmenter rendering what this kind of input's outputs need (it shares `backend`)."""
        kinds = self.video_save if is_video else self.image_save
        render = sinks.render_needs(sinks.sink_types(kinds, is_video=is_video))
        return Segmenter(backend, size=self.size, policy=self.policy, alpha=self.alpha,
                         render=tuple(sorted(render)))


def work_units(items: Sequence[WorkItem], workers: int, batch: int) -> list[Row]:
    """The rows handed to the workers: each video alone, first (the longest tasks start early
    and do not trail the run), then the images in groups of IMAGES_PER_UNIT (at least --batch;
    fewer when there are few images, so that every worker gets some)."""
    videos = sorted((item for item in items if item.kind == "video"), key=lambda item: -item.size)
    images = [item for item in items if item.kind == "image"]
    per_unit = max(batch, min(IMAGES_PER_UNIT, math.ceil(len(images) / max(1, 2 * workers))))
    groups = [[video] for video in videos] + [images[start:start + per_unit]
                                              for start in range(0, len(images), per_unit)]
    return [{"kind": group[0].kind, "paths": [item.path for item in group],
             "stems": [item.stem for item in group], "sizes": [item.size for item in group]}
            for group in groups]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def probe_model(config: WorkerConfig) -> str:
    """Open the model as a worker will (same resources, same host kind) and say what runs it."""
    backend = config.open_backend()
    try:
        return config.segmenter(backend, is_video=False).describe()
    finally:
        backend.close()


class SegmentWorker:
    """Ray Data actor: one model load, then work units in, result rows out."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.out = Path(config.out)
        self.backend = config.open_backend()
        try:
            self.images = config.segmenter(self.backend, is_video=False)
            self.videos = config.segmenter(self.backend, is_video=True)
        except BaseException:
            self.backend.close()
            raise
        self.described = self.images.describe()
        self.worker = worker_name()

    def __call__(self, units: Any) -> Any:
        """A pyarrow table of work units in, a pyarrow table of result rows out."""
        import pyarrow as pa

        rows: list[Row] = []
        for unit in units.to_pylist():
            if self.config.crash_on and any(self.config.crash_on in path for path in unit["paths"]):
                os._exit(3)  # as a segfault in a decoder would: no exception, no cleanup
            items = [{"path": path, "stem": stem, "kind": unit["kind"], "size": size}
                     for path, stem, size in zip(unit["paths"], unit["stems"], unit["sizes"], strict=True)]
            if unit["kind"] == "video":
                rows += [row for item in items for row in self._video_with_retries(item)]
            else:
                rows += self._images(items)
        return pa.Table.from_pylist(rows, schema=results_schema().append(pa.field("error", pa.string())))

    def _images(self, items: list[Row]) -> list[Row]:
        """Decode, prepare, infer, finish in the stream's threads; write in this one."""
        rows: dict[int, Row] = {}
        position = {item["stem"]: index for index, item in enumerate(items)}  # stems are unique

        def frames() -> Iterator[Frame]:
            for index, item in enumerate(items):
                start = time.perf_counter()
                image, error = read_input_image(Path(item["path"]), self.config.max_pixels)
                if image is None:
                    rows[index] = self._error(item, error)
                    continue
                # Frame 0 of its own input, as infer's rows would say; found again by its stem.
                yield Frame(image, 0, item["stem"], None, (time.perf_counter() - start) * 1000.0)

        def bad_frame(frame: np.ndarray | Frame, error: FrameError) -> None:
            if isinstance(frame, Frame):
                rows[position[frame.name]] = self._error(items[position[frame.name]], _describe(error))

        results = self.images.stream(frames(), batch_size=self.config.batch, on_bad_frame=bad_frame)
        failed = False
        try:
            for result in results:
                assert result.source is not None  # every frame streamed is a Frame
                index = position[result.source.name]
                rows[index] = self._written(items[index], result)
        except Exception:
            failed = True
        finally:
            close = getattr(results, "close", None)
            if close:
                close()  # the stream's threads stop before anything else touches `rows`
        if failed:
            # A batch that failed in inference: the images it held, and those after it, one by one.
            for index in range(len(items)):
                if index not in rows:
                    rows[index] = self._alone(items[index])
        return [rows[index] for index in sorted(rows)]

    def _alone(self, item: Row) -> Row:
        image, error = read_input_image(Path(item["path"]), self.config.max_pixels)
        if image is None:
            return self._error(item, error)
        try:
            result = self.images.segment(Frame(image, 0, item["stem"], None, 0.0))
        except Exception as failure:
            return self._error(item, _describe(failure))
        return self._written(item, result)

    def _written(self, item: Row, result: SegResult) -> Row:
        start = time.perf_counter()
        try:
            files = write_outputs(self.out, self.config.image_save, self.images, item["stem"], [result])
        except Exception as error:
            return self._error(item, _describe(error))
        result.timings["write"] = (time.perf_counter() - start) * 1000.0
        return result_row(item, result, files, self.out, frames=1, backend=self.described,
                          config=self.config, worker=self.worker)

    def _error(self, item: Row, error: str) -> Row:
        return {"path": item["path"], "stem": item["stem"], "kind": item["kind"],
                "input_bytes": int(item["size"]), "frames_in_item": 1, "error": error,
                "model_sha256": self.config.model_sha256, "worker": self.worker}

    def _video_with_retries(self, item: Row) -> list[Row]:
        error = ""
        for _attempt in range(1 + max(0, self.config.retries)):
            try:
                return self._video(item)
            except Exception as failure:
                error = _describe(failure)
        return [self._error(item, error)]

    def _video(self, item: Row) -> list[Row]:
        """The rows of every frame; raises when the video fails. A failed video leaves no
        outputs: the files of the frames done are removed."""
        from ocr_deploy.pipeline import run_pipeline
        from ocr_deploy.sources import open_source

        source = open_source(item["path"], max_pixels=self.config.max_pixels)
        source.name = item["stem"]  # the mirrored name: two videos of one stem stay apart
        recorder = FrameRecorder()
        (self.out / item["stem"]).parent.mkdir(parents=True, exist_ok=True)
        try:
            outputs = Outputs([*make_sinks(self.out, self.config.video_save, self.videos, item["stem"],
                                           is_video=True, fps=source.fps), recorder])
        except BaseException:
            source.close()
            raise
        summary = run_pipeline(self.videos, source, outputs, batch_size=self.config.batch,
                               show_progress=False)
        if summary.error or summary.interrupted or not recorder.results:
            for path in summary.written:
                path.unlink(missing_ok=True)
            raise OcrDeployError(summary.error or ("interrupted" if summary.interrupted else
                                                   "no readable frames"))
        frames = len(recorder.results)
        return [result_row(item, result, summary.written, self.out, frames=frames,
                           backend=self.described, config=self.config, worker=self.worker)
                for result in recorder.results]


def read_input_image(path: Path, max_pixels: int | None) -> tuple[np.ndarray | None, str]:
    """sources.images.read_image_file, with any reader failure made this input's error: one
    file never fails the unit it travels in."""
    from ocr_deploy.sources.images import read_image_file

    try:
        return read_image_file(path, max_pixels)
    except Exception as failure:
        return None, f"{type(failure).__name__}: {failure}"


@dataclass
class FrameRecorder:
    """A sink that keeps what each frame's results.parquet row needs (not its images)."""

    results: list[SegResult] = field(default_factory=list)

    needs: ClassVar[frozenset[str]] = frozenset()
    video_only: ClassVar[bool] = False

    def write(self, result: SegResult) -> None:
        # Only the small parts: labels and images would hold every frame of the video in memory.
        self.results.append(SegResult(np.zeros((0, 0), np.uint8), _NO_IMAGE, result.class_fractions,
                                      result.timings, result.source))

    def close(self) -> list[Path]:
        return []


def make_sinks(out: Path, kinds: Sequence[str], segmenter: Segmenter, stem: str, *, is_video: bool,
               fps: float | None) -> list[sinks.Sink]:
    """The sinks `infer` would use for this input. The batch folder is the batch's own (the
    runner refuses any other), so its files are replaced on a rerun; one claim set per input."""
    claims = OutputClaims(out, overwrite=True)
    context = SinkContext(folder=out, meta=segmenter.meta, is_video=is_video, stem=stem,
                          fps=fps or 30.0, claims=claims)
    return [make(context) for make in sinks.sink_types(kinds, is_video=is_video)]


def write_outputs(out: Path, kinds: Sequence[str], segmenter: Segmenter, stem: str,
                  results: list[SegResult]) -> list[Path]:
    made = make_sinks(out, kinds, segmenter, stem, is_video=False, fps=None)
    outputs = Outputs(made)
    try:
        for result in results:
            outputs.write(result)
    finally:
        written = outputs.close()
    return written


def result_row(item: Row, result: SegResult, files: list[Path], out: Path, *, frames: int,
               backend: str, config: WorkerConfig, worker: str) -> Row:
    source = result.source
    timings = result.timings
    return {
        "path": item["path"], "stem": item["stem"], "kind": item["kind"],
        "frame": source.index if source else 0,
        "timestamp_ms": source.timestamp_ms if source else None,
        "class_fractions": [float(v) for v in result.class_fractions],
        "outputs": [str(path.relative_to(out)) for path in files],
        "output_bytes": [path.stat().st_size for path in files],
        "input_bytes": item["size"], "frames_in_item": frames,
        "backend": backend, "model_sha256": config.model_sha256,
        **{f"{stage}_ms": float(timings.get(stage, 0.0)) for stage in ("decode", "pre", "infer", "post", "write")},
        "worker": worker, "error": "",
    }


def error_row(item: Row, error: str, model_sha256: str) -> Row:
    row = {"path": item["path"], "stem": item["stem"], "kind": item["kind"], "error": error,
           "model_sha256": model_sha256}
    return {name: row.get(name) for name in errors_schema().names}


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, OcrDeployError) else f"{type(error).__name__}: {text}"
