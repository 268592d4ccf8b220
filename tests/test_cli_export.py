"""`ocr-deploy export` and `info` through the CLI: summaries, and every bad input as one line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app

RUNNER = CliRunner()


def _run(*args: str):
    return RUNNER.invoke(app, [str(a) for a in args])


def _assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_export_prints_summary(tiny_checkpoint, tmp_path):
    out = tmp_path / "tiny.onnx"
    result = _run("export", tiny_checkpoint, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    text = result.stdout
    for fragment in ("exported", "HRNet-OCR tiny, K=19", "parameters", "0.13 M", "verified",
                     "labels agree", "uint8 [batch, height, width, 3]", "cityscapes"):
        assert fragment in text, fragment
    info = _run("info", out)
    assert info.exit_code == 0 and "HRNet-OCR tiny" in info.stdout and "sha256" in info.stdout


def test_default_output_goes_beside_checkpoint(tiny_model, tmp_path):
    from exporters.synthetic import save_release

    checkpoint = save_release(tiny_model, tmp_path / "weights.pth.tar")
    result = _run("export", checkpoint, "--no-verify", "--height", "64", "--width", "64")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "weights.onnx").is_file()
    assert "skipped (--no-verify)" in result.stdout


def _write_bad_inputs(folder: Path, tiny_checkpoint: Path) -> dict[str, Path]:
    random_bytes = folder / "random.pth"
    random_bytes.write_bytes(os.urandom(4096))
    unrelated_zip = folder / "unrelated.pth"
    with zipfile.ZipFile(unrelated_zip, "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")
    truncated = folder / "truncated.pth"
    data = tiny_checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    unsafe = folder / "unsafe.pth"
    torch.save({"args": argparse.Namespace(lr=0.01), "state_dict": {}}, unsafe)
    empty = folder / "empty.pth"
    empty.write_bytes(b"")
    return {"random": random_bytes, "zip": unrelated_zip, "truncated": truncated,
            "unsafe": unsafe, "empty": empty}


@pytest.mark.parametrize("case,fragment", [
    ("random", "is not a PyTorch checkpoint"),
    ("zip", "zip archive but not a PyTorch checkpoint"),
    ("truncated", "damaged zip archive"),
    ("unsafe", "would need unsafe unpickling"),
    ("empty", "is empty"),
])
def test_unreadable_files(tiny_checkpoint, tmp_path, case, fragment):
    path = _write_bad_inputs(tmp_path, tiny_checkpoint)[case]
    out = tmp_path / "out.onnx"
    _assert_one_line_error(_run("export", path, "-o", out), fragment)
    assert not out.exists()


def test_missing_file(tmp_path):
    _assert_one_line_error(_run("export", tmp_path / "nope.pth"), "checkpoint not found")


def test_plain_hrnet_without_ocr(tiny_model, tmp_path):
    backbone = {k: v for k, v in tiny_model.state_dict().items()
                if not k.startswith(("conv3x3_ocr", "ocr_distri_head", "cls_head", "aux_head"))}
    backbone["last_layer.0.weight"] = torch.zeros(60, 60, 1, 1)
    backbone["last_layer.3.weight"] = torch.zeros(19, 60, 1, 1)
    torch.save({f"model.{k}": v for k, v in backbone.items()}, tmp_path / "hrnet.pth")
    _assert_one_line_error(_run("export", tmp_path / "hrnet.pth"),
                           "plain HRNetV2 segmentation checkpoint (no OCR head)")


def test_resnet_checkpoint(tmp_path):
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64),
              "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1),
              "layer4.2.conv3.weight": torch.zeros(2048, 512, 1, 1),
              "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    torch.save(resnet, tmp_path / "resnet50.pth")
    _assert_one_line_error(_run("export", tmp_path / "resnet50.pth"), "ResNet-style checkpoint")


def test_dataset_disagreeing_with_classes(tiny_checkpoint, tmp_path):
    _assert_one_line_error(_run("export", tiny_checkpoint, "-o", tmp_path / "x.onnx",
                                "--dataset", "lip"),
                           "--dataset lip has 20 classes but the model predicts 19")


def test_output_in_missing_folder(tiny_checkpoint, tmp_path):
    _assert_one_line_error(_run("export", tiny_checkpoint, "-o", tmp_path / "nope" / "x.onnx"),
                           "does not exist")


def test_output_in_read_only_folder(tiny_checkpoint, tmp_path):
    if os.geteuid() == 0:
        read_only = Path("/sys")  # root ignores permission bits; sysfs refuses new files
    else:
        read_only = tmp_path / "read_only"
        read_only.mkdir()
        read_only.chmod(0o555)
    _assert_one_line_error(_run("export", tiny_checkpoint, "-o", read_only / "x.onnx"),
                           "cannot write to")


def test_info_on_foreign_onnx(tmp_path, foreign_onnx):
    _assert_one_line_error(_run("info", foreign_onnx), "has no ocr-deploy metadata")
    (tmp_path / "garbage.onnx").write_bytes(b"\x00garbage")
    _assert_one_line_error(_run("info", tmp_path / "garbage.onnx"), "not a readable ONNX model")


def test_installed_entry_point_prints_no_traceback(tmp_path):
    """The real console script, in a subprocess, on a missing checkpoint."""
    command = [sys.executable, "-c", "import cli; cli.main()", "export", str(tmp_path / "x.pth")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'x.pth'}"]
