"""Video files and live captures (cameras, stream URLs) through OpenCV."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ocr_deploy.sources.base import Frame, Source, SourceError, SourceOptions
from ocr_deploy.sources.headers import too_many_pixels

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")

_LIVE_FPS_FALLBACK = 30.0
_LIVE_READ_FAILURES = 50  # consecutive failed reads that end a live source


def _capture(spec: str, open_timeout_s: float) -> Any:
    import cv2

    timeout_ms = int(open_timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    if spec.isdigit():
        return cv2.VideoCapture(int(spec))
    return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)


def is_live(spec: str) -> bool:
    """A camera index ('0') or a stream URL."""
    return spec.isdigit() or spec.lower().startswith(STREAM_SCHEMES)


def open_live(spec: str, options: SourceOptions) -> Source:
    return open_capture(spec, live=True, stride=options.stride, max_frames=options.max_frames,
                        open_timeout_s=options.open_timeout_s, max_pixels=options.max_pixels)


def is_video_file(spec: str) -> bool:
    path = Path(spec).expanduser()
    return path.exists() and path.suffix.lower() in VIDEO_SUFFIXES


def open_video_file(spec: str, options: SourceOptions) -> Source:
    path = Path(spec).expanduser()
    if not path.is_file():  # a FIFO named .mp4 would block the reader forever
        raise SourceError(f"{path} is not a regular file (a folder, FIFO, device or socket); "
                          "give a video file")
    return open_capture(str(path), live=False, stride=options.stride,
                        max_frames=options.max_frames, open_timeout_s=options.open_timeout_s,
                        max_pixels=options.max_pixels)


def open_capture(spec: str, *, live: bool, stride: int, max_frames: int | None,
                 open_timeout_s: float, max_pixels: int | None = None) -> Source:
    import cv2

    capture = _capture(spec, open_timeout_s)
    if not capture.isOpened():
        capture.release()
        if spec.isdigit():
            raise SourceError(f"camera {spec} is not available (no such device, or it is busy)")
        if live:
            raise SourceError(f"cannot open stream {spec} (unreachable, refused or not a "
                              "video stream)")
        raise SourceError(f"{spec} is not a readable video (corrupt or unsupported codec)")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    limit = too_many_pixels(size, max_pixels)
    if limit is not None:
        capture.release()
        raise SourceError(f"{spec} frames are too large: {limit}")
    if live and stride != 1:
        capture.release()
        raise SourceError("--stride applies to video files; live sources already drop the "
                          "frames the model cannot keep up with")
    if live:
        name = f"camera{spec}" if spec.isdigit() else "stream"
        return LiveCapture(kind="camera" if spec.isdigit() else "stream", name=name,
                           total=max_frames, fps=fps or _LIVE_FPS_FALLBACK, capture=capture,
                           max_frames=max_frames)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = capture.read()  # kept for the run: a video that opens may still hold no frame
    if not ok or first is None:
        capture.release()
        raise SourceError(f"{spec} has no frames (an empty or damaged video)")
    expected = (count + stride - 1) // stride if count > 0 else None
    if expected is not None and max_frames is not None:
        expected = min(expected, max_frames)
    return VideoFile(kind="video", name=Path(spec).stem, total=expected, fps=fps,
                     capture=capture, stride=stride, max_frames=max_frames, frame_count=count,
                     _first=first)


@dataclass
class _Capture(Source):
    """A cv2.VideoCapture read in one thread and released from another: one lock guards both,
    so a release never lands in the middle of a read."""

    capture: Any = None
    is_video: ClassVar[bool] = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False  # released by close(): a failed read then is no damage to report

    def _read(self) -> tuple[bool, Any]:
        with self._lock:
            if self.capture is None:
                return False, None
            return self.capture.read()

    def _grab(self) -> bool:
        with self._lock:
            return self.capture is not None and self.capture.grab()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self.capture is not None:
                self.capture.release()
                self.capture = None


@dataclass
class VideoFile(_Capture):
    stride: int = 1
    max_frames: int | None = None
    frame_count: int = 0
    _first: Any = None  # the first frame, read when the video was opened

    def frames(self) -> Iterator[Frame]:
        fps = self.fps or _LIVE_FPS_FALLBACK
        produced = 0
        index = 0
        while self.max_frames is None or produced < self.max_frames:
            start = time.perf_counter()
            if self._first is not None:
                ok, image, self._first = True, self._first, None
            else:
                ok, image = self._read()
            if not ok or image is None:
                self._note_end(index)
                return
            yield Frame(image, index, self.name, index * 1000.0 / fps,
                        (time.perf_counter() - start) * 1000.0)
            produced += 1
            for _ in range(self.stride - 1):  # grab() skips a frame without decoding it
                index += 1
                if not self._grab():
                    self._note_end(index)
                    return
            index += 1

    def _note_end(self, index: int) -> None:
        if self._closed:  # stopped by an interruption, not by the file
            return
        if self.frame_count and index < self.frame_count:
            self.report.ended_early = (f"video ended at frame {index} of {self.frame_count} "
                                       "(damaged or truncated)")


@dataclass
class LiveCapture(_Capture):
    """Reads continuously in its own thread and hands out only the newest frame, so a slow
    model never falls behind a camera: frames it could not take are counted as dropped."""

    is_live: ClassVar[bool] = True
    max_frames: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def frames(self) -> Iterator[Frame]:
        latest: list[Frame] = []
        ready = threading.Condition()
        finished = threading.Event()

        def read() -> None:
            failures, index = 0, 0
            while not self._stop.is_set() and failures < _LIVE_READ_FAILURES:
                start = time.perf_counter()
                ok, image = self._read()
                if self.capture is None:
                    break
                if not ok or image is None:
                    failures += 1
                    continue
                failures = 0
                frame = Frame(image, index, self.name, time.time() * 1000.0,
                              (time.perf_counter() - start) * 1000.0)
                with ready:
                    if latest:
                        self.report.dropped += 1
                        latest.clear()
                    latest.append(frame)
                    ready.notify()
                index += 1
            finished.set()
            with ready:
                ready.notify()

        reader = threading.Thread(target=read, name="live-capture", daemon=True)
        reader.start()
        produced = 0
        try:
            while self.max_frames is None or produced < self.max_frames:
                with ready:
                    ready.wait_for(lambda: latest or finished.is_set())
                    if not latest:
                        self.report.ended_early = "the live source stopped delivering frames"
                        return
                    frame = latest.pop()
                yield frame
                produced += 1
        finally:
            self._stop.set()
            reader.join(timeout=15.0)  # a stream read gives up within its read timeout

    def close(self) -> None:
        self._stop.set()
        super().close()
