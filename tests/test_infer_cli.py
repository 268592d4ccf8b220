"""`ocr-deploy infer` on real images, folders and video files written and read back."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from ocr_deploy.pipeline import run_pipeline
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.sinks import MANIFEST_NAME, make_outputs
from ocr_deploy.sources import open_source
from ocr_deploy.testframes import synthetic_frame

RUNNER = CliRunner()
FPS, SIZE, COUNT = 12.0, (96, 160), 24


def _run(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


def _write_video(path: Path, count: int = COUNT, fourcc: str = "mp4v") -> Path:
    height, width = SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (width, height))
    for index in range(count):
        writer.write(synthetic_frame(height, width, seed=index))
    writer.release()
    return path


def _read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_video_round_trip(tiny_onnx, tmp_path):
    video = _write_video(tmp_path / "drive.mp4")
    out = tmp_path / "out"
    result = _run("infer", video, "--model", tiny_onnx, "-o", out, "--save", "video,csv,labels",
                  "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"processed {COUNT} frame(s)" in result.stdout
    for stage in ("decode", "pre", "infer", "post", "write"):
        assert f"  {stage} " in result.stdout
    overlay = cv2.VideoCapture(str(out / "drive_overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == COUNT
    assert overlay.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    assert (int(overlay.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(overlay.get(cv2.CAP_PROP_FRAME_WIDTH))) == SIZE
    assert len(_read_frames(out / "drive_overlay.mp4")) == COUNT
    # The labels of a chosen frame equal segmenting that decoded frame on its own.
    chosen = 7
    decoded = _read_frames(video)[chosen]
    alone = Segmenter.open(tiny_onnx, device="cpu").segment(decoded)
    saved = cv2.imread(str(out / f"drive_{chosen:06d}_labels.png"), cv2.IMREAD_UNCHANGED)
    assert (saved == alone.labels).all()
    with open(out / "drive_classes.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0][:3] == ["frame", "timestamp_ms", "road"] and len(rows) == COUNT + 1
    row = rows[chosen + 1]
    assert int(row[0]) == chosen and float(row[1]) == pytest.approx(chosen * 1000 / FPS, abs=0.1)
    np.testing.assert_allclose([float(v) for v in row[2:]], alone.class_fractions, atol=1e-6)
    assert not list(out.glob(".*partial*"))


def test_stride_and_max_frames(tiny_onnx, tmp_path):
    video = _write_video(tmp_path / "drive.mp4")
    out = tmp_path / "out"
    result = _run("infer", video, "--model", tiny_onnx, "-o", out, "--stride", "3",
                  "--max-frames", "5", "--save", "csv", "--no-progress")
    assert result.exit_code == 0, result.output
    with open(out / "drive_classes.csv", newline="") as stream:
        frames = [int(row[0]) for row in list(csv.reader(stream))[1:]]
    assert frames == [0, 3, 6, 9, 12]


def test_interrupted_run_leaves_playable_video(tiny_onnx, tmp_path):
    """Ctrl-C after some frames: the video holds the frames done, nothing partial remains."""
    video = _write_video(tmp_path / "drive.mp4")
    source = open_source(str(video))
    frames = source.frames

    def interrupted_frames():
        for frame in frames():
            if frame.index == 10:
                raise KeyboardInterrupt
            yield frame

    source.frames = interrupted_frames
    segmenter = Segmenter.open(tiny_onnx, device="cpu")
    out = tmp_path / "out"
    out.mkdir()
    outputs = make_outputs(out, ("video", "csv"), meta=segmenter.meta, is_video=True,
                           stem="drive", fps=FPS)
    summary = run_pipeline(segmenter, source, outputs, show_progress=False)
    assert summary.interrupted and summary.frames == 10
    assert "interrupted after 10 frame(s)" in summary.lines()[0]
    assert len(_read_frames(out / "drive_overlay.mp4")) == 10
    assert sorted(p.name for p in out.iterdir() if p.name != MANIFEST_NAME) == ["drive_classes.csv",
                                                                             "drive_overlay.mp4"]


def test_video_broken_mid_stream_ends_at_last_good_frame(tiny_onnx, tmp_path):
    video = _write_video(tmp_path / "broken.avi", count=30, fourcc="MJPG")
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.6)])
    good = len(_read_frames(video))
    assert 0 < good < 30
    out = tmp_path / "out"
    result = _run("infer", video, "--model", tiny_onnx, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"processed {good} frame(s)" in result.stdout
    assert f"video ended at frame {good} of 30" in result.stdout
    assert len(_read_frames(out / "broken_overlay.mp4")) == good


def test_folder_with_corrupt_image(tiny_onnx, tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), synthetic_frame(64, 80, seed=1))
    cv2.imwrite(str(folder / "sub" / "b.jpg"), synthetic_frame(72, 96, seed=2))
    grey16 = (synthetic_frame(64, 64, seed=3)[..., 0].astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "c.png"), grey16)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    result = _run("infer", folder, "--model", tiny_onnx, "-o", out, "--recursive",
                  "--save", "labels,color,overlay", "--batch", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "processed 3 frame(s)" in result.stdout
    assert "skipped 1" in result.stdout and "broken.png" in result.stdout
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    assert names == ["a_color.png", "a_labels.png", "a_overlay.jpg", "c_color.png",
                     "c_labels.png", "c_overlay.jpg", "sub/b_color.png", "sub/b_labels.png",
                     "sub/b_overlay.jpg"]
    labels = cv2.imread(str(out / "a_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (64, 80) and labels.dtype == np.uint8


def test_checkpoint_as_model_is_exported_once(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_DEPLOY_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), synthetic_frame(64, 96))
    first = _run("infer", image, "--model", tiny_checkpoint, "-o", tmp_path / "out",
                 "--no-progress")
    assert first.exit_code == 0, first.output
    assert "exporting tiny_release.pth once into the cache" in first.stderr
    second = _run("infer", image, "--model", tiny_checkpoint, "-o", tmp_path / "out",
                  "--no-progress")
    assert "using the cached export" in second.stderr
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1


@pytest.mark.parametrize("source,fragment", [
    ("missing.mp4", "source not found"),
    ("7", "camera 7 is not available"),
    ("rtsp://127.0.0.1:9/live", "cannot open stream rtsp://127.0.0.1:9/live"),
])
def test_unavailable_sources(tiny_onnx, tmp_path, source, fragment):
    _one_line_error(_run("infer", source, "--model", tiny_onnx, "-o", tmp_path / "out"), fragment)


def test_bad_inputs(tiny_onnx, tmp_path):
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), synthetic_frame(24, 200))
    _one_line_error(_run("infer", small, "--model", tiny_onnx, "-o", tmp_path / "o"),
                    "needs at least 32 px")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"garbage")
    _one_line_error(_run("infer", corrupt, "--model", tiny_onnx, "-o", tmp_path / "o"),
                    "not a readable image")
    _one_line_error(_run("infer", small, "--model", tmp_path / "nope.onnx"), "model not found")
    _one_line_error(_run("infer", small, "--model", tiny_onnx, "--save", "video"),
                    "need a video, camera or stream source")
    truncated = tmp_path / "cut.mp4"
    data = _write_video(tmp_path / "whole.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    _one_line_error(_run("infer", truncated, "--model", tiny_onnx), "not a readable video")


def test_nothing_processed_exits_non_zero(tiny_onnx, tmp_path):
    folder = tmp_path / "all_bad"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"nope")
    result = _run("infer", folder, "--model", tiny_onnx, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    assert "processed 0 frame(s)" in result.stdout and "skipped 1" in result.stdout


def test_pytorch_backend_runs_a_checkpoint_without_exporting_it(tiny_checkpoint, tiny_onnx,
                                                                 tmp_path, monkeypatch):
    """`--backend pytorch` is a real choice of infer: the checkpoint runs eagerly (nothing is
    exported into the cache) and segments like its exported ONNX; on an ONNX file it is refused
    in one line."""
    monkeypatch.setenv("OCR_DEPLOY_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "street.png"
    cv2.imwrite(str(image), synthetic_frame(*SIZE, seed=5))
    labels = {}
    for backend, model in (("pytorch", tiny_checkpoint), ("onnxruntime", tiny_onnx)):
        out = tmp_path / backend
        result = _run("infer", image, "--model", model, "--backend", backend, "-o", out,
                      "--save", "labels", "--no-progress")
        assert result.exit_code == 0, result.output
        assert f"on {backend} " in result.stderr
        labels[backend] = cv2.imread(str(out / "street_labels.png"), cv2.IMREAD_UNCHANGED)
    assert not (tmp_path / "cache").exists()
    assert (labels["pytorch"] == labels["onnxruntime"]).mean() >= 0.999
    _one_line_error(_run("infer", image, "--model", tiny_onnx, "--backend", "pytorch"),
                    "is not a PyTorch checkpoint")
