"""A whole run: source -> Segmenter -> sinks, with every stage overlapping the others.

Four stages, each its own thread (staging.threaded_map): prepare (decode and Segmenter.prepare),
infer (Segmenter.infer on batches), finish (Segmenter.finish: post-processing and rendering)
and write (the sinks); the caller's thread only counts and shows progress. The first three are
Segmenter.stream, so API users get the same stages. Ctrl-C or a failure stops the stages, and
the outputs are finalised with the frames done so far; a failure before any frame was done is
raised as is. SIGTERM (docker stop, systemd, timeout) stops a run as Ctrl-C does; a second
signal stops the waiting for the stage threads, so the run ends promptly.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import numpy as np

from ocr_deploy import sinks
from ocr_deploy.backends import Backend
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.fileio import ensure_output_folder, remove_empty_folders
from ocr_deploy.preprocess import FrameError
from ocr_deploy.segmenter import Segmenter, SegResult
from ocr_deploy.sinks import Outputs
from ocr_deploy.sources import (
    DEFAULT_MAX_PIXELS,
    Frame,
    ImageFiles,
    Source,
    SourceChain,
    SourceSpec,
    open_source,
)
from ocr_deploy.staging import threaded_map

# Timing names in the summary: decode and pre are measured in the prepare stage, post in the
# finish stage.
STAGES = ("decode", "pre", "infer", "post", "write")
# A model file, or a function that opens a backend (called once the source has opened).
ModelSpec = Path | Callable[[], Backend]


@dataclass(frozen=True, kw_only=True)
class InferOptions:
    """Everything `ocr-deploy infer` can be told, with its defaults."""

    out: Path = Path("ocr-deploy-out")
    save: tuple[str, ...] | None = None  # None: labels+overlay for images, video+csv for videos
    device: str = "auto"
    backend: str | None = None
    alpha: float = 0.5
    size: tuple[int, int] | None = None
    policy: str = "auto"
    tile: tuple[int, int] | None = None  # --policy sliding: tile size [default: a fixed input's]
    overlap: float | None = None  # --policy sliding: share of a tile neighbours overlap
    stride: int = 1
    max_frames: int | None = None
    recursive: bool = False
    batch: int = 1
    progress: bool = True
    overwrite: bool = False  # replace files that existed before the run
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # per frame, checked before decoding; None: no limit
    max_side: int | None = None  # frames at native size: longer sides scaled down to this
    legend: bool = False  # colour and overlay outputs carry a legend of the classes present


# Network inputs above this many pixels are slow and take gigabytes (the OCR head's memory
# grows with the pixels): the run says so and suggests --max-side or --size.
LARGE_FRAME_PIXELS = 2048 * 2048


@dataclass
class StageTimes:
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def add(self, timings: dict[str, float]) -> None:
        for stage, value in timings.items():
            self.samples.setdefault(stage, []).append(value)

    def mean(self, stage: str) -> float:
        values = self.samples.get(stage) or [0.0]
        return float(np.mean(values))

    def p95(self, stage: str) -> float:
        values = self.samples.get(stage) or [0.0]
        return float(np.percentile(values, 95))


@dataclass
class RunSummary:
    source: Source
    frames: int
    seconds: float
    times: StageTimes
    written: list[Path]
    bad_frames: list[tuple[str, str]]
    interrupted: bool = False
    error: str | None = None
    abandoned: bool = False  # a second signal: stage threads were left running (exit at once)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        how = "interrupted after" if self.interrupted else "processed"
        lines = [f"{how} {self.frames} frame(s) from {self.source.kind} '{self.source.name}' in "
                 f"{self.seconds:.1f} s: {self.fps:.2f} FPS end to end",
                 "  stage    mean ms   p95 ms"]
        lines += [f"  {stage:<7}{self.times.mean(stage):>9.1f}{self.times.p95(stage):>9.1f}"
                  for stage in STAGES if self.times.samples.get(stage)]
        report = self.source.report
        skipped = report.skipped + self.bad_frames
        if skipped:
            shown = "; ".join(f"{name}: {why}" for name, why in skipped[:3])
            more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
            lines.append(f"  skipped {len(skipped)}: {one_line(shown)}{more}")
        if report.dropped:
            lines.append(f"  dropped {report.dropped} live frame(s): the model is slower than "
                         "the source, so only the newest frame is taken")
        if report.ended_early:
            lines.append(f"  note: {report.ended_early}")
        if report.oriented:
            shown = "; ".join(f"{name} {how}" for name, how in report.oriented[:3])
            more = f" (and {len(report.oriented) - 3} more)" if len(report.oriented) > 3 else ""
            lines.append(f"  EXIF orientation applied to {len(report.oriented)} image(s), outputs "
                         f"as displayed: {shown}{more}")
        if self.error:
            lines.append(f"  stopped by an error: {one_line(self.error)}")
        if self.written:
            lines.append(f"  wrote {len(self.written)} file(s) to {self.written[0].parent}"
                         + (f", e.g. {self.written[0].name}" if len(self.written) > 2 else ": "
                            + ", ".join(p.name for p in self.written)))
        return lines


def one_line(text: str) -> str:
    """A message (OpenCV's and ONNX Runtime's hold newlines) folded onto one line."""
    return " ".join(str(text).split())


class _Signals:
    """The first SIGINT or SIGTERM raises KeyboardInterrupt in the main thread (the run stops
    and finalises its outputs); any later one only sets `hurry`, so the finalising is never
    itself interrupted half-way and the waits for stage threads end at once."""

    def __init__(self) -> None:
        self.hurry = threading.Event()
        self.raised = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.raised:
            self.hurry.set()
            return
        self.raised = True
        raise KeyboardInterrupt

    def finalising(self) -> None:
        """From now on a signal hurries the run rather than interrupting it."""
        self.raised = True


@contextmanager
def _signals_handled() -> Iterator[_Signals]:
    handler = _Signals()
    if threading.current_thread() is not threading.main_thread():
        yield handler  # signals are delivered to the main thread only; its caller handles them
        return
    # A signal the parent set to be ignored (a background job's SIGINT, nohup) stays ignored.
    previous = {number: signal.signal(number, handler.handle)
                for number in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(number) is not signal.SIG_IGN}
    try:
        yield handler
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def run_pipeline(segmenter: Segmenter, source: Source, outputs: Outputs, *, batch_size: int = 1,
                 show_progress: bool = True, log: Callable[[str], None] = lambda _: None) -> RunSummary:
    with _signals_handled() as signals:
        return _run(segmenter, source, outputs, batch_size=batch_size,
                    show_progress=show_progress, signals=signals, log=log)


def _warn_large(frames: Iterator[Frame], segmenter: Segmenter,
                log: Callable[[str], None]) -> Iterator[Frame]:
    """The frames as they come; the first whose network input exceeds LARGE_FRAME_PIXELS is
    warned about before it is segmented."""
    warned = False
    for frame in frames:
        if not warned and isinstance(frame.image, np.ndarray) and frame.image.ndim >= 2:
            height, width = frame.image.shape[:2]
            placement = segmenter.plan.place(height, width)
            pixels = placement.input_height * placement.input_width
            if pixels > LARGE_FRAME_PIXELS:
                warned = True
                side = 2048 if segmenter.meta.input.fixed_size is None else None
                log(f"warning: {frame.name} is {height}x{width} ({height * width / 1e6:.1f} MP) "
                    f"and is segmented at {placement.input_height}x{placement.input_width}, above "
                    f"the {LARGE_FRAME_PIXELS / 1e6:.1f} MP budget: slow, and it can take "
                    "gigabytes of memory; pass "
                    + (f"--max-side {side} (scaled down, labels scaled back) or " if side else "")
                    + "--size HxW")
        yield frame


def _run(segmenter: Segmenter, source: Source, outputs: Outputs, *, batch_size: int,
         show_progress: bool, signals: _Signals, log: Callable[[str], None]) -> RunSummary:
    from ocr_deploy.progress import progress_bar

    times = StageTimes()
    bad_frames: list[tuple[str, str]] = []

    def note_bad(item: np.ndarray | Frame, error: FrameError) -> None:
        bad_frames.append((item.name if isinstance(item, Frame) else "frame", str(error)))

    # Frames the sinks took, counted where they are written: after an interruption the last
    # ones written may never reach this thread, yet they are in the outputs.
    stored = [0]

    def write(result: SegResult) -> Iterator[SegResult]:
        start = time.perf_counter()
        if outputs.write(result):
            stored[0] += 1
        result.timings["write"] = (time.perf_counter() - start) * 1000.0
        yield result

    # Live sources keep one frame per stage: results must not lag behind the camera.
    depth = 1 if source.is_live else 4
    # prepare -> infer -> finish, each in its own thread; then write in its own.
    results = segmenter.stream(_warn_large(source.frames(), segmenter, log), batch_size=batch_size, prefetch=depth,
                               on_bad_frame=note_bad if source.skips_bad_frames else None)
    written = threaded_map(results, write, maxsize=depth, name="write", abandon=signals.hurry)
    frames, interrupted, error = 0, False, None
    bar = progress_bar(source.total, unit="frame", enabled=show_progress)
    start = time.perf_counter()
    try:
        for result in written:
            times.add(result.timings)
            frames += 1
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as failure:
        if frames == 0:
            raise  # nothing done: the caller reports the error itself
        error = str(failure) if isinstance(failure, OcrDeployError) else (
            f"{type(failure).__name__}: {failure}")
    finally:
        signals.finalising()
        written.close()
        bar.close()
        seconds = time.perf_counter() - start
        paths = outputs.close()
        source.close()
    # Once the outputs are closed no write lands, so the count is final.
    return RunSummary(source, max(frames, stored[0]), seconds, times, paths, bad_frames,
                      interrupted, error, abandoned=signals.hurry.is_set())


def segment_source(source: SourceSpec | list[str], model: ModelSpec, options: InferOptions, *,
                   log: Callable[[str], None] = lambda _: None) -> RunSummary:
    """Open the source, then the model, write the requested outputs, return the summary.

    `source`: a spec string (image, folder, glob, video, camera index, stream URL), a list of
    them (one run, in order), a Source or an iterable of frames. `model`: a model file, or a
    function returning an opened Backend; either is opened only after the source opened, so an
    unreadable source is the only error, and is closed when the run ends. Files that existed
    before are never replaced unless options.overwrite; an output folder the inputs are read
    from is refused; an output folder this run created and left empty is removed.
    """
    if options.batch < 1:
        raise OcrDeployError(f"--batch must be at least 1 (got {options.batch})")
    opened = open_source(source, recursive=options.recursive, stride=options.stride,
                         max_frames=options.max_frames, max_pixels=options.max_pixels)
    created: list[Path] = []
    try:
        kinds = options.save if options.save is not None else (
            sinks.VIDEO_DEFAULT if opened.is_video else sinks.IMAGE_DEFAULT)
        if kinds:
            _refuse_output_among_inputs(opened, options.out)
        render = sinks.render_needs(sinks.sink_types(kinds, is_video=opened.is_video))
        segmenter = _open_segmenter(model, options, tuple(sorted(render)))
    except BaseException:
        opened.close()
        raise
    for warning in _ignored_options(opened, segmenter, options):
        log(f"warning: {warning}")
    with segmenter:
        try:
            if kinds:
                created = ensure_output_folder(options.out)
            outputs = sinks.make_outputs(options.out, kinds, meta=segmenter.meta,
                                         is_video=opened.is_video, stem=opened.name,
                                         fps=(opened.fps or 30.0) / max(1, options.stride),
                                         overwrite=options.overwrite, legend=options.legend)
        except BaseException:
            opened.close()
            remove_empty_folders(created)
            raise
        # A model opener may say which file it opens (exporters.model_cache.ModelOpener does).
        named = getattr(model, "name", "opened by the caller,") if callable(model) else Path(model).name
        log(f"model: {named} on {segmenter.describe()}")
        note = segmenter.attention_note()
        if note:
            log(f"attention: {note}")
        try:
            summary = run_pipeline(segmenter, opened, outputs, batch_size=options.batch,
                                   show_progress=options.progress, log=log)
        except BaseException:
            remove_empty_folders(created)
            raise
    if not summary.written:
        remove_empty_folders(created)
    return summary


def _ignored_options(source: Source, segmenter: Segmenter, options: InferOptions) -> list[str]:
    """Options given that have no effect on this source and model: said, not silently dropped."""
    warnings = []
    if options.stride > 1 and not source.is_video:
        warnings.append(f"--stride {options.stride} applies to videos and frame sequences; every "
                        "image is segmented")
    if getattr(options.policy, "value", options.policy) == "letterbox" and options.size is None and \
            segmenter.meta.input.fixed_size is None:
        warnings.append("--policy letterbox without --size keeps every frame at its native size "
                        "on this dynamic model; add --size HxW")
    return warnings


def _refuse_output_among_inputs(source: Source, out: Path) -> None:
    """Outputs written where the inputs are read from would be read as inputs by the next run
    (and could meet the user's own files of the same name)."""
    if isinstance(source, ImageFiles | SourceChain) and source.reads_from(out):
        raise OcrDeployError(f"-o {out} is a folder the input images are read from: a rerun "
                             "would take this run's outputs as inputs; choose an output folder "
                             "outside the inputs")


def _open_segmenter(model: ModelSpec, options: InferOptions, render: tuple[str, ...]) -> Segmenter:
    if not callable(model):
        return Segmenter.open(model, device=options.device, backend=options.backend,
                              size=options.size, policy=options.policy, alpha=options.alpha,
                              render=render, tile=options.tile, overlap=options.overlap,
                              max_side=options.max_side)
    backend = model()
    try:
        return Segmenter(backend, size=options.size, policy=options.policy, alpha=options.alpha,
                         render=render, tile=options.tile, overlap=options.overlap,
                         max_side=options.max_side)
    except BaseException:
        backend.close()
        raise
