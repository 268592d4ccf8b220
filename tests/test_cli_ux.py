"""The command line as a newcomer meets it (issue 17): every item through `ocr-deploy` itself, on
the shipped demo ONNX and frames of 64x128 px."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cli import app
from cli.app import COMMANDS
from ocr_deploy.assets import demo_model
from ocr_deploy.segmenter import Segmenter

RUNNER = CliRunner()
WIDE = {"COLUMNS": "220", "TERMINAL_WIDTH": "220"}


def _frame(seed: int = 0) -> np.ndarray:
    """A 64x128 street-like frame: sky above, road below, a dark block."""
    frame = np.zeros((64, 128, 3), np.uint8)
    frame[:24] = (230, 160, 90)
    frame[24:] = (110, 90, 100)
    frame[30:50, 20 + 10 * seed:60 + 10 * seed] = (30, 30, 30)
    return frame


def _jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A real JPEG with an EXIF APP1 segment holding only the orientation tag (big-endian TIFF)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    tiff = (b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0))
    body = b"Exif\x00\x00" + tiff
    raw = data.tobytes()
    return raw[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + raw[2:]


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.open(demo_model(), device="cpu", render=("color",))


def _infer(*args: object, env: dict[str, str] | None = None):
    return RUNNER.invoke(app, ["infer", *map(str, args), "--device", "cpu"], env=env)


# 1. EXIF orientation
def test_exif_orientation_is_applied_to_folder_images_and_reported(tmp_path, segmenter):
    stored = _frame()
    data = _jpeg_with_orientation(stored, 6)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "phone.jpg").write_bytes(data)
    cv2.imwrite(str(tmp_path / "in" / "plain.png"), _frame(1))
    result = _infer(tmp_path / "in", "-o", tmp_path / "out", "--save", "labels", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "EXIF orientation applied to 1 image(s), outputs as displayed: phone.jpg rotated 90° " \
           "clockwise" in result.stdout
    labels = cv2.imread(str(tmp_path / "out" / "phone_labels.png"), cv2.IMREAD_UNCHANGED)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape[:2] == (64, 128) and labels.shape == (128, 64)  # as displayed
    np.testing.assert_array_equal(labels, segmenter.segment(np.rot90(decoded, -1).copy()).labels)


# 2. --help shows every default; usage lines name arguments plainly
def test_every_command_help_shows_its_defaults():
    group = typer.main.get_command(app)
    assert {row.name for row in COMMANDS} <= set(group.commands)
    for row in COMMANDS:
        command = group.commands[row.name]
        result = RUNNER.invoke(app, [row.name, "--help"], env=WIDE)
        assert result.exit_code == 0, result.output
        text = result.stdout
        assert "{" not in text.splitlines()[1], f"{row.name}: usage line {text.splitlines()[1]!r}"
        for param in command.params:
            if param.hidden or param.name == "help":
                continue
            help_text = getattr(param, "help", None) or ""
            assert "[default:" not in help_text, (
                f"{row.name} {param.name}: a hand-written [default: ...] is eaten by Rich markup; "
                "use show_default=")
            plain_flag = getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", ())
            shows = isinstance(param.show_default, str) or (
                param.default is not None and param.show_default is not False
                and not getattr(param, "required", False) and not plain_flag)
            if not shows:
                continue
            name = (next(opt for opt in param.opts if opt.startswith("--"))
                    if param.param_type_name == "option" else param.name)
            block = _help_block(text, name)
            assert "default:" in block, f"{row.name} {name}: no default shown in {block!r}"
            if isinstance(param.show_default, str):
                expected = " ".join(param.show_default.split())
                assert expected in block, f"{row.name} {name}: {expected!r} not in {block!r}"


def _help_block(text: str, name: str) -> str:
    """The rows of one option or argument in a Rich help panel, as one line of words."""
    rows = [line.strip("│ ").strip() for line in text.splitlines()]
    starts = [index for index, row in enumerate(rows) if re.match(r"^(\* +)?" + re.escape(name)
                                                                   + r"(\.\.\.)?\b", row)]
    assert starts, f"{name} not in the help"
    block = [rows[starts[0]]]
    for row in rows[starts[0] + 1:]:
        if row.startswith(("-", "*", "╰")) or re.match(r"^[a-z_]+(\.\.\.)? +<", row):
            break
        block.append(row)
    return " ".join(" ".join(block).replace("│", " ").split())


# 3. several sources in one run
def test_several_sources_run_in_order_as_one_run(tmp_path):
    for name, seed in (("a.png", 0), ("b.png", 1)):
        cv2.imwrite(str(tmp_path / name), _frame(seed))
    (tmp_path / "more").mkdir()
    cv2.imwrite(str(tmp_path / "more" / "c.png"), _frame(2))
    video = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 64))
    for seed in range(2):
        video.write(_frame(seed))
    video.release()
    images = _infer(tmp_path / "a.png", tmp_path / "b.png", tmp_path / "more", "-o",
                    tmp_path / "out", "--save", "labels", "--no-progress")
    assert images.exit_code == 0, images.output
    assert images.stdout.count("processed") == 1 and "processed 3 frame(s)" in images.stdout
    assert {path.relative_to(tmp_path / "out").as_posix() for path in (tmp_path / "out").rglob("*.png")} \
        == {"a_labels.png", "b_labels.png", "more/c_labels.png"}
    mixed = _infer(tmp_path / "a.png", tmp_path / "clip.mp4", "-o", tmp_path / "mixed",
                   "--save", "labels,video", "--no-progress")
    assert mixed.exit_code == 0, mixed.output
    assert "processed 3 frame(s) from 2 sources 'clip'" in mixed.stdout
    assert (tmp_path / "mixed" / "clip_overlay.mp4").is_file()
    assert len(list((tmp_path / "mixed").glob("*_labels.png"))) == 3


# 4. one vocabulary
def test_one_vocabulary_for_sizes_json_and_backends(tmp_path):
    model = demo_model()
    for command in ("infer", "build", "bench", "export"):
        text = RUNNER.invoke(app, [command, "--help"], env=WIDE).stdout
        assert "--size" in text and "--shape" not in text and "--height" not in text, command
    assert "--min-size" in RUNNER.invoke(app, ["build", "--help"], env=WIDE).stdout
    assert "--precision" not in RUNNER.invoke(app, ["convert", "--help"], env=WIDE).stdout
    new = RUNNER.invoke(app, ["bench", str(model), "--size", "64x128", "--iters", "2", "--warmup",
                              "0", "--device", "cpu", "--json", "-"])
    assert new.exit_code == 0, new.output
    report = json.loads(new.stdout)
    old = RUNNER.invoke(app, ["bench", str(model), "--shape", "64x128", "--iters", "2", "--warmup",
                              "0", "--device", "cpu", "--json", str(tmp_path / "b.json")])
    assert old.exit_code == 0, old.output
    assert report["results"][0]["kind"] == json.loads((tmp_path / "b.json").read_text())["results"][0]["kind"]
    both = RUNNER.invoke(app, ["bench", str(model), "--size", "64x128", "--shape", "64x128"])
    assert both.exit_code == 1 and "give --size" in both.stderr
    trt = RUNNER.invoke(app, ["bench", str(model), "--backend", "tensorrt"])
    assert trt.exit_code == 1 and f"build an engine first: ocr-deploy build {model}" in trt.stderr
    torch = _infer(tmp_path / "x.png", "--model", model, "--backend", "pytorch")
    assert torch.exit_code == 1 and "--backend pytorch runs" in torch.stderr
    assert "Traceback" not in trt.output + torch.output


# 5. large frames: a budget warning, and --max-side
def test_large_frames_warn_and_max_side_scales_back(tmp_path, segmenter, monkeypatch):
    from ocr_deploy import pipeline

    monkeypatch.setattr(pipeline, "LARGE_FRAME_PIXELS", 100 * 100)
    frame = cv2.resize(_frame(), (256, 128), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / "big.png"), frame)
    warned = _infer(tmp_path / "big.png", "-o", tmp_path / "a", "--save", "labels", "--no-progress")
    assert warned.exit_code == 0, warned.output
    assert "warning: big is 128x256 (0.0 MP) and is segmented at 128x256, above the 0.0 MP budget" \
        in warned.stderr and "--max-side 2048" in warned.stderr
    scaled = _infer(tmp_path / "big.png", "-o", tmp_path / "b", "--save", "labels", "--no-progress",
                    "--max-side", "64")
    assert scaled.exit_code == 0, scaled.output
    assert "warning" not in scaled.stderr
    labels = cv2.imread(str(tmp_path / "b" / "big_labels.png"), cv2.IMREAD_UNCHANGED)
    small = segmenter.segment(cv2.resize(frame, (64, 32), interpolation=cv2.INTER_LINEAR)).labels
    np.testing.assert_array_equal(labels, cv2.resize(small, (256, 128), interpolation=cv2.INTER_NEAREST))


# 6. legends, presets, class names
def test_legend_on_colour_outputs_presets_and_info_classes(tmp_path, segmenter):
    from cli.presets import preset_lines
    from ocr_deploy.presets import load_preset

    frame = cv2.resize(_frame(), (512, 256))
    cv2.imwrite(str(tmp_path / "f.png"), frame)
    plain = _infer(tmp_path / "f.png", "-o", tmp_path / "plain", "--save", "color", "--no-progress")
    legend = _infer(tmp_path / "f.png", "-o", tmp_path / "legend", "--save", "color",
                    "--no-progress", "--legend")
    assert plain.exit_code == legend.exit_code == 0, plain.output + legend.output
    without = cv2.imread(str(tmp_path / "plain" / "f_color.png"))
    with_legend = cv2.imread(str(tmp_path / "legend" / "f_color.png"))
    changed = np.argwhere((without != with_legend).any(axis=2))
    assert len(changed) and changed[:, 0].max() < 128 and changed[:, 1].max() < 256  # one corner box
    result = segmenter.segment(frame)
    top = int(np.argmax(result.class_fractions))
    r, g, b = load_preset("cityscapes").palette[top]
    assert (with_legend[5:8, 3:7] == (b, g, r)).all()  # the largest class's swatch comes first
    listed = RUNNER.invoke(app, ["presets", "cityscapes"])
    assert listed.exit_code == 0 and "cityscapes: 19 classes; test size: full frame" in listed.stdout
    assert re.search(r"18 +bicycle +#770b20", listed.stdout)
    assert "\x1b[48;2;119;11;32m" in "\n".join(preset_lines(load_preset("cityscapes"), color=True))
    everything = RUNNER.invoke(app, ["presets"])
    assert all(f"{name}:" in everything.stdout for name in ("ade20k", "lip", "cocostuff"))
    info = RUNNER.invoke(app, ["info", str(demo_model())])
    assert "18 bicycle" in info.stdout and "..." not in info.stdout.split("dataset")[1].split("test size")[0]


# 7. output paths checked before any work
def test_output_paths_are_checked_before_work(tmp_path):
    model = demo_model()
    (tmp_path / "file").write_text("x")
    for args in (["bench", model, "--json", tmp_path / "file" / "b.json"],
                 ["bench", model, "--plot", tmp_path],
                 ["eval", model, "--data", tmp_path, "--json", tmp_path],
                 ["export", model, "-o", tmp_path / "file" / "m.onnx"],
                 ["infer", tmp_path / "file", "-o", tmp_path / "file"]):
        result = RUNNER.invoke(app, list(map(str, args)))
        assert result.exit_code == 1 and result.stderr.startswith("error: "), (args, result.output)
        assert "unexpected" not in result.stderr and "measuring" not in result.stderr
    made = RUNNER.invoke(app, ["bench", str(model), "--size", "64x128", "--iters", "1", "--warmup",
                               "0", "--device", "cpu", "--json", str(tmp_path / "new" / "r.json")])
    assert made.exit_code == 0 and json.loads((tmp_path / "new" / "r.json").read_text())["results"]


# 8. small ones
def test_version_and_short_help():
    version = RUNNER.invoke(app, ["--version"])
    assert version.exit_code == 0 and re.fullmatch(r"ocr-deploy \d+\.\d+\.\d+\S*\n", version.stdout)
    assert "Usage: ocr-deploy infer" in RUNNER.invoke(app, ["infer", "-h"]).stdout


def _static_copy(path: Path, batch: int, height: int, width: int) -> Path:
    """The demo ONNX with its input and output fixed, graph and metadata alike (no re-export)."""
    import onnx

    model = onnx.load(str(demo_model()))
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        for dim, size in zip(dims, (batch, height, width), strict=False):
            dim.Clear()
            dim.dim_value = size
    prop = next(prop for prop in model.metadata_props if prop.key == "ocr_deploy")
    meta = json.loads(prop.value)
    meta["input"].update(batch=batch, height=height, width=width)
    prop.value = json.dumps(meta)
    onnx.save(model, str(path))
    return path


def test_info_of_a_static_export_says_what_is_static(tmp_path):
    static = RUNNER.invoke(app, ["info", str(_static_copy(tmp_path / "static.onnx", 2, 96, 128))])
    assert static.exit_code == 0, static.output
    assert "static 96x128, batch 2" in static.stdout and "dynamic sides" not in static.stdout
    dynamic = RUNNER.invoke(app, ["info", str(demo_model())])
    assert "dynamic sides >= 32 px, dynamic batch" in dynamic.stdout


def test_ignored_options_warn_and_progress_is_plain_lines_in_logs(tmp_path):
    for seed in range(3):
        cv2.imwrite(str(tmp_path / f"{seed}.png"), _frame(seed))
    result = _infer(tmp_path / "0.png", tmp_path / "1.png", tmp_path / "2.png", "-o", tmp_path / "o",
                    "--save", "labels", "--stride", "2", "--policy", "letterbox")
    assert result.exit_code == 0, result.output
    assert "warning: --stride 2 applies to videos" in result.stderr
    assert "warning: --policy letterbox without --size" in result.stderr
    assert "progress: 3/3 frame(s) (100%)" in result.stderr and "\r" not in result.stderr
    missing = _infer(tmp_path / "none.png", "-o", tmp_path / "p")
    assert missing.stderr.startswith("error: ") and "%" not in missing.stderr


def test_demo_reuses_its_export_when_the_checkpoint_is_unchanged(tmp_path):
    import shutil

    from cli.demo import reusable_export
    from ocr_deploy.assets import demo_checkpoint
    from ocr_deploy.sinks import OutputClaims

    onnx = tmp_path / demo_model().name
    shutil.copyfile(demo_model(), onnx)
    assert reusable_export(onnx, demo_checkpoint()) is None  # not written by ocr-deploy
    OutputClaims(tmp_path).record([onnx])
    assert "same checkpoint" in reusable_export(onnx, demo_checkpoint())
    other = tmp_path / "other.pth"
    other.write_bytes(demo_checkpoint().read_bytes() + b"\0")
    assert reusable_export(onnx, other) is None


def test_cached_checkpoint_is_shown_by_name(tmp_path, monkeypatch):
    """The demo checkpoint's cache entry is the shipped export of it, put in place as
    exporters.model_cache records one, so no export runs here."""
    import shutil

    from exporters.model_cache import CacheRecord, cache_dir
    from ocr_deploy.assets import demo_checkpoint
    from ocr_deploy.fileio import sha256_of

    monkeypatch.setenv("OCR_DEPLOY_CACHE", str(tmp_path / "cache"))
    checkpoint = demo_checkpoint()
    digest = sha256_of(checkpoint)
    cache_dir().mkdir(parents=True, exist_ok=True)
    entry = cache_dir() / f"{digest}.onnx"
    shutil.copyfile(demo_model(), entry)
    record = CacheRecord(digest, checkpoint.stat().st_size, entry.stat().st_size, sha256_of(entry))
    (cache_dir() / f"{digest}.json").write_text(json.dumps(record.__dict__))
    cv2.imwrite(str(tmp_path / "f.png"), _frame())
    result = _infer(tmp_path / "f.png", "--model", checkpoint, "-o", tmp_path / "o",
                    "--save", "labels", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"model: {checkpoint.name} (cached export {digest[:12]}...)" in result.stderr


def test_broken_pipe_exits_quietly():
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "cli", "presets"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[1])
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""
