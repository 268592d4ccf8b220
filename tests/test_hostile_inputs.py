"""Hostile and careless inputs (issue 16): nothing of the user's lost, nothing broken passed.

Every case is generated here, small: tiny frames, the tiny exported network, hand-made graphs.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app, one_line_errors
from ocr_deploy.errors import ModelFileError, OcrDeployError
from ocr_deploy.sinks import MANIFEST_NAME
from ocr_deploy.testframes import synthetic_frame

REPO = Path(__file__).resolve().parents[1]
RUNNER = CliRunner()


def _run(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


def _one_line_error(result, fragment: str) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output and "unexpected" not in result.output
    return lines[0]


def _image(path: Path, height: int = 64, width: int = 96, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), synthetic_frame(height, width, seed=seed))
    return path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST_NAME)


# ---- where outputs go -------------------------------------------------------------------------

def test_user_files_are_never_overwritten_and_outputs_never_ingested(tiny_onnx, tmp_path):
    photos = tmp_path / "photos"
    _image(photos / "street.png")
    user_labels = _image(photos / "street_labels.png", seed=9)  # the user's own file
    before = user_labels.read_bytes()
    _one_line_error(_run("infer", photos, "--model", tiny_onnx, "-o", photos, "--no-progress"),
                    "is a folder the input images are read from")
    _one_line_error(_run("infer", photos / "street.png", "--model", tiny_onnx, "-o", photos,
                         "--no-progress"), "street_labels.png already exists and was not written")
    assert user_labels.read_bytes() == before
    assert _files(photos) == ["street.png", "street_labels.png"]  # nothing half-written either

    # A rerun into an earlier run's folder replaces that run's own outputs (tests/test_rerun_outputs.py
    # covers what it refuses); --overwrite still works.
    out = tmp_path / "out"
    assert _run("infer", photos, "--model", tiny_onnx, "-o", out, "--no-progress").exit_code == 0
    first = (out / "street_labels.png").read_bytes()
    rerun = _run("infer", photos, "--model", tiny_onnx, "-o", out, "--no-progress")
    assert rerun.exit_code == 0, rerun.output
    again = _run("infer", photos, "--model", tiny_onnx, "-o", out, "--overwrite", "--no-progress")
    assert again.exit_code == 0, again.output
    assert (out / "street_labels.png").read_bytes() == first
    # Recursive folder with -o inside it: a rerun would read the outputs.
    _one_line_error(_run("infer", photos, "--model", tiny_onnx, "-o", photos / "seg",
                         "--recursive", "--no-progress"), "read from")


def test_same_stem_keeps_the_extension_and_the_summary_counts_files(tiny_onnx, tmp_path):
    folder = tmp_path / "in"
    _image(folder / "img.png", seed=1)
    _image(folder / "img.jpg", seed=2)
    _image(folder / "other.png", seed=3)
    out = tmp_path / "out"
    result = _run("infer", folder, "--model", tiny_onnx, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert _files(out) == ["img.jpg_labels.png", "img.jpg_overlay.jpg", "img.png_labels.png",
                           "img.png_overlay.jpg", "other_labels.png", "other_overlay.jpg"]
    assert "wrote 6 file(s)" in result.stdout
    png = cv2.imread(str(out / "img.png_labels.png"), cv2.IMREAD_UNCHANGED)
    jpg = cv2.imread(str(out / "img.jpg_labels.png"), cv2.IMREAD_UNCHANGED)
    assert png.shape == jpg.shape == (64, 96) and (png != jpg).any()  # two frames, two results


def test_glob_with_dotdot_stays_under_out_and_reads_each_file_once(tiny_onnx, tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "b").mkdir(parents=True)
    _image(tmp_path / "top1.png")
    work = tmp_path / "work"
    work.mkdir()
    before = _files(tmp_path)
    result = RUNNER.invoke(app, ["infer", str(tmp_path / "src/*/../../top*.png"), "--model",
                                 str(tiny_onnx), "-o", str(work / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "processed 1 frame(s)" in result.stdout
    assert _files(tmp_path) == sorted(before + ["work/out/top1_labels.png",
                                                "work/out/top1_overlay.jpg"])


def test_output_claims_refuse_names_that_leave_the_folder(tmp_path):
    from ocr_deploy.sinks import OutputClaims, OutputExists

    claims = OutputClaims(tmp_path / "out")
    assert claims.claim("a/b_labels.png") == tmp_path / "out" / "a/b_labels.png"
    with pytest.raises(OutputExists, match="both write"):
        claims.claim("a/b_labels.png")
    with pytest.raises(OutputExists, match="outside the output folder"):
        claims.claim("../../escape_labels.png")


# ---- pixel bombs and memory -------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _claimed_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says width x height (grey), with a few rows of data: enough to be
    refused from the header; decoding it would take gigabytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress((b"\x00" + bytes(width)) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows)
                     + _png_chunk(b"IEND", b""))
    return path


def test_pixel_limit_is_checked_from_the_header_before_decoding(tiny_onnx, tmp_path):
    bomb = _claimed_png(tmp_path / "bomb.png", 30000, 30000)
    start = time.perf_counter()
    line = _one_line_error(_run("infer", bomb, "--model", tiny_onnx, "-o", tmp_path / "out"),
                           "30000x30000 is 900 MP, over the limit of 100 MP (--max-pixels")
    assert time.perf_counter() - start < 20 and "GiB" in line
    assert not (tmp_path / "out").exists()
    # In a folder it is skipped with the reason; the others run.
    folder = tmp_path / "mixed"
    folder.mkdir()
    _claimed_png(folder / "bomb.png", 30000, 30000)
    _image(folder / "fine.png")
    result = _run("infer", folder, "--model", tiny_onnx, "-o", tmp_path / "o2", "--no-progress")
    assert result.exit_code == 0 and "processed 1 frame(s)" in result.stdout
    assert "skipped 1" in result.stdout and "over the limit" in result.stdout
    # The limit is the user's: lower refuses a real image, 0 lifts it.
    small = _image(tmp_path / "small.png", 64, 96)
    _one_line_error(_run("infer", small, "--model", tiny_onnx, "-o", tmp_path / "o3",
                         "--max-pixels", "5000"), "96x64 is 0.00614 MP, over the limit of 0.005 MP")
    lifted = _run("infer", small, "--model", tiny_onnx, "-o", tmp_path / "o4", "--max-pixels", "0",
                  "--no-progress")
    assert lifted.exit_code == 0, lifted.output


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm"])
def test_header_sizes_match_what_opencv_decodes(suffix, tmp_path):
    from ocr_deploy.sources.headers import read_header_size

    image = synthetic_frame(37, 53, seed=4)
    if suffix == ".pgm":
        image = image[..., 0]
    path = tmp_path / f"x{suffix}"
    assert cv2.imwrite(str(path), image)
    assert read_header_size(path) == cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2] == (37, 53)


def test_single_image_is_decoded_once(tmp_path, monkeypatch):
    from ocr_deploy.sources import images, open_source

    calls = []
    real = images.read_image
    monkeypatch.setattr(images, "read_image", lambda path: calls.append(path) or real(path))
    source = open_source(str(_image(tmp_path / "one.png")))
    frames = list(source.frames())
    assert len(frames) == 1 and frames[0].image.shape == (64, 96, 3) and len(calls) == 1


def test_class_fractions_count_in_chunks_exactly(monkeypatch):
    from ocr_deploy import postprocess

    rng = np.random.default_rng(0)
    labels = rng.integers(-3, 25, size=(301, 257), dtype=np.int32)
    expected = np.array([(labels == k).sum() for k in range(19)]) / labels.size
    monkeypatch.setattr(postprocess, "_COUNT_CHUNK", 1000)  # many chunks, a ragged last one
    assert np.array_equal(postprocess.class_fractions(labels, 19), expected)
    as_bytes = np.clip(labels, 0, 255).astype(np.uint8)
    expected = np.bincount(as_bytes.ravel(), minlength=19)[:19] / labels.size
    assert np.array_equal(postprocess.class_fractions(as_bytes, 19), expected)


# ---- metadata against the graph ---------------------------------------------------------------

def _meta_text(onnx_path: Path) -> str:
    import onnx

    model = onnx.load(str(onnx_path))
    return next(p.value for p in model.metadata_props if p.key == "ocr_deploy")


def _with_meta(model, text: str, path: Path) -> Path:
    import onnx

    del model.metadata_props[:]
    model.metadata_props.add(key="ocr_deploy", value=text)
    onnx.save(model, str(path))
    return path


def _mutated(tiny_onnx: Path, path: Path, change) -> Path:
    import onnx

    data = json.loads(_meta_text(tiny_onnx))
    change(data)
    return _with_meta(onnx.load(str(tiny_onnx)), json.dumps(data), path)


def _conv_logits_graph(channels: int):
    """uint8 NHWC in -> float32 [N, channels, H, W] 'logits' (a 1x1 convolution)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((channels, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        initializer=[weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


MUTATIONS = {
    "k": (lambda d: d["network"].update(num_classes=20), "19 class names for K=20"),
    "classes": (lambda d: d["dataset"].update(classes=d["dataset"]["classes"][:7]),
                "7 class names for K=19"),
    "output name": (lambda d: d["output"].update(name="scores"),
                    "its metadata names output 'scores', the graph has 'labels'"),
    "kind": (lambda d: d["output"].update(kind="logits", dtype="float32"),
             "metadata output dtype float32, the graph's uint8"),
    "input format": (lambda d: d["input"].update(format="normalized"),
                     "input format normalized means float32 input, the graph takes uint8"),
    "input size": (lambda d: d["input"].update(height=48, width=64, batch=1), None),
    "palette shape": (lambda d: d["dataset"].update(palette=[[1, 2]] * 19),
                      "palette entry (1, 2) is not an RGB triple"),
    "palette count": (lambda d: d["dataset"].update(palette=[[1, 2, 3]] * 3),
                      "a palette of 3 colours for K=19"),
    "k type": (lambda d: d["network"].update(num_classes="19"), "K='19' is not a class count"),
    "nested": (None, "nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_metadata_that_disagrees_is_refused_by_info_infer_and_loaders(case, tiny_onnx, tmp_path):
    import onnx

    from ocr_deploy.backends import open_backend, read_meta

    change, fragment = MUTATIONS[case]
    path = tmp_path / "bad.onnx"
    if change is None:
        _with_meta(onnx.load(str(tiny_onnx)), "[" * 100_000 + "]" * 100_000, path)
    else:
        _mutated(tiny_onnx, path, change)
    if fragment is None:  # a fixed size the dynamic graph accepts is no disagreement
        assert read_meta(path).input.fixed_size == (48, 64)
        return
    _one_line_error(_run("info", path), fragment)
    _one_line_error(_run("infer", _image(tmp_path / "f.png"), "--model", path, "-o",
                         tmp_path / "out"), fragment)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelFileError, match="damaged|disagree"):
        read_meta(path)
    with pytest.raises(ModelFileError, match="damaged|disagree"):
        open_backend(path, device="cpu")


def test_logits_channels_must_equal_k(tiny_onnx, tmp_path):
    from ocr_deploy.backends import read_meta

    def as_logits(data):
        data["output"].update(kind="logits", name="logits", dtype="float32")

    meta = json.loads(_meta_text(tiny_onnx))
    as_logits(meta)
    good = _with_meta(_conv_logits_graph(19), json.dumps(meta), tmp_path / "good.onnx")
    assert read_meta(good).num_classes == 19
    bad = _with_meta(_conv_logits_graph(5), json.dumps(meta), tmp_path / "bad.onnx")
    _one_line_error(_run("info", bad), "metadata K=19, the graph's 'logits' has 5 channels")


def test_unrelated_graph_with_copied_metadata_is_caught_by_its_labels(tiny_onnx, tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["image"], ["labels"], axes=[3], keepdims=0)], "foreign",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    foreign = _with_meta(model, _meta_text(tiny_onnx), tmp_path / "foreign.onnx")
    frame = np.full((64, 96, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "f.png"), frame)
    _one_line_error(_run("infer", tmp_path / "f.png", "--model", foreign, "-o", tmp_path / "out"),
                    "produced class id 200, outside 0..18")
    assert not (tmp_path / "out").exists()


# ---- signals ----------------------------------------------------------------------------------

def _video(path: Path, count: int, size: tuple[int, int] = (48, 64)) -> Path:
    height, width = size
    frames = [synthetic_frame(height, width, seed=seed) for seed in range(min(count, 7))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for index in range(count):
        writer.write(frames[index % 7])
    writer.release()
    return path


def _frames_in(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _start_infer(video: Path, model: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "import cli; cli.main()", "infer", str(video), "--model",
               str(model), "-o", str(out), "--no-progress"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_for_frames(process: subprocess.Popen, out: Path) -> None:
    """Until the run has written a frame (its temporary video exists)."""
    deadline = time.monotonic() + 120
    while not list(out.glob(".*partial*")) and process.poll() is None:
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()


@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)],
                         ids=["sigterm", "double-ctrl-c"])
def test_signals_finalise_the_outputs(signals, tiny_onnx, tmp_path):
    video = _video(tmp_path / "drive.avi", 3000)
    out = tmp_path / "out"
    process = _start_infer(video, tiny_onnx, out)
    _wait_for_frames(process, out)
    for number in signals:
        process.send_signal(number)
    sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 30
    assert process.returncode == 130, stdout + stderr
    assert "Fatal Python error" not in stderr and "Traceback" not in stderr
    assert "damaged or truncated" not in stdout
    done = int(stdout.split("interrupted after ")[1].split(" ")[0])
    assert 0 < done < 3000
    assert _files(out) == ["drive_classes.csv", "drive_overlay.mp4"]  # no temporaries
    rows = (out / "drive_classes.csv").read_text().splitlines()
    assert len(rows) == done + 1 and _frames_in(out / "drive_overlay.mp4") == done


# ---- the export cache -------------------------------------------------------------------------

def test_export_cache_verifies_rebuilds_and_locks(tiny_checkpoint, tiny_onnx, tmp_path,
                                                 monkeypatch):
    """The cache's own logic, with the export itself (tested in test_infer_cli) replaced by a
    copy of the tiny export that takes long enough for two callers to meet at the lock."""
    from exporters import export_job, model_cache

    def export(request, log):
        time.sleep(0.5)
        request.output.write_bytes(tiny_onnx.read_bytes())

    monkeypatch.setattr(export_job, "run_export", export)
    monkeypatch.setenv("OCR_DEPLOY_CACHE", str(tmp_path / "cache"))
    logs: list[str] = []
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        model_cache.resolve_model(tiny_checkpoint, log=logs.append))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1]
    assert sum("exporting tiny_release.pth once" in line for line in logs) == 1
    assert sum("using the cached export" in line for line in logs) == 1
    entry = results[0]
    record = entry.with_suffix(".json")
    good = entry.read_bytes()
    digest, size = entry.stem, tiny_checkpoint.stat().st_size

    # Another file in its place, a truncated one, a missing record: each refused.
    entry.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    assert "sha256 differs" in model_cache.entry_problem(entry, record, sha256=digest, size=size)
    entry.write_bytes(good[: len(good) // 2])
    assert "truncated" in model_cache.entry_problem(entry, record, sha256=digest, size=size)
    assert "another checkpoint" in model_cache.entry_problem(entry, record, sha256="0" * 64,
                                                             size=size)
    logs.clear()
    assert model_cache.resolve_model(tiny_checkpoint, log=logs.append) == entry
    assert any("truncated" in line and "exporting tiny_release.pth again" in line for line in logs)
    assert model_cache.entry_problem(entry, record, sha256=digest, size=size) is None
    record.unlink()
    assert "no readable record" in model_cache.entry_problem(entry, record, sha256=digest, size=size)


# ---- odd files and messages -------------------------------------------------------------------

def test_zero_frame_video_is_one_error_and_leaves_nothing(tiny_onnx, tmp_path):
    empty = _video(tmp_path / "empty.avi", 0)
    _one_line_error(_run("infer", empty, "--model", tiny_onnx, "-o", tmp_path / "out"),
                    "empty.avi has no frames")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("name", ["f.png", "f.mp4", "f.pth"])
def test_fifo_is_refused_without_being_opened(name, tiny_onnx, tmp_path):
    from exporters.model_cache import resolve_model
    from ocr_deploy.sources import open_source

    fifo = tmp_path / name
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:  # in a thread: a regression would block forever on the FIFO
        try:
            resolve_model(fifo) if name.endswith(".pth") else open_source(str(fifo))
        except OcrDeployError as error:
            outcome.append(error)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "opened the FIFO and blocked"
    assert outcome and "not a regular file" in str(outcome[0])
    if not name.endswith(".pth"):
        _one_line_error(_run("infer", fifo, "--model", tiny_onnx, "-o", tmp_path / "out"),
                        "is not a regular file")


def test_messages_with_newlines_stay_one_line(capsys):
    import typer

    from ocr_deploy.pipeline import one_line

    for error in (OcrDeployError("OpenCV says:\nbad frame\r\n  at line 3"),
                  RuntimeError("[ONNXRuntimeError]\nsomething\nbroke")):
        @one_line_errors
        def command(error=error):
            raise error

        with pytest.raises(typer.Exit):
            command()
        printed = capsys.readouterr().err
        assert printed.count("\n") == 1 and printed.startswith("error: "), printed
    assert one_line("a\n b\r\nc") == "a b c"


def test_openvino_ir_metadata_is_checked_against_its_xml(tiny_onnx, tmp_path):
    """An IR is read from its .xml alone (info): its Parameter and Result layers are the graph."""
    ov = pytest.importorskip("openvino")
    from ocr_deploy.backends.openvino import read_meta

    model = ov.Core().read_model(str(tiny_onnx))
    model.set_rt_info(_meta_text(tiny_onnx), "ocr_deploy")
    xml = tmp_path / "tiny.xml"
    ov.save_model(model, str(xml))
    assert read_meta(xml).num_classes == 19
    text = xml.read_text()
    assert 'output_names="labels"' in text or 'names="labels"' in text
    xml.write_text(text.replace('output_names="labels"', 'output_names="scores"')
                   .replace('names="labels"', 'names="scores"'))
    _one_line_error(_run("info", xml), "its metadata names output 'labels', the graph has 'scores'")


def test_run_handles_sigterm_but_keeps_an_ignored_sigint_ignored(tiny_onnx, tmp_path):
    """During a run SIGTERM is the pipeline's (like Ctrl-C); a SIGINT the parent ignored (a
    background job, nohup) stays ignored; both are restored afterwards."""
    from ocr_deploy.pipeline import InferOptions, segment_source

    seen = []

    def frames():
        for seed in range(2):
            seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))
            yield synthetic_frame(64, 96, seed=seed)

    before_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    before_term = signal.getsignal(signal.SIGTERM)
    try:
        summary = segment_source(frames(), tiny_onnx, InferOptions(
            out=tmp_path / "out", save=("labels",), device="cpu", progress=False))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is before_term
    finally:
        signal.signal(signal.SIGINT, before_int)
    assert summary.frames == 2 and not summary.interrupted
    assert all(sigint is signal.SIG_IGN and callable(sigterm) and sigterm is not before_term
               for sigint, sigterm in seen)
