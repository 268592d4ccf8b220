"""Reruns into the same -o replace ocr-deploy's own earlier outputs; a user's file is never replaced.

The output folder's manifest (.ocr-deploy-outputs.json) records each written file's size, mtime and
a hash of its edges. Real runs of the tiny exported network on 64x96 frames, real files read back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from ocr_deploy.sinks import MANIFEST_NAME, OutputClaims, OutputExists, OutputManifest
from ocr_deploy.testframes import synthetic_frame

RUNNER = CliRunner()


def _infer(source: Path, model: Path, out: Path, *extra: str):
    return RUNNER.invoke(app, ["infer", str(source), "--model", str(model), "-o", str(out),
                               "--no-progress", *extra])


def _image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), synthetic_frame(64, 96, seed=seed))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _labels(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _refused(result, path: Path) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert f"{path} already exists and was not written by ocr-deploy" in lines[0]
    assert "--overwrite" in lines[0]


@pytest.fixture()
def first_run(tiny_onnx, tmp_path) -> tuple[Path, Path]:
    """photos/street.png segmented into out/ once: (input image, output folder)."""
    street = _image(tmp_path / "photos" / "street.png", seed=1)
    out = tmp_path / "out"
    result = _infer(street, tiny_onnx, out)
    assert result.exit_code == 0, result.output
    return street, out


def test_rerun_replaces_its_own_outputs(tiny_onnx, first_run, tmp_path):
    street, out = first_run
    first_overlay = _sha(out / "street_overlay.jpg")
    recorded = json.loads((out / MANIFEST_NAME).read_text())["files"]
    assert sorted(recorded) == ["street_labels.png", "street_overlay.jpg"]
    assert recorded["street_labels.png"]["size"] == (out / "street_labels.png").stat().st_size

    _image(street, seed=7)  # new content under the same name: the rerun must really replace
    rerun = _infer(street, tiny_onnx, out)
    assert rerun.exit_code == 0, rerun.output
    assert "wrote 2 file(s)" in rerun.stdout
    fresh = tmp_path / "fresh"
    assert _infer(street, tiny_onnx, fresh).exit_code == 0
    assert np.array_equal(_labels(out / "street_labels.png"), _labels(fresh / "street_labels.png"))
    assert _sha(out / "street_overlay.jpg") == _sha(fresh / "street_overlay.jpg") != first_overlay
    # The manifest now describes the replaced files, so a third run replaces them again.
    stamp = json.loads((out / MANIFEST_NAME).read_text())["files"]["street_labels.png"]
    assert stamp["mtime_ns"] == (out / "street_labels.png").stat().st_mtime_ns
    assert _infer(street, tiny_onnx, out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "street_labels.png",
                                                     "street_overlay.jpg"]


def test_video_rerun_replaces_video_and_table(tiny_onnx, tmp_path):
    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for index in range(3):
        writer.write(synthetic_frame(64, 96, seed=index))
    writer.release()
    out = tmp_path / "out"
    assert _infer(video, tiny_onnx, out).exit_code == 0
    table = (out / "drive_classes.csv").read_text()
    rerun = _infer(video, tiny_onnx, out, "--max-frames", "2")
    assert rerun.exit_code == 0, rerun.output
    rows = (out / "drive_classes.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and rows == table.splitlines()[:3]  # replaced, same figures
    assert not list(out.glob(".*partial*"))


def test_a_users_file_of_an_output_name_is_never_replaced(tiny_onnx, first_run):
    street, out = first_run
    other = _image(street.parent / "other.png", seed=3)
    users = _image(out / "other_labels.png", seed=9)  # the user's own file, beside a manifest
    before = _sha(users)
    _refused(_infer(other, tiny_onnx, out), users)
    assert _sha(users) == before
    assert not (out / "other_overlay.jpg").exists()  # nothing written after the refusal
    assert "other_labels.png" not in json.loads((out / MANIFEST_NAME).read_text())["files"]
    # --overwrite is the way to replace it; afterwards the file is ocr-deploy's own.
    assert _infer(other, tiny_onnx, out, "--overwrite").exit_code == 0
    assert _sha(users) != before
    assert _infer(other, tiny_onnx, out).exit_code == 0


@pytest.mark.parametrize("change", ["content", "size", "mtime"])
def test_a_former_output_the_user_changed_is_protected(tiny_onnx, first_run, change):
    street, out = first_run
    labels = out / "street_labels.png"
    stat = labels.stat()
    if change == "content":  # same size, same mtime: only the edge hash tells
        data = bytearray(labels.read_bytes())
        data[-20] ^= 0xFF
        labels.write_bytes(bytes(data))
        os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change == "size":
        with labels.open("ab") as handle:
            handle.write(b"the user's notes")
    else:
        os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    before = _sha(labels)
    _refused(_infer(street, tiny_onnx, out), labels)
    assert _sha(labels) == before


@pytest.mark.parametrize("damage", [b"{not json", b"[" * 100_000, b'{"format": "other", "files": {}}',
                                    b'{"format": "ocr-deploy-outputs/1", "files": {"street_labels.png": 3}}'],
                         ids=["not-json", "nested-deep", "other-format", "bad-entry"])
def test_damaged_manifest_reads_as_empty_and_protects(tiny_onnx, first_run, damage):
    street, out = first_run
    (out / MANIFEST_NAME).write_bytes(damage)
    before = _sha(out / "street_labels.png")
    _refused(_infer(street, tiny_onnx, out), out / "street_labels.png")
    assert _sha(out / "street_labels.png") == before
    assert _infer(street, tiny_onnx, out, "--overwrite").exit_code == 0  # and the record is rebuilt
    assert sorted(json.loads((out / MANIFEST_NAME).read_text())["files"]) == ["street_labels.png",
                                                                               "street_overlay.jpg"]
    assert _infer(street, tiny_onnx, out).exit_code == 0


def test_manifest_is_never_an_input(tiny_onnx, first_run, tmp_path):
    _, out = first_run
    result = _infer(out, tiny_onnx, tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert "processed 2 frame(s)" in result.stdout  # the two images, not the manifest
    assert MANIFEST_NAME not in result.output


def test_claims_and_manifest_without_a_run(tmp_path):
    """The rules on plain files: recorded and unchanged is replaceable; a symlink put in the place
    of a recorded file, a file that is gone, or one recorded outside the folder are not."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    model = out / "sub" / "model.onnx"
    model.write_bytes(b"x" * 200_000)  # larger than both hashed edges together
    OutputClaims(out).record([model])
    assert OutputClaims(out).claim("sub/model.onnx") == model
    assert OutputManifest.load(out).owns(model)

    data = bytearray(model.read_bytes())
    data[100_000] ^= 1  # in the middle, outside the hashed edges: size and mtime decide
    stat = model.stat()
    model.write_bytes(bytes(data))
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    with pytest.raises(OutputExists, match="not written by ocr-deploy"):
        OutputClaims(out).claim("sub/model.onnx")

    target = tmp_path / "user.bin"
    target.write_bytes(b"mine")
    link = out / "link.bin"
    link.symlink_to(target)
    OutputClaims(out).record([link])  # a symlink is not a file ocr-deploy wrote
    assert "link.bin" not in OutputManifest.load(out).entries
    with pytest.raises(OutputExists, match="reserved"):
        OutputClaims(out).claim(MANIFEST_NAME)

    hand_made = {"format": "ocr-deploy-outputs/1",
                 "files": {"../user.bin": {"size": 4, "mtime_ns": target.stat().st_mtime_ns, "edges": "x"}}}
    (out / MANIFEST_NAME).write_text(json.dumps(hand_made))
    assert OutputManifest.load(out).entries == {}
    model.unlink()
    OutputClaims(out).record([])  # entries of files that are gone are dropped on save
    assert json.loads((out / MANIFEST_NAME).read_text())["files"] == {}
