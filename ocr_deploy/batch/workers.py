"""What runs on the Ray workers: decoding, one Segmenter per actor, the existing sinks and the
existing video pipeline. Plain Python (no Ray import): runner.py wraps these for Ray, and a test
can call them directly.

Rows returned are those of results.parquet (see table.py) plus an `error` column: an input that
fails is a row with its error, so one bad file never stops a batch of good ones.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ocr_deploy import sinks
from ocr_deploy.batch.table import Row, errors_schema, results_schema
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.segmenter import Segmenter, SegResult
from ocr_deploy.sinks import Outputs, SinkContext
from ocr_deploy.sinks.base import OutputClaims
from ocr_deploy.sources.base import Frame

_NO_IMAGE = np.zeros((1, 1, 3), np.uint8)  # stands in for an image that could not be decoded


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

    def open(self, *, is_video: bool) -> Segmenter:
        from ocr_deploy.backends import open_backend

        kinds = self.video_save if is_video else self.image_save
        render = sinks.render_needs(sinks.sink_types(kinds, is_video=is_video))
        backend = open_backend(Path(self.model), backend=self.backend, device=self.device,
                               threads=self.threads)
        try:
            return Segmenter(backend, size=self.size, policy=self.policy, alpha=self.alpha,
                             render=tuple(sorted(render)))
        except BaseException:
            backend.close()
            raise


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def probe_model(config: WorkerConfig) -> str:
    """Open the model as a worker will (same resources, same host kind) and say what runs it."""
    with config.open(is_video=False) as segmenter:
        return segmenter.describe()


def decode_row(row: Row, *, max_pixels: int | None = None) -> Row:
    """Ray Data task: read one image file as uint8 BGR; a failure becomes the row's error."""
    from ocr_deploy.preprocess import as_bgr8
    from ocr_deploy.sources.images import oversized, read_image

    start = time.perf_counter()
    image, error = _NO_IMAGE, ""
    try:
        limit = oversized(Path(row["path"]), max_pixels)
        decoded = None if limit else read_image(Path(row["path"]))
        if limit:
            error = f"is too large: {limit}"
        elif decoded is None:
            error = "is not a readable image (corrupt or unsupported)"
        else:
            image = as_bgr8(decoded)
    except Exception as failure:  # any reader failure is this input's, not the batch's
        error = f"{type(failure).__name__}: {failure}"
    return {**row, "image": image, "error": error,
            "decode_ms": (time.perf_counter() - start) * 1000.0}


class ImageWorker:
    """Ray Data actor: one model load, then batches of decoded images in, result rows out."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.segmenter = config.open(is_video=False)
        self.backend = self.segmenter.describe()
        self.worker = worker_name()

    def __call__(self, batch: dict[str, Any]) -> Any:
        import pyarrow as pa

        count = len(batch["path"])
        rows: list[Row | None] = [None] * count
        good: list[int] = []
        for index in range(count):
            if batch["error"][index]:
                rows[index] = self._error(batch, index, str(batch["error"][index]))
            else:
                good.append(index)
        # Equal sizes side by side: Segmenter.infer runs each run of equal sizes as one call.
        good.sort(key=lambda index: batch["image"][index].shape)
        for index, row in zip(good, self._segment(batch, good), strict=True):
            rows[index] = row
        done = [row for row in rows if row is not None]
        return pa.Table.from_pylist(done, schema=results_schema().append(pa.field("error", pa.string())))

    def _segment(self, batch: dict[str, Any], indices: list[int]) -> list[Row]:
        frames = [Frame(batch["image"][i], 0, str(batch["stem"][i]), None, float(batch["decode_ms"][i]))
                  for i in indices]
        try:
            results = self.segmenter.segment_batch(frames)
        except Exception:
            if len(frames) == 1:
                return [self._error(batch, indices[0], _describe(self._failure(frames[0])))]
            return [row for i in indices for row in self._segment(batch, [i])]  # find the bad one
        return [self._written(batch, index, result) for index, result in zip(indices, results, strict=True)]

    def _failure(self, frame: Frame) -> BaseException:
        try:
            self.segmenter.segment(frame)
        except Exception as error:
            return error
        return OcrDeployError("failed in a batch, not alone")

    def _written(self, batch: dict[str, Any], index: int, result: SegResult) -> Row:
        start = time.perf_counter()
        try:
            files = write_outputs(Path(self.config.out), self.config.image_save, self.segmenter,
                                  str(batch["stem"][index]), [result])
        except Exception as error:
            return self._error(batch, index, _describe(error))
        result.timings["write"] = (time.perf_counter() - start) * 1000.0
        return result_row(batch_item(batch, index), result, files, Path(self.config.out), frames=1,
                          backend=self.backend, config=self.config, worker=self.worker)

    def _error(self, batch: dict[str, Any], index: int, error: str) -> Row:
        return {"path": str(batch["path"][index]), "stem": str(batch["stem"][index]), "kind": "image",
                "input_bytes": int(batch["size"][index]), "frames_in_item": 1, "error": error,
                "model_sha256": self.config.model_sha256, "worker": self.worker}


class VideoWorker:
    """Ray actor: one model load, then whole videos, each through the video pipeline."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.segmenter = config.open(is_video=True)
        self.backend = self.segmenter.describe()
        self.worker = worker_name()

    def run(self, item: Row) -> list[Row]:
        """The rows of every frame; raises (for Ray to retry, then to record) when it fails.
        A failed video leaves no outputs: the files of the frames done are removed."""
        from ocr_deploy.pipeline import run_pipeline
        from ocr_deploy.sources import open_source

        out = Path(self.config.out)
        source = open_source(item["path"], max_pixels=self.config.max_pixels)
        source.name = item["stem"]  # the mirrored name: two videos of one stem stay apart
        recorder = FrameRecorder()
        (out / item["stem"]).parent.mkdir(parents=True, exist_ok=True)
        try:
            outputs = Outputs([*make_sinks(out, self.config.video_save, self.segmenter, item["stem"],
                                           is_video=True, fps=source.fps), recorder])
        except BaseException:
            source.close()
            raise
        summary = run_pipeline(self.segmenter, source, outputs, batch_size=self.config.batch,
                               show_progress=False)
        if summary.error or summary.interrupted or not recorder.results:
            for path in summary.written:
                path.unlink(missing_ok=True)
            raise OcrDeployError(summary.error or ("interrupted" if summary.interrupted else
                                                   "no readable frames"))
        frames = len(recorder.results)
        return [result_row(item, result, summary.written, out, frames=frames, backend=self.backend,
                           config=self.config, worker=self.worker) for result in recorder.results]


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
    """The sinks `infer` would use for this input. The batch folder is the batch's own (see
    runner.prepare_output), so its files are replaced on a rerun; one claim set per input."""
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


def batch_item(batch: dict[str, Any], index: int) -> Row:
    return {"path": str(batch["path"][index]), "stem": str(batch["stem"][index]),
            "kind": "image", "size": int(batch["size"][index])}


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
