"""Frames the caller already has: any iterable of images (np.ndarray) or Frame objects."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ocr_deploy.sources.base import Frame, Source, SourceError, SourceOptions


@dataclass
class FrameIterable(Source):
    """Wraps a list, generator or array of frames. Arrays become Frames named after the source
    and numbered by position; Frames keep their own name and index. Iterated once."""

    items: Iterable[np.ndarray | Frame] = field(default_factory=list)
    stride: int = 1
    max_frames: int | None = None

    # A sequence of frames: per-frame output names, like a video.
    is_video: ClassVar[bool] = True

    def frames(self) -> Iterator[Frame]:
        iterator = iter(self.items)
        produced = 0
        for index in itertools.count():
            if self.max_frames is not None and produced >= self.max_frames:
                return
            start = time.perf_counter()  # the time a generator takes to make a frame
            try:
                item = next(iterator)
            except StopIteration:
                return
            if index % self.stride:
                continue
            decode_ms = (time.perf_counter() - start) * 1000.0
            if isinstance(item, Frame):
                yield item
            elif isinstance(item, np.ndarray):
                yield Frame(item, index, self.name, None, decode_ms)
            else:
                raise SourceError(f"item {index} of the frames is a {type(item).__name__}; give "
                                  "images as numpy arrays (H x W or H x W x C) or Frame objects")
            produced += 1


def is_frame_iterable(spec: object) -> bool:
    return isinstance(spec, Iterable) and not isinstance(spec, str | bytes)


def open_frames(items: Iterable[np.ndarray | Frame], options: SourceOptions, *,
                name: str = "frames") -> FrameIterable:
    if isinstance(items, np.ndarray) and items.ndim != 4:
        raise SourceError(f"an array of shape {items.shape} is not a sequence of frames; pass a "
                          "list of images, or one array of shape (frames, height, width, channels)")
    total = None
    if isinstance(items, Sized):
        total = (len(items) + options.stride - 1) // options.stride
        if options.max_frames is not None:
            total = min(total, options.max_frames)
    return FrameIterable(kind="frames", name=name, total=total, items=items,
                         stride=options.stride, max_frames=options.max_frames)
