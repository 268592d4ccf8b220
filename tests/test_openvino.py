"""The OpenVINO backend and its builds, on real OpenVINO sessions: the trained demo model against
ONNX Runtime on held-out generated scenes, IR files written and read back, bad files refused."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("openvino", reason="the openvino extra is not installed")

from typer.testing import CliRunner  # noqa: E402

import ocr_deploy.backends.openvino as ov_backend  # noqa: E402
from cli import app  # noqa: E402
from exporters.openvino_build import (  # noqa: E402
    OpenVinoBuildRequest,
    build_openvino,
    default_output,
)
from ocr_deploy.assets import demo_model  # noqa: E402
from ocr_deploy.backends import BackendUnavailable, backend_for, open_backend, read_meta  # noqa: E402
from ocr_deploy.errors import ConfigError, ModelFileError, VerificationError  # noqa: E402
from ocr_deploy.metrics import SegmentationScores, confusion_matrix  # noqa: E402
from ocr_deploy.testframes import synthetic_frame  # noqa: E402
from ocr_deploy.vocabulary import ArtifactFormat, Precision  # noqa: E402
from training.scenes import render_scene  # noqa: E402

SCENE_SEEDS = (0, 1, 2)  # of the demo model's held-out seeds 0-99
PROOF_SEEDS = (60, 61)  # frames the builds are proved on
HEIGHT, WIDTH = 256, 512


def _scenes(seeds: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [render_scene(seed, height=HEIGHT, width=WIDTH) for seed in seeds]


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    return _scenes(SCENE_SEEDS)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("openvino_cache")


@pytest.fixture(scope="module")
def demo_irs(tmp_path_factory) -> dict[str, Path]:
    """fp32 and bf16 IRs of the demo model, proved on two held-out scenes."""
    folder = tmp_path_factory.mktemp("demo_ir")
    frames = folder / "frames"
    frames.mkdir()
    for seed, (image, _) in zip(PROOF_SEEDS, _scenes(PROOF_SEEDS), strict=True):
        cv2.imwrite(str(frames / f"scene_{seed}.png"), image)
    built = {}
    for precision in (Precision.fp32, Precision.bf16):
        if precision is Precision.bf16 and not _has_bf16():
            continue
        request = OpenVinoBuildRequest(onnx=demo_model(), output=folder / f"demo_{precision}.xml",
                                       precision=precision, frames=str(frames))
        built[precision.value] = build_openvino(request).path
    return built


def _has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov_backend.device_capabilities(ov.Core())


def _labels(backend, images: list[np.ndarray]) -> list[np.ndarray]:
    return [backend.run(image[None])[backend.meta.output.name][0] for image in images]


def _agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([(x == y).mean() for x, y in zip(a, b, strict=True)]))


def _miou(predictions: list[np.ndarray], truths: list[np.ndarray]) -> float:
    confusion = sum(confusion_matrix(p, t, 19) for p, t in zip(predictions, truths, strict=True))
    return SegmentationScores(confusion).mean_iou_present


# --- agreement on the trained demo model -----------------------------------------------------

def test_f32_matches_onnxruntime_on_the_demo_model(scenes, demo_irs, cache_dir):
    images = [image for image, _ in scenes]
    reference = _labels(open_backend(demo_model(), device="cpu"), images)
    for path in (demo_model(), demo_irs["fp32"]):
        backend = open_backend(path, backend="openvino", device="cpu", cache_dir=cache_dir)
        assert backend.hint == "f32"
        agreement = _agreement(_labels(backend, images), reference)
        assert agreement >= 0.9999, f"{path.name}: {100 * agreement:.4f} %"


def test_bf16_keeps_labels_and_miou_of_fp32(scenes, demo_irs, cache_dir):
    if "bf16" not in demo_irs:
        pytest.skip("this CPU has no BF16")
    images, truths = [image for image, _ in scenes], [truth for _, truth in scenes]
    fp32 = _labels(open_backend(demo_irs["fp32"], cache_dir=cache_dir), images)
    bf16_backend = open_backend(demo_irs["bf16"], cache_dir=cache_dir)
    assert bf16_backend.hint == "bf16" and "hint bf16" in bf16_backend.describe()
    bf16 = _labels(bf16_backend, images)
    assert _agreement(bf16, fp32) >= 0.995
    assert _miou(fp32, truths) - _miou(bf16, truths) <= 0.01
    assert _miou(fp32, truths) > 0.5  # a trained model on its own kind of scene


# --- IR files ---------------------------------------------------------------------------------

def test_ir_metadata_round_trip(demo_irs):
    source = read_meta(demo_model())
    for precision, path in demo_irs.items():
        assert backend_for(path) == "openvino" and path.with_suffix(".bin").is_file()
        meta = read_meta(path)  # from the .xml alone
        assert meta == replace(source, provenance=replace(source.provenance, precision=precision))
        assert open_backend(path, cache=False).meta == meta
        rows = dict(ov_backend.artifact_rows(path))
        assert rows["openvino IR"].startswith(precision) and "MB" in rows["weights"]
    assert backend_for(demo_model()) == "onnxruntime"  # .onnx stays with ONNX Runtime


def test_default_output_names():
    model = Path("/models/street.onnx")
    assert default_output(model, Precision.bf16, ArtifactFormat.ir) == Path(
        "/models/street_bf16.xml")
    assert default_output(model, Precision.int8, ArtifactFormat.onnx) == Path(
        "/models/street_int8.onnx")


def test_second_open_uses_the_compiled_model_cache(tiny_onnx, tmp_path):
    frame = synthetic_frame(96, 160, seed=1)[None]
    first = open_backend(tiny_onnx, backend="openvino", cache_dir=tmp_path)
    outputs = first.run(frame)
    assert first.compiled_from_cache == [False] and any(tmp_path.iterdir())
    blobs = sorted(tmp_path.iterdir())
    second = open_backend(tiny_onnx, backend="openvino", cache_dir=tmp_path)
    again = second.run(frame)
    assert second.compiled_from_cache == [True] and sorted(tmp_path.iterdir()) == blobs
    np.testing.assert_array_equal(outputs["labels"], again["labels"])
    no_cache = open_backend(tiny_onnx, backend="openvino", cache=False)
    no_cache.run(frame)
    assert no_cache.compiled_from_cache == [False] and "no compiled-model cache" in \
        no_cache.describe()


@pytest.mark.parametrize("mode", ["latency", "throughput"])
def test_run_is_thread_safe(tiny_onnx, tmp_path, mode):
    backend = open_backend(tiny_onnx, backend="openvino", cache_dir=tmp_path, mode=mode)
    frames = [synthetic_frame(*size, seed=seed)[None] for seed in range(6)
              for size in ((96, 160), (64, 128))]
    expected = [backend.run(frame) for frame in frames]
    results: dict[tuple[int, int], dict] = {}

    def work(worker: int) -> None:
        for index in range(len(frames)):
            results[worker, index] = backend.run(frames[index])

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 * len(frames)
    for (_, index), outputs in results.items():
        assert list(outputs) == ["labels"]
        np.testing.assert_array_equal(outputs["labels"], expected[index]["labels"])
    assert f"{mode} mode" in backend.describe()
    backend.close()
    backend.close()
    with pytest.raises(BackendUnavailable, match="closed"):
        backend.run(frames[0])


def test_shapes_beyond_the_static_ones_share_a_dynamic_model(tiny_onnx):
    backend = open_backend(tiny_onnx, backend="openvino", cache=False)
    reference = open_backend(tiny_onnx, device="cpu")
    for index in range(ov_backend._STATIC_SHAPES + 2):
        frame = synthetic_frame(64, 96 + 32 * index, seed=index)[None]
        labels = backend.run(frame)["labels"]
        assert (labels == reference.run(frame)["labels"]).mean() >= 0.999
    assert len(backend.compiled_from_cache) == ov_backend._STATIC_SHAPES + 1


# --- bad input: one line each, nothing written ------------------------------------------------

def test_openvino_missing_says_how_to_install(monkeypatch, tiny_onnx):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert 'pip install "ocr-deploy[openvino]"' in ov_backend.unavailable_reason()
    with pytest.raises(BackendUnavailable, match=r'pip install "ocr-deploy\[openvino\]"'):
        open_backend(tiny_onnx, backend="openvino")


def test_bf16_on_a_cpu_without_it_is_refused(monkeypatch, demo_irs, tmp_path):
    monkeypatch.setattr(ov_backend, "device_capabilities", lambda core, device="CPU": (
        "FP32", "INT8"))
    bf16 = demo_irs.get("bf16")
    if bf16 is not None:
        with pytest.raises(BackendUnavailable, match="has no BF16") as error:
            open_backend(bf16)
        assert "\n" not in str(error.value)
    output = tmp_path / "demo_bf16.xml"
    with pytest.raises(BackendUnavailable, match="has no BF16"):
        build_openvino(OpenVinoBuildRequest(onnx=demo_model(), output=output,
                                            precision=Precision.bf16))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def small_frames(tmp_path_factory) -> str:
    """Two small held-out frames: tiny builds are proved on these (the default frames include
    the deployment size, 1024x2048)."""
    folder = tmp_path_factory.mktemp("small_frames")
    for seed in (40, 41):
        cv2.imwrite(str(folder / f"frame_{seed}.png"), synthetic_frame(96, 160, seed=seed))
    return str(folder)


@pytest.fixture(scope="module")
def tiny_ir(tiny_onnx, small_frames, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_ir")
    return build_openvino(OpenVinoBuildRequest(onnx=tiny_onnx, output=folder / "tiny.xml",
                                               frames=small_frames)).path


def _copy_ir(ir: Path, folder: Path, *, weights: int | None) -> Path:
    """The .xml, and the first `weights` bytes of the .bin (None: all of it, 0: no .bin)."""
    xml = folder / ir.name
    shutil.copy(ir, xml)
    if weights != 0:
        data = ir.with_suffix(".bin").read_bytes()
        xml.with_suffix(".bin").write_bytes(data if weights is None else data[:weights])
    return xml


def test_ir_with_missing_or_truncated_weights(tiny_ir, tmp_path):
    missing = _copy_ir(tiny_ir, tmp_path, weights=0)
    with pytest.raises(ModelFileError, match="tiny.bin beside it and it is missing"):
        open_backend(missing)
    truncated = _copy_ir(tiny_ir, tmp_path, weights=1000)
    with pytest.raises(ModelFileError, match="has 1000 bytes .* truncated"):
        open_backend(truncated)
    assert read_meta(truncated) == read_meta(tiny_ir)  # metadata needs the .xml only


def test_ir_and_onnx_without_our_metadata(foreign_onnx, tmp_path):
    import openvino as ov

    foreign_ir = tmp_path / "foreign.xml"
    ov.save_model(ov.convert_model(str(foreign_onnx)), str(foreign_ir))
    for path in (foreign_ir, foreign_onnx):
        with pytest.raises(ModelFileError, match="no ocr-deploy metadata"):
            open_backend(path, backend="openvino")
    with pytest.raises(ModelFileError, match="no ocr-deploy metadata"):
        read_meta(foreign_ir)
    with pytest.raises(ModelFileError, match="no ocr-deploy metadata"):
        build_openvino(OpenVinoBuildRequest(onnx=foreign_onnx, output=tmp_path / "out.xml"))
    not_an_ir = tmp_path / "notes.xml"
    not_an_ir.write_text("<html><body>hello</body></html>")
    with pytest.raises(ModelFileError, match="not an OpenVINO IR"):
        open_backend(not_an_ir)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "foreign.bin", "foreign.onnx", "foreign.xml", "notes.xml"]


def test_a_build_below_the_threshold_writes_nothing(tiny_onnx, small_frames, tmp_path):
    output = tmp_path / "tiny_fp32.xml"
    with pytest.raises(VerificationError, match="nothing was written"):
        build_openvino(OpenVinoBuildRequest(onnx=tiny_onnx, output=output, frames=small_frames,
                                            min_agreement=1.01))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("options", "message"), [
    ({"precision": Precision.fp16}, "not fp16"),
    ({"format": ArtifactFormat.onnx}, "use it with --precision int8"),
    ({"calibration": "frames/"}, "--calib calibrates an INT8 build"),
    ({"output": Path("model.bin")}, "writes a .xml file"),
])
def test_build_options_that_contradict(tiny_onnx, options, message):
    with pytest.raises(ConfigError, match=message):
        build_openvino(OpenVinoBuildRequest(onnx=tiny_onnx, **options))


def test_cli_exits_1_with_one_line(tiny_ir, tmp_path):
    runner = CliRunner()
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), synthetic_frame(96, 160, seed=2))
    truncated = _copy_ir(tiny_ir, tmp_path, weights=1000)
    result = runner.invoke(app, ["infer", str(image), "--model", str(truncated),
                                 "-o", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1
    assert "truncated" in result.output and "Traceback" not in result.output
    good = runner.invoke(app, ["infer", str(image), "--model", str(tiny_ir),
                               "-o", str(tmp_path / "good"), "--no-progress"])
    assert good.exit_code == 0, good.output
    info = runner.invoke(app, ["info"])
    assert info.exit_code == 0 and re.search(r"openvino +available: openvino \d", info.output)


def test_importing_the_runtime_does_not_load_openvino():
    script = ("import sys, ocr_deploy.backends as b; from pathlib import Path; "
              "b.spec_for(Path('m.xml')); print('openvino' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


# --- INT8 through exporters.int8 ---------------------------------------------------------------

@pytest.mark.parametrize("artifact_format", [ArtifactFormat.ir, ArtifactFormat.onnx])
def test_int8_build_writes_a_runnable_artifact(tiny_onnx, small_frames, tmp_path,
                                              artifact_format):
    pytest.importorskip("exporters.int8", reason="exporters/int8.py is not there yet")
    pytest.importorskip("nncf", reason="the quantize extra is not installed")
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for seed in range(8):
        cv2.imwrite(str(calibration / f"frame_{seed}.png"), synthetic_frame(96, 160, seed=seed))
    # The tiny network has random weights: this checks the wiring; exporters.int8's own tests
    # hold the trained demo model to the 99 % gate.
    result = build_openvino(OpenVinoBuildRequest(
        onnx=tiny_onnx, precision=Precision.int8, calibration=str(calibration),
        format=artifact_format, frames=small_frames, min_agreement=0.0,
        output=tmp_path / ("tiny_int8.onnx" if artifact_format is ArtifactFormat.onnx
                           else "tiny_int8.xml")))
    assert read_meta(result.path).provenance.precision == "int8"
    assert result.check is not None and result.check.calibration_frames == 8
    assert any(label.startswith("int8 vs fp32") for label, _ in result.rows())
    backend = open_backend(result.path, backend="openvino", cache=False)
    labels = backend.run(synthetic_frame(96, 160, seed=20)[None])["labels"]
    assert labels.shape == (1, 96, 160) and backend.hint == ("bf16" if _has_bf16() else "f32")
    assert not list(tmp_path.glob(".*partial*"))


def test_build_compare_and_infer_through_the_cli(tiny_onnx, small_frames, tmp_path):
    """`build --backend openvino` writes an IR that `compare` proves against the ONNX file and
    `infer` runs by its suffix; TensorRT-only options are refused in one line."""
    runner = CliRunner()
    ir = tmp_path / "tiny_f32.xml"
    built = runner.invoke(app, ["build", str(tiny_onnx), "--backend", "openvino", "-o", str(ir),
                                "--frames", small_frames])
    assert built.exit_code == 0, built.output
    assert f"built {ir}" in built.stdout and ir.is_file() and ir.with_suffix(".bin").is_file()
    compared = runner.invoke(app, ["compare", str(tiny_onnx), str(ir), small_frames,
                                   "--min-agreement", "99.9"])
    assert compared.exit_code == 0, compared.output
    agreement = float(re.search(r"pixel agreement ([\d.]+) %", compared.stdout).group(1))
    assert agreement >= 99.9
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), synthetic_frame(96, 160, seed=3))
    inferred = runner.invoke(app, ["infer", str(image), "--model", str(ir), "-o",
                                   str(tmp_path / "out"), "--no-progress"])
    assert inferred.exit_code == 0 and "on openvino" in inferred.stderr, inferred.output
    refused = runner.invoke(app, ["build", str(tiny_onnx), "--backend", "openvino",
                                  "--shape", "96x160", "-o", str(tmp_path / "x.xml")])
    assert refused.exit_code == 1 and "--size does not apply to --backend openvino" in refused.stderr
    assert not (tmp_path / "x.xml").exists()
