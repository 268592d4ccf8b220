"""`ocr-deploy compare` and `bench` on real artifacts of the tiny network."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from cli import app
from ocr_deploy.testframes import synthetic_frame

RUNNER = CliRunner()


def _invoke(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


def test_checkpoint_against_its_onnx(tiny_checkpoint, tiny_onnx, tmp_path):
    images = tmp_path / "frames"
    images.mkdir()
    for index in range(2):
        cv2.imwrite(str(images / f"f{index}.png"), synthetic_frame(72, 120, seed=index))
    result = _invoke("compare", tiny_checkpoint, tiny_onnx, images, "--heatmaps", tmp_path / "heat")
    assert result.exit_code == 0, result.output
    assert "(PyTorch)" in result.stdout and "(fp32 ONNX)" in result.stdout
    agreement = float(result.stdout.split("pixel agreement ")[1].split(" %")[0])
    assert agreement >= 99.9
    max_delta = float(result.stdout.split("|dlogits|: max ")[1].split(",")[0])
    assert max_delta < 1e-3
    assert sorted(p.name for p in (tmp_path / "heat").iterdir()) == [
        "f0_disagreement.png", "f1_disagreement.png"]


def test_fp16_against_fp32_on_builtin_frames(tiny_onnx, tmp_path):
    fp16 = tmp_path / "tiny_fp16.onnx"
    assert _invoke("convert", tiny_onnx, "-o", fp16, "--min-agreement", "80").exit_code == 0
    result = _invoke("compare", tiny_onnx, fp16, "--min-agreement", "50")
    assert result.exit_code == 0, result.output
    assert "over 6 frame(s)" in result.stdout and "most confused" in result.stdout
    assert "(fp16 ONNX)" in result.stdout


def test_different_models_fail_the_agreement_bar(tiny_onnx, tmp_path):
    """The other model runs as its checkpoint (the PyTorch artifact): an export of it would cost
    a dynamic trace and prove nothing more about compare's verdict."""
    from exporters.synthetic import save_release, synthetic_model
    from exporters.variants import OcrConfig

    config = OcrConfig.from_variant("tiny", num_classes=19, mid_channels=32, key_channels=16)
    other = save_release(synthetic_model(config, seed=5), tmp_path / "o.pth")
    result = _invoke("compare", tiny_onnx, other)
    assert result.exit_code == 1
    assert "below --min-agreement 99.5 %" in result.stderr


def test_bench_single_with_json_and_plot(tiny_onnx, tmp_path):
    result = _invoke("bench", tiny_onnx, "--shape", "64x96", "--iters", "4", "--warmup", "1",
                     "--json", tmp_path / "bench.json", "--plot", tmp_path / "bench.png")
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.stdout and "p95" in result.stdout
    data = json.loads((tmp_path / "bench.json").read_text())
    (row,) = data["results"]
    assert row["shape"] == [64, 96] and len(row["latencies_ms"]) == 4
    assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] and row["peak_rss_mb"] > 10
    assert set(row["stage_ms"]) == {"pre", "infer", "post"}
    assert cv2.imread(str(tmp_path / "bench.png")) is not None


def _seed_export_cache(cache: Path, checkpoint: Path, onnx: Path) -> None:
    """The cache entry `resolve_model` would write for `checkpoint`, holding `onnx`: tiny_onnx is
    that very export (default options), so bench --all skips a second dynamic export. Exporting
    on a cache miss is test_infer_cli.py's test_checkpoint_as_model_is_exported_once."""
    import shutil
    from dataclasses import asdict

    from exporters.model_cache import CacheRecord
    from ocr_deploy.fileio import sha256_of

    cache.mkdir()
    digest = sha256_of(checkpoint)
    shutil.copyfile(onnx, cache / f"{digest}.onnx")
    record = CacheRecord(digest, checkpoint.stat().st_size, onnx.stat().st_size, sha256_of(onnx))
    (cache / f"{digest}.json").write_text(json.dumps(asdict(record)))


def test_bench_all_covers_backends_and_pytorch(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_DEPLOY_CACHE", str(tmp_path / "cache"))
    _seed_export_cache(tmp_path / "cache", tiny_checkpoint, tiny_onnx)
    result = _invoke("bench", tiny_checkpoint, "--all", "--shape", "64x96", "--iters", "3",
                     "--warmup", "1")
    assert result.exit_code == 0, result.output
    assert "using the cached export" in result.stderr  # the seeded entry, not a second export
    rows = {tuple(line.split()[:2]) for line in result.stdout.splitlines()[2:] if line[:1].isalpha()}
    assert {("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("pytorch", "fp32")} <= rows
    from ocr_deploy.backends import BACKENDS
    from ocr_deploy.backends.nvidia import tensorrt_unavailable_reason

    if tensorrt_unavailable_reason():
        assert "skipped tensorrt:" in result.stdout
    if BACKENDS["openvino"].unavailable_reason() is None:  # every built precision: measured or why not
        for precision in ("fp32", "bf16", "int8"):
            assert ("openvino", precision) in rows or f"skipped openvino {precision}:" in result.stdout


def test_bench_bad_input(tmp_path):
    result = _invoke("bench", tmp_path / "missing.onnx")
    assert result.exit_code == 1 and "model not found" in result.stderr


@pytest.mark.parametrize("args,fragment", [(["--iters", "0"], "--iters must be at least 1")])
def test_bench_bad_options(tiny_onnx, args, fragment):
    result = _invoke("bench", tiny_onnx, *args)
    assert result.exit_code == 1 and fragment in result.stderr
