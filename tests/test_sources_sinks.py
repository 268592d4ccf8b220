"""The seams for sources and sinks: the source table, user sources, custom sinks, render needs
derived from the sinks, the four pipeline stages, and no import cycle in the runtime."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

import ocr_deploy
from ocr_deploy.backends import open_backend
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.pipeline import InferOptions, run_pipeline, segment_source
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.sinks import (
    IMAGE_DEFAULT,
    MANIFEST_NAME,
    SINKS,
    VIDEO_DEFAULT,
    make_outputs,
    render_needs,
    sink_types,
)
from ocr_deploy.sources import (
    SOURCE_KINDS,
    Frame,
    FrameIterable,
    ImageFiles,
    Source,
    SourceError,
    open_source,
    read_frames,
)
from ocr_deploy.testframes import synthetic_frame

FPS, HEIGHT, WIDTH = 10.0, 64, 96


def _recognised_by(spec: str) -> str:
    return next(kind.name for kind in SOURCE_KINDS if kind.recognises(spec))


def _frames_of(source: Source) -> list[Frame]:
    try:
        return list(source.frames())
    finally:
        source.close()


# --- sources ---------------------------------------------------------------------------------

def test_image_folder_and_glob_rows(tmp_path):
    folder = tmp_path / "shots"
    (folder / "sub").mkdir(parents=True)
    images = {"a": synthetic_frame(HEIGHT, WIDTH, seed=1), "sub/b": synthetic_frame(48, 64, seed=2)}
    for name, image in images.items():
        cv2.imwrite(str(folder / f"{name}.png"), image)
    (folder / "notes.txt").write_text("not an image")

    single = open_source(str(folder / "a.png"))
    assert _recognised_by(str(folder / "a.png")) == "image file"
    assert isinstance(single, ImageFiles) and single.kind == "image" and single.total == 1
    assert not single.is_video and not single.skips_bad_frames
    (frame,) = _frames_of(single)
    assert frame.name == "a" and np.array_equal(frame.image, images["a"])

    assert _recognised_by(str(folder)) == "folder"
    flat = _frames_of(open_source(str(folder)))
    assert [f.name for f in flat] == ["a"]
    deep = open_source(folder, recursive=True)  # a Path works as well as a string
    assert deep.kind == "images" and deep.skips_bad_frames and deep.total == 2
    decoded = {f.name: f.image for f in _frames_of(deep)}
    assert set(decoded) == {"a", "sub/b"}
    assert all(np.array_equal(decoded[name], images[name]) for name in images)

    pattern = str(folder / "**" / "*.png")
    assert _recognised_by(pattern) == "glob"
    globbed = _frames_of(open_source(pattern, max_frames=1))
    assert [f.name for f in globbed] == ["a"]

    with pytest.raises(SourceError, match=r"source not found: .*nowhere\.png \(give an image"):
        open_source(str(tmp_path / "nowhere.png"))
    with pytest.raises(SourceError, match="--stride must be at least 1"):
        open_source(str(folder), stride=0)


def _write_video(path: Path, count: int) -> list[np.ndarray]:
    """Write a real video, return the frames OpenCV decodes from it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for index in range(count):
        writer.write(synthetic_frame(HEIGHT, WIDTH, seed=index))
    writer.release()
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, image = capture.read()
        if not ok:
            capture.release()
            return decoded
        decoded.append(image)


def test_video_file_row_reads_back_what_opencv_decodes(tmp_path):
    video = tmp_path / "drive.mp4"
    decoded = _write_video(video, 9)
    assert len(decoded) == 9
    assert _recognised_by(str(video)) == "video file"
    source = open_source(str(video), stride=2, max_frames=4)
    assert source.kind == "video" and source.is_video and not source.is_live
    assert source.name == "drive" and source.fps == pytest.approx(FPS) and source.total == 4
    frames = _frames_of(source)
    assert [f.index for f in frames] == [0, 2, 4, 6]
    for frame in frames:
        assert np.array_equal(frame.image, decoded[frame.index])
        assert frame.timestamp_ms == pytest.approx(frame.index * 1000.0 / FPS)
    named = read_frames([str(video)], max_frames=2)
    assert [name for name, _ in named] == ["drive_0", "drive_1"]
    assert np.array_equal(named[1][1], decoded[1])


def test_live_specs_are_recognised_before_paths():
    assert _recognised_by("0") == "camera or stream"
    assert _recognised_by("rtsp://127.0.0.1:9/live") == "camera or stream"
    assert _recognised_by("HTTP://example.org/cam.mjpg") == "camera or stream"


def test_user_iterables_become_a_frames_source():
    images = [synthetic_frame(HEIGHT, WIDTH, seed=i) for i in range(5)]
    source = open_source(images, stride=2)
    assert isinstance(source, FrameIterable) and source.kind == "frames" and source.total == 3
    assert source.is_video and source.skips_bad_frames
    frames = _frames_of(source)
    assert [(f.index, f.name) for f in frames] == [(0, "frames"), (2, "frames"), (4, "frames")]
    assert all(f.image is images[f.index] for f in frames)

    tagged = (Frame(image, 10 + i, f"cam{i}") for i, image in enumerate(images))
    from_generator = open_source(tagged, max_frames=2)
    assert from_generator.total is None  # a generator has no length
    assert [(f.index, f.name) for f in _frames_of(from_generator)] == [(10, "cam0"), (11, "cam1")]

    stacked = open_source(np.stack(images[:2]))  # (frames, height, width, channels)
    assert [f.image.shape for f in _frames_of(stacked)] == [(HEIGHT, WIDTH, 3)] * 2
    with pytest.raises(SourceError, match=r"shape \(64, 96, 3\) is not a sequence of frames"):
        open_source(images[0])
    with pytest.raises(SourceError, match="item 1 of the frames is a str"):
        _frames_of(open_source([images[0], "not a frame"]))
    with pytest.raises(SourceError, match="cannot read frames from a int"):
        open_source(3)


@dataclass
class CountdownSource(Source):
    """A user-made source: frames from a pattern, as a camera driver of one's own would."""

    count: int = 3
    closed: int = 0
    is_video: ClassVar[bool] = True

    def frames(self):
        for index in range(self.count):
            yield Frame(synthetic_frame(HEIGHT, WIDTH, seed=20 + index), index, self.name)

    def close(self) -> None:
        self.closed += 1


def test_user_source_passes_straight_through():
    mine = CountdownSource(kind="countdown", name="mine", total=3)
    assert open_source(mine) is mine


# --- sinks -----------------------------------------------------------------------------------

@dataclass
class Recorder:
    """A custom sink: keeps what it was given, and from which thread."""

    context: object
    seen: list = field(default_factory=list)
    threads: set = field(default_factory=set)
    closed: int = 0

    needs: ClassVar[frozenset[str]] = frozenset({"color"})
    video_only: ClassVar[bool] = False

    def write(self, result) -> None:
        # What the sink needs was rendered before it arrived (by the finish stage).
        self.seen.append((result, "color" in vars(result), "overlay" in vars(result)))
        self.threads.add(threading.current_thread().name)

    def close(self) -> list[Path]:
        self.closed += 1
        return []


def test_render_needs_follow_the_sinks():
    def needs(save, is_video=True):
        return render_needs(sink_types(save, is_video=is_video))

    assert needs(("labels",), False) == frozenset()
    assert needs(("labels", "color"), False) == {"color"}
    assert needs(IMAGE_DEFAULT, False) == {"overlay"}
    assert needs(VIDEO_DEFAULT) == {"overlay"}
    assert needs(("csv",)) == frozenset()
    assert needs(("color", "video", "csv")) == {"color", "overlay"}
    assert [sink.__name__ for sink in sink_types(("csv", "labels", "csv"), is_video=True)] == [
        "LabelImages", "ClassTable"]
    table = {**SINKS, "record": Recorder}
    assert render_needs(sink_types(("labels", "record"), is_video=False, table=table)) == {"color"}
    expected = ("--save video/csv need a video, camera or stream source; for images use labels, "
                "color or overlay")
    with pytest.raises(OcrDeployError, match=expected):
        sink_types(("csv",), is_video=False)
    with pytest.raises(OcrDeployError, match="--save takes labels, color, overlay, video, csv"):
        sink_types(("labels", "gif"), is_video=False)


def test_custom_sink_gets_every_result_from_the_four_stages(tiny_onnx, tmp_path):
    """A sink added through a table row receives every result, in order, from the write
    thread; the labels equal Segmenter.segment on the same frames, frame by frame."""
    sizes = [(96, 160), (77, 131), (64, 64), (96, 160), (72, 96)]
    images = [synthetic_frame(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    images.insert(2, np.zeros((10, 10, 3), np.uint8))  # too small: skipped and reported
    table = {**SINKS, "record": Recorder}
    save = ("labels", "record")
    render = render_needs(sink_types(save, is_video=True, table=table))
    segmenter = Segmenter.open(tiny_onnx, device="cpu", render=render)
    assert segmenter.render == ("color",)
    outputs = make_outputs(tmp_path, save, meta=segmenter.meta, is_video=True, stem="frames",
                           fps=None, table=table)
    assert outputs.needs == render
    summary = run_pipeline(segmenter, open_source(images), outputs, batch_size=2,
                           show_progress=False)

    (recorder,) = [sink for sink in outputs.sinks if isinstance(sink, Recorder)]
    assert recorder.closed == 1 and recorder.threads == {"write"}
    assert summary.frames == 5 and not summary.error and not summary.interrupted
    assert [name for name, _ in summary.bad_frames] == ["frames"]
    assert "at least 32 px" in summary.bad_frames[0][1]
    assert [result.source.index for result, _, _ in recorder.seen] == [0, 1, 3, 4, 5]
    assert all(color and not overlay for _, color, overlay in recorder.seen)
    for result, _, _ in recorder.seen:
        alone = segmenter.segment(images[result.source.index])
        assert np.array_equal(result.labels, alone.labels)
        assert np.array_equal(result.class_fractions, alone.class_fractions)
        assert set(result.timings) == {"decode", "pre", "infer", "post", "write"}
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != MANIFEST_NAME)
    assert written == [f"frames_{i:06d}_labels.png" for i in (0, 1, 3, 4, 5)]
    saved = cv2.imread(str(tmp_path / "frames_000003_labels.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(saved, segmenter.segment(images[3]).labels)
    segmenter.close()


def test_stream_equals_segment(tiny_onnx):
    segmenter = Segmenter.open(tiny_onnx, device="cpu", render=("overlay",))
    images = [synthetic_frame(72, 96 + 8 * i, seed=i) for i in range(4)]
    streamed = list(segmenter.stream(images, batch_size=3, prefetch=1))
    assert len(streamed) == 4
    for image, result in zip(images, streamed, strict=True):
        alone = segmenter.segment(image)
        assert np.array_equal(result.labels, alone.labels)
        assert np.array_equal(result.overlay, alone.overlay)


# --- segment_source ----------------------------------------------------------------------------

def test_segment_source_with_user_frames_and_a_backend_factory(tiny_onnx, tmp_path):
    opened = []

    def open_model():
        backend = open_backend(tiny_onnx, device="cpu")
        opened.append(backend)
        return backend

    with pytest.raises(SourceError, match="not a readable image"):
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"garbage")
        segment_source(str(broken), open_model, InferOptions(out=tmp_path / "no"))
    assert opened == [] and not (tmp_path / "no").exists()  # the model was never opened

    mine = CountdownSource(kind="countdown", name="mine", total=3, fps=FPS)
    lines = []
    summary = segment_source(mine, open_model, InferOptions(out=tmp_path / "out", progress=False),
                             log=lines.append)
    assert len(opened) == 1 and summary.frames == 3 and mine.closed == 1
    assert lines and lines[0].startswith("model: opened by the caller, on ")
    assert "from countdown 'mine'" in summary.lines()[0]
    assert sorted(p.name for p in summary.written) == ["mine_classes.csv", "mine_overlay.mp4"]
    video = cv2.VideoCapture(str(tmp_path / "out" / "mine_overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    video.release()

    images = [synthetic_frame(HEIGHT, WIDTH, seed=i) for i in range(2)]
    options = InferOptions(out=tmp_path / "list", save=("labels",), device="cpu", progress=False)
    summary = segment_source(images, tiny_onnx, options)
    assert [p.name for p in summary.written] == ["frames_000000_labels.png",
                                                 "frames_000001_labels.png"]
    saved = cv2.imread(str(summary.written[1]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(saved, Segmenter.open(tiny_onnx, device="cpu").segment(images[1]).labels)


# --- import structure --------------------------------------------------------------------------

MODULES = sorted(m.name for m in pkgutil.walk_packages(ocr_deploy.__path__, "ocr_deploy."))
MINE = ("ocr_deploy.sources", "ocr_deploy.sinks", "ocr_deploy.pipeline", "ocr_deploy.segmenter",
        "ocr_deploy.staging")


def test_every_module_imports_first_in_a_clean_interpreter():
    """Each runtime module imported first, with no other ocr_deploy module loaded: a cycle
    would fail here with a partially initialised module. The sources' leaf module goes first."""
    leaf = "ocr_deploy.sources.captures"
    order = [leaf] + [name for name in MODULES if name != leaf]
    script = textwrap.dedent(f"""
        import importlib, sys
        for name in {order!r}:
            for loaded in [m for m in sys.modules if m.split(".")[0] == "ocr_deploy"]:
                del sys.modules[loaded]
            importlib.import_module(name)
        for name in {order!r}:  # and all together, leaf first
            importlib.import_module(name)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=Path(ocr_deploy.__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _imports(name: str) -> set[str]:
    """ocr_deploy modules that `name` imports anywhere (functions included: a lazy import is a
    cycle worked around, not removed), except under `if TYPE_CHECKING`."""
    spec = importlib.util.find_spec(name)
    tree = ast.parse(Path(spec.origin).read_text())
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for statement in child.orelse:
                    visit(statement)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([child.module] if child.module else []))
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                             for a in child.names)
            else:
                visit(child)

    visit(tree)
    return {module for module in found if module in MODULES and module != name}


def test_no_import_cycle_through_sources_sinks_or_pipeline():
    graph = {name: _imports(name) for name in MODULES}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += graph[module]
        return seen

    assert graph["ocr_deploy.sources.base"] <= {"ocr_deploy.errors"}  # no I/O, no siblings
    for name in MODULES:
        if name.startswith(MINE):
            assert name not in reachable(name), f"{name} imports itself through a cycle"
    for leaf in ("captures", "images", "frames"):  # a source module never needs the dispatcher
        assert "ocr_deploy.sources" not in reachable(f"ocr_deploy.sources.{leaf}")
