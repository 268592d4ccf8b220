"""Where frames come from: one argument for images, folders, globs, videos, cameras, stream
URLs, a Source of your own, or any iterable of frames.

A string spec is matched against SOURCE_KINDS in order, and the first row that recognises it
opens it. A new kind of source is one module (a Source subclass and its two functions) and one
row here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ocr_deploy.sources import captures, images
from ocr_deploy.sources.base import Frame, Source, SourceError, SourceOptions, SourceReport
from ocr_deploy.sources.captures import STREAM_SCHEMES, VIDEO_SUFFIXES, LiveCapture, VideoFile
from ocr_deploy.sources.chain import SourceChain, chain_sources
from ocr_deploy.sources.frames import FrameIterable, is_frame_iterable, open_frames
from ocr_deploy.sources.headers import DEFAULT_MAX_PIXELS
from ocr_deploy.sources.images import IMAGE_SUFFIXES, ImageFiles

SourceSpec = str | os.PathLike[str] | Source | Iterable[np.ndarray | Frame]


@dataclass(frozen=True)
class SourceKind:
    """One row of the table: what it is, how to recognise its spec, how to open it."""

    name: str
    recognises: Callable[[str], bool]
    open: Callable[[str, SourceOptions], Source]


# Order matters: the first row that recognises a spec opens it.
SOURCE_KINDS: tuple[SourceKind, ...] = (
    SourceKind("camera or stream", captures.is_live, captures.open_live),
    SourceKind("folder", images.is_folder, images.open_folder),
    SourceKind("glob", images.is_glob, images.open_glob),
    SourceKind("video file", captures.is_video_file, captures.open_video_file),
    SourceKind("image file", images.is_existing_path, images.open_image),
)


def open_source(spec: SourceSpec | list[str], *, recursive: bool = False, stride: int = 1,
                max_frames: int | None = None, open_timeout_s: float = 10.0,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Source:
    """Image file, folder, glob, video file, camera index ('0') or stream URL, or a list of
    such specs (run in order as one source); a Source of your own passes straight through, and
    an iterable of frames is wrapped as kind 'frames'.
    Image files and videos with more than `max_pixels` per frame (read from the header, before
    decoding) are refused; None lifts the limit."""
    options = SourceOptions(recursive=recursive, stride=stride, max_frames=max_frames,
                            open_timeout_s=open_timeout_s, max_pixels=max_pixels)
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, str):
        return _open_spec(spec, options)
    if _is_spec_list(spec):
        return _open_specs([os.fspath(item) for item in spec], options)  # type: ignore[union-attr]
    if is_frame_iterable(spec):
        return open_frames(spec, options)
    raise SourceError(f"cannot read frames from a {type(spec).__name__}: give a path, glob, "
                      "camera index or stream URL, a Source, or an iterable of images")


def _open_spec(spec: str, options: SourceOptions) -> Source:
    for kind in SOURCE_KINDS:
        if kind.recognises(spec):
            return kind.open(spec, options)
    raise SourceError(f"source not found: {spec} (give an image, folder, glob, video file, "
                      "camera index such as 0, or a stream URL)")


def _is_spec_list(spec: object) -> bool:
    return isinstance(spec, list | tuple) and bool(spec) and \
        all(isinstance(item, str | os.PathLike) for item in spec)


def _open_specs(specs: list[str], options: SourceOptions) -> Source:
    """Several specs, in order, as one source (see ocr_deploy.sources.chain)."""
    parts: list[Source] = []
    try:
        for spec in specs:
            parts.append(_open_spec(spec, options))
    except BaseException:
        for part in parts:
            part.close()
        raise
    return chain_sources(parts, options.max_frames)


def read_frames(specs: list[str], *, max_frames: int,
                stride: int = 1) -> list[tuple[str, np.ndarray]]:
    """Named uint8 BGR frames from image/folder/glob/video specs (at most max_frames each)."""
    from ocr_deploy.preprocess import as_bgr8

    frames = []
    for spec in specs:
        source = open_source(spec, stride=stride, max_frames=max_frames)
        try:
            frames += [(f"{frame.name}_{frame.index}" if source.is_video else frame.name,
                        as_bgr8(frame.image)) for frame in source.frames()]
        finally:
            source.close()
    if not frames:
        raise SourceError(f"no readable frames in {', '.join(specs)}")
    return frames


__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "SOURCE_KINDS", "STREAM_SCHEMES", "VIDEO_SUFFIXES", "Frame",
           "FrameIterable", "ImageFiles", "LiveCapture", "Source", "SourceError", "SourceKind",
           "SourceOptions", "SourceChain", "SourceReport", "SourceSpec", "VideoFile", "open_source",
           "read_frames"]
