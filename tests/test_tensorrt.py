"""TensorRT up to its boundary: profiles, sidecars and compatibility checks for real; building
and running engines only where TensorRT and a GPU exist (skipped here with the reason)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from exporters.tensorrt_build import BuildRequest, select_profile
from ocr_deploy.backends import read_meta
from ocr_deploy.backends.nvidia import tensorrt_unavailable_reason
from ocr_deploy.engine_sidecar import EngineSidecar, ProfileShapes, check_compatible, read_sidecar, sidecar_path
from ocr_deploy.errors import ConfigError, ModelFileError
from ocr_deploy.fileio import sha256_of

RUNNER = CliRunner()
TRT_MISSING = tensorrt_unavailable_reason()


def _sidecar(meta, plan: Path, onnx: Path) -> EngineSidecar:
    profile = ProfileShapes("image", (1, 64, 96, 3), (1, 128, 192, 3), (1, 256, 384, 3))
    return EngineSidecar(meta, "11.4.0.106", "NVIDIA H100 80GB HBM3", (9, 0), str(onnx),
                         sha256_of(onnx), sha256_of(plan), "fp16", "strong", profile, "0.1.0")


@pytest.fixture()
def engine_files(tiny_onnx, tmp_path):
    onnx_copy = tmp_path / "model.onnx"
    onnx_copy.write_bytes(tiny_onnx.read_bytes())
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"stand-in plan bytes")
    sidecar = _sidecar(read_meta(onnx_copy), plan, onnx_copy)
    sidecar_path(plan).write_text(sidecar.to_json())
    return plan, onnx_copy, sidecar


def test_sidecar_round_trip(engine_files):
    plan, _, sidecar = engine_files
    assert read_sidecar(plan) == sidecar
    data = json.loads(sidecar_path(plan).read_text())
    assert data["tensorrt_version"] == "11.4.0.106" and data["meta"]["network"]["variant"] == "tiny"


def test_compatible_engine_passes(engine_files):
    plan, _, _ = engine_files
    check_compatible(read_sidecar(plan), plan=plan, tensorrt_version="11.4.0.106",
                     gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0))


@pytest.mark.parametrize("change,message", [
    ({"tensorrt_version": "10.16.1.11"}, "built by TensorRT 11.4.0.106, this is TensorRT 10.16.1.11"),
    ({"gpu_name": "NVIDIA L4", "compute_capability": (8, 9)}, "built for NVIDIA H100 80GB HBM3 (sm_90)"),
])
def test_engine_for_another_setup_is_refused(engine_files, change, message):
    plan, _, _ = engine_files
    here = {"tensorrt_version": "11.4.0.106", "gpu_name": "NVIDIA H100 80GB HBM3",
            "compute_capability": (9, 0), **change}
    with pytest.raises(ModelFileError, match="rebuild it here: ocr-deploy build") as error:
        check_compatible(read_sidecar(plan), plan=plan, **here)
    assert message in str(error.value)


def test_changed_onnx_or_replaced_plan_is_refused(engine_files):
    plan, onnx_copy, _ = engine_files
    here = dict(tensorrt_version="11.4.0.106", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability=(9, 0))
    onnx_copy.write_bytes(onnx_copy.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="has changed since model.engine was built"):
        check_compatible(read_sidecar(plan), plan=plan, **here)
    plan.write_bytes(b"another plan")
    with pytest.raises(ModelFileError, match="does not match its sidecar"):
        check_compatible(read_sidecar(plan), plan=plan, **here)


def test_missing_or_broken_sidecar(engine_files):
    plan, _, _ = engine_files
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(ModelFileError, match="not a valid engine sidecar"):
        read_sidecar(plan)
    sidecar_path(plan).unlink()
    with pytest.raises(ModelFileError, match="has no sidecar model.engine.json"):
        read_sidecar(plan)


def test_profile_selection(tiny_onnx, export_tiny):
    meta = read_meta(tiny_onnx)  # cityscapes preset, dynamic, raw input
    assert meta.deployment_size() == (1024, 2048)
    static = select_profile(meta, BuildRequest(onnx=tiny_onnx))
    assert static.min == static.opt == static.max == (1, 1024, 2048, 3)
    ranged = select_profile(meta, BuildRequest(onnx=tiny_onnx, min_shape=(256, 512), opt_shape=(512, 1024),
                                               max_shape=(1024, 2048), batch=2))
    assert (ranged.min, ranged.opt, ranged.max) == ((2, 256, 512, 3), (2, 512, 1024, 3),
                                                    (2, 1024, 2048, 3))
    assert ranged.contains((2, 300, 700, 3)) and not ranged.contains((2, 128, 700, 3))
    normalized = read_meta(export_tiny(input_format="normalized", output_kind="logits"))
    assert select_profile(normalized, BuildRequest(onnx=tiny_onnx, shape=(64, 96))).opt == (1, 3, 64, 96)
    ade = dataclasses.replace(meta, dataset=dataclasses.replace(
        meta.dataset, name="ade20k", test_policy=dataclasses.replace(meta.dataset.test_policy,
                                                                     kind="resize-pad", size=520)))
    assert ade.deployment_size() == (520, 520)
    for bad, message in [(dict(min_shape=(256, 512)), "together"),
                         (dict(min_shape=(512, 512), opt_shape=(256, 512), max_shape=(1024, 1024)),
                          "ordered min <= opt <= max"),
                         (dict(shape=(16, 64)), "at least 32 px")]:
        with pytest.raises(ConfigError, match=message):
            select_profile(meta, BuildRequest(onnx=tiny_onnx, **bad))


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT and a GPU are present here")
def test_build_without_tensorrt_says_how_to_install(tiny_onnx, tmp_path):
    result = RUNNER.invoke(app, ["build", str(tiny_onnx), "-o", str(tmp_path / "x.engine"),
                                 "--shape", "64x96"])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and line == f"error: {TRT_MISSING}"
    assert 'pip install "ocr-deploy[tensorrt]"' in line or "run an .onnx model" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT and a GPU are present here")
def test_engine_without_tensorrt_fails_in_one_line(engine_files, tmp_path):
    plan, _, _ = engine_files
    image = tmp_path / "frame.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((64, 96, 3), np.uint8))
    result = RUNNER.invoke(app, ["infer", str(image), "--model", str(plan), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {TRT_MISSING}"
    info = RUNNER.invoke(app, ["info", str(plan)])
    assert info.exit_code == 0 and "TensorRT 11.4.0.106, NVIDIA H100" in info.stdout
    assert any(line.split()[:2] == ["tensorrt", "unavailable:"] for line in info.stdout.splitlines())


def test_info_lists_backends():
    result = RUNNER.invoke(app, ["info"])
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert rows["onnxruntime"] == "available:"
    assert rows["tensorrt"] == ("unavailable:" if TRT_MISSING else "available:")


@pytest.mark.skipif(TRT_MISSING is not None, reason=f"TensorRT backend unavailable: {TRT_MISSING}")
def test_engine_matches_onnx_runtime(tiny_onnx, tmp_path):
    from exporters.tensorrt_build import build_engine
    from ocr_deploy.segmenter import Segmenter
    from ocr_deploy.testframes import synthetic_frame

    result = build_engine(BuildRequest(onnx=tiny_onnx, output=tmp_path / "tiny.engine", precision="fp32",
                                       shape=(96, 160)))
    assert result.sidecar.meta.input.fixed_size == (96, 160)
    frame = synthetic_frame(96, 160, seed=1)
    engine = Segmenter.open(result.plan).segment(frame)
    reference = Segmenter.open(tiny_onnx, device="cpu").segment(frame)
    assert (engine.labels == reference.labels).mean() >= 0.999
    other_size = Segmenter.open(result.plan).segment(synthetic_frame(48, 80, seed=2))
    assert other_size.labels.shape == (48, 80)  # letterboxed into the static profile
