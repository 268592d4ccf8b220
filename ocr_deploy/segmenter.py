"""Segmenter: frames in, segmentation results out, on any backend.

Thread safety: `segment` and `segment_batch` may be called from several threads on one
Segmenter; it holds no per-call state, the pre/post functions are pure, and every backend's
`run` is thread-safe. Each `stream` call runs its own worker threads: prepare, infer and finish,
one stage each (staging.threaded_map), which is also how the video pipeline runs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import numpy as np

from ocr_deploy.attention import attention_note
from ocr_deploy.backends import Backend, open_backend
from ocr_deploy.errors import ConfigError
from ocr_deploy.meta import ModelMeta
from ocr_deploy.meta_checks import check_labels
from ocr_deploy.postprocess import (
    class_fractions,
    colorize,
    labels_from_scores,
    overlay,
    palette_lut,
    restore_labels,
)
from ocr_deploy.preprocess import (
    FrameError,
    Placement,
    as_bgr8,
    graph_input,
    plan_size,
    prepare_frame,
)
from ocr_deploy.sources.base import Frame
from ocr_deploy.staging import threaded_map
from ocr_deploy.tiling import WHOLE_FRAME, FrameLayout

RENDERINGS = ("color", "overlay")  # what SegResult can render; Segmenter(render=...) picks
BadFrameHandler = Callable[[np.ndarray | Frame, FrameError], None]


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


@dataclass
class SegResult:
    """One segmented frame. `color` and `overlay` are rendered on first use (or eagerly when
    the Segmenter was opened with render=...), so code that needs only labels never pays."""

    labels: np.ndarray  # [H, W] class ids at the frame's own size
    frame: np.ndarray  # the frame as uint8 BGR
    class_fractions: np.ndarray  # [K] share of pixels per class
    timings: dict[str, float]  # milliseconds per stage: decode (streams), pre, infer, post
    source: Frame | None = None
    lut: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((256, 3), np.uint8))
    alpha: float = 0.5

    @cached_property
    def color(self) -> np.ndarray:
        return colorize(self.labels, self.lut)

    @cached_property
    def overlay(self) -> np.ndarray:
        return overlay(self.frame, self.color, self.alpha)


@dataclass(frozen=True)
class Prepared:
    image: np.ndarray  # uint8 BGR, placed (at the network-input size, or tiled by `layout`)
    placement: Placement
    frame: np.ndarray  # uint8 BGR original
    pre_ms: float
    source: Frame | None = None
    layout: FrameLayout = WHOLE_FRAME  # the network inputs it makes: itself, or its tiles


class Segmenter:
    def __init__(self, backend: Backend, *, size: tuple[int, int] | None = None,
                 policy: str = "auto", alpha: float = 0.5, render: Sequence[str] = (),
                 tile: tuple[int, int] | None = None, overlap: float | None = None,
                 max_side: int | None = None):
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"--alpha must be between 0 and 1, got {alpha}")
        unknown = set(render) - set(RENDERINGS)
        if unknown:
            raise ConfigError(f"render may contain 'color' and 'overlay', not {sorted(unknown)}")
        self.backend = backend
        self.meta: ModelMeta = backend.meta
        self.plan = plan_size(self.meta, size=size, policy=policy, tile=tile, overlap=overlap,
                              max_side=max_side)
        self.alpha = alpha
        self.render = tuple(name for name in RENDERINGS if name in render)  # colour first
        self.lut = palette_lut(self.meta.dataset.palette)

    @classmethod
    def open(cls, path: Path | str, *, device: str = "auto", backend: str | None = None,
             **options: object) -> Segmenter:
        """Open a model made by ocr-deploy (.onnx, or .engine with its sidecar); options as for
        the constructor."""
        opened = open_backend(Path(path), backend=backend, device=device)
        try:
            return cls(opened, **options)
        except BaseException:
            opened.close()
            raise

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # The three steps, public so that pipelines can run them in separate threads.
    def prepare(self, item: np.ndarray | Frame) -> Prepared:
        start = time.perf_counter()
        source = item if isinstance(item, Frame) else None
        frame = as_bgr8(source.image if source else item)
        image, placement = prepare_frame(frame, self.plan, self.meta.input)
        return Prepared(image, placement, frame, _ms_since(start), source,
                        self.plan.layout(placement))

    def infer(self, batch: Sequence[Prepared]) -> list[tuple[Prepared, np.ndarray, float]]:
        """Run every network input of the batch (a frame, or its tiles), one backend call per
        group of equally sized inputs (at most the model's fixed batch), then merge each frame's
        outputs by its layout; ms are shared per input and summed per frame."""
        views = [(slot, view) for slot, item in enumerate(batch) for view in item.layout.split(item.image)]
        outputs: list[list[np.ndarray]] = [[] for _ in batch]
        spent = [0.0] * len(batch)
        for group in _same_size_groups(views, self.meta.input.batch):
            start = time.perf_counter()
            stacked = np.stack([view for _, view in group])
            fixed_batch = self.meta.input.batch
            if fixed_batch is not None and len(group) < fixed_batch:
                padding = np.zeros((fixed_batch - len(group), *stacked.shape[1:]), stacked.dtype)
                stacked = np.concatenate([stacked, padding])
            result = self.backend.run(graph_input(stacked, self.meta.input))[self.meta.output.name]
            share = _ms_since(start) / len(group)
            for index, (slot, _) in enumerate(group):
                outputs[slot].append(result[index])
                spent[slot] += share
        return [(item, item.layout.merge(outputs[slot]), spent[slot])
                for slot, item in enumerate(batch)]

    def finish(self, prepared: Prepared, output: np.ndarray, infer_ms: float) -> SegResult:
        start = time.perf_counter()
        if self.meta.output.kind == "labels":
            check_labels(output, self.meta)  # ids beyond K: a foreign graph, copied metadata
            labels = restore_labels(output, prepared.placement)
        else:
            labels = labels_from_scores(output, prepared.placement)
        result = SegResult(labels, prepared.frame, class_fractions(labels, self.meta.num_classes),
                           {}, prepared.source, self.lut, self.alpha)
        for name in self.render:
            getattr(result, name)
        result.timings.update(pre=prepared.pre_ms, infer=infer_ms, post=_ms_since(start))
        if prepared.source is not None:
            result.timings["decode"] = prepared.source.decode_ms
        return result

    def segment(self, frame: np.ndarray | Frame) -> SegResult:
        return self.segment_batch([frame])[0]

    def segment_batch(self, frames: Sequence[np.ndarray | Frame]) -> list[SegResult]:
        prepared = [self.prepare(frame) for frame in frames]
        return [self.finish(*step) for step in self.infer(prepared)]

    def stream(self, frames: Iterable[np.ndarray | Frame], *, batch_size: int = 1,
               prefetch: int = 4, on_bad_frame: BadFrameHandler | None = None,
               ) -> Iterator[SegResult]:
        """Results in order, while the next frames are decoded and prepared, the next batch
        inferred and the current results finished, each in its own thread. Bad frames raise,
        unless `on_bad_frame` is given: then it is told (from a worker thread) and the frame is
        skipped. Closing the iterator stops every thread."""
        prepared = threaded_map(frames, partial(self._prepare_stage, on_bad_frame),
                                maxsize=prefetch, name="prepare")
        inferred = threaded_map(_batched(prepared, batch_size), self.infer, maxsize=prefetch,
                                name="infer")
        return threaded_map(inferred, self._finish_stage, maxsize=prefetch, name="finish")

    # Stage functions for staging.threaded_map: one item in, zero or more out.
    def _prepare_stage(self, on_bad_frame: BadFrameHandler | None,
                       item: np.ndarray | Frame) -> Iterator[Prepared]:
        try:
            yield self.prepare(item)
        except FrameError as error:
            if on_bad_frame is None:
                raise
            on_bad_frame(item, error)

    def _finish_stage(self, step: tuple[Prepared, np.ndarray, float]) -> Iterator[SegResult]:
        yield self.finish(*step)

    def describe(self) -> str:
        return self.backend.describe()

    def attention_note(self) -> str | None:
        """The self-attention memory of the network inputs this Segmenter makes, with tiling
        advice above the limit; None for networks without all-pairs attention (HRNet-OCR)."""
        return attention_note(self.meta, self.plan.network_size, tiled=self.plan.tiles is not None)


View = tuple[int, np.ndarray]  # (index of its frame in the batch, network input)


def _same_size_groups(views: Sequence[View], limit: int | None) -> list[list[View]]:
    groups: list[list[View]] = []
    for item in views:
        last = groups[-1] if groups else None
        if (last and last[0][1].shape == item[1].shape
                and (limit is None or len(last) < limit)):
            last.append(item)
        else:
            groups.append([item])
    return groups


def _batched(items: Iterable[Prepared], size: int) -> Iterator[list[Prepared]]:
    batch: list[Prepared] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
