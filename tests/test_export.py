"""Export options on a tiny real network, checked by running the files on ONNX Runtime."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from exporters.checkpoints import load_checkpoint
from exporters.export_job import ExportRequest, build_meta, run_export
from exporters.onnx_export import DeployGraph, export_graph
from exporters.verify import verify_export
from ocr_deploy.backends import read_meta
from ocr_deploy.errors import ConfigError
from ocr_deploy.testframes import synthetic_frame


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch_graph(checkpoint_path, request: ExportRequest) -> DeployGraph:
    checkpoint = load_checkpoint(checkpoint_path)
    return DeployGraph(checkpoint.build_model(), build_meta(checkpoint, request, None, [])).eval()


def test_default_export_is_dynamic_uint8_labels(tiny_onnx, tiny_checkpoint):
    session = _session(tiny_onnx)
    (image,) = session.get_inputs()
    assert image.type == "tensor(uint8)" and image.shape == ["batch", "height", "width", 3]
    assert [o.name for o in session.get_outputs()] == ["labels"]
    graph = _torch_graph(tiny_checkpoint, ExportRequest(weights=tiny_checkpoint))
    for batch, height, width in [(1, 96, 160), (2, 77, 131), (1, 32, 32)]:
        frames = np.stack([synthetic_frame(height, width, seed=i) for i in range(batch)])
        labels = session.run(None, {"image": frames})[0]
        assert labels.dtype == np.uint8 and labels.shape == (batch, height, width)
        with torch.no_grad():
            expected = graph(torch.from_numpy(frames))[0].numpy()
        assert (labels == expected).mean() >= 0.999


def test_metadata_round_trip(tiny_onnx, tiny_checkpoint):
    meta = read_meta(tiny_onnx)
    assert meta.network.variant == "tiny" and meta.num_classes == 19
    assert meta.dataset.name == "cityscapes" and len(meta.dataset.palette) == 19
    assert meta.input.format == "raw" and meta.output.dtype == "uint8"
    from ocr_deploy.fileio import sha256_of

    assert meta.provenance.checkpoint_sha256 == sha256_of(tiny_checkpoint)
    model = onnx.load(str(tiny_onnx))
    assert model.opset_import[0].version == 17
    assert any(entry.key == "ocr_deploy" for entry in model.metadata_props)


def test_normalized_input_and_logits_match_raw(export_tiny, tiny_onnx):
    out = export_tiny(input_format="normalized", output_kind="logits")
    session = _session(out)
    assert session.get_inputs()[0].type == "tensor(float)"
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    frame = synthetic_frame(90, 150, seed=3)[None]
    from ocr_deploy.preprocess import normalize_frames

    logits = session.run(None, {"image": normalize_frames(frame, read_meta(out).input)})[0]
    assert logits.dtype == np.float32 and logits.shape == (1, 19, 90, 150)
    labels = _session(tiny_onnx).run(None, {"image": frame})[0]
    assert (logits.argmax(1) == labels).mean() >= 0.999


def test_probs_output_sums_to_one(tiny_checkpoint, tmp_path):
    """Static 64x64: the output kind is independent of dynamic sides (one small verification)."""
    out = tmp_path / "probs.onnx"
    run_export(ExportRequest(weights=tiny_checkpoint, output=out, output_kind="probs", height=64, width=64))
    probs = _session(out).run(None, {"image": synthetic_frame(64, 64)[None]})[0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_static_shape_export(export_tiny, tiny_checkpoint):
    """The file test_segmenter.py opens too (one export per run); run_export verified it at
    verification_shapes(its input), which must be its one static shape."""
    from exporters.verify import verification_shapes

    out = export_tiny(height=96, width=128, batch=2)
    assert verification_shapes(read_meta(out).input) == [(2, 96, 128)]
    session = _session(out)
    assert session.get_inputs()[0].shape == [2, 96, 128, 3]
    assert session.run(None, {"image": np.zeros((2, 96, 128, 3), np.uint8)})[0].shape == (2, 96, 128)
    with pytest.raises(Exception, match="(?i)invalid dimensions"):  # ORT's own exception type
        session.run(None, {"image": np.zeros((1, 64, 64, 3), np.uint8)})


def test_many_classes_give_int32_labels(tmp_path):
    from exporters.synthetic import save_release, synthetic_model
    from exporters.variants import OcrConfig

    config = OcrConfig.from_variant("tiny", num_classes=300, mid_channels=16, key_channels=8)
    path = save_release(synthetic_model(config), tmp_path / "k300.pth")
    result = run_export(ExportRequest(weights=path, output=tmp_path / "k300.onnx", height=64, width=64))
    assert result.meta.output.dtype == "int32" and result.meta.dataset.name == "generic"
    assert any("generic class names" in note for note in result.notes)
    labels = _session(tmp_path / "k300.onnx").run(None, {"image": synthetic_frame(64, 64)[None]})[0]
    assert labels.dtype == np.int32 and labels.max() < 300


def test_opset_18_and_simplify(tiny_checkpoint, tmp_path):
    # Static 64x64 (a third of a dynamic export's time); dynamic axes are proved by the default
    # export's test, and this one's verification still compares the slimmed graph with PyTorch.
    out = tmp_path / "slim.onnx"
    result = run_export(ExportRequest(weights=tiny_checkpoint, output=out, opset=18,
                                      simplify=True, height=64, width=64))
    assert onnx.load(str(out)).opset_import[0].version == 18
    assert result.verification.passed
    assert any("onnxslim" in note for note in result.notes)


def test_verification_catches_a_wrong_graph(tiny_checkpoint):
    """A graph exported with the other align_corners must fail against the true model; the
    export leaves the network in eval mode (checked on the right graph's network)."""
    checkpoint = load_checkpoint(tiny_checkpoint)
    # Static 64x64: two static traces and one small verification each (dynamic ones cost ~3x).
    meta = build_meta(checkpoint, ExportRequest(weights=tiny_checkpoint, height=64, width=64), None, [])
    wrong_meta = dataclasses.replace(
        meta, network=dataclasses.replace(meta.network, align_corners=False))
    wrong_graph = export_graph(checkpoint.build_model(), wrong_meta, opset=17)
    model = checkpoint.build_model()
    right_graph = export_graph(model, meta, opset=17)
    assert not any(module.training for module in model.modules())
    truth = DeployGraph(checkpoint.build_model(), meta).eval()
    assert verify_export(truth, right_graph, meta).passed
    failed = verify_export(truth, wrong_graph, meta)
    assert not failed.passed and failed.worst_delta > 1e-3


def test_failed_verification_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    import exporters.onnx_export as onnx_export
    from ocr_deploy.errors import VerificationError

    original = onnx_export.export_graph

    def export_with_wrong_resize(network, meta, *, opset):
        wrong = dataclasses.replace(meta.network, align_corners=not meta.network.align_corners)
        return original(network, dataclasses.replace(meta, network=wrong), opset=opset)

    monkeypatch.setattr(onnx_export, "export_graph", export_with_wrong_resize)
    out = tmp_path / "wrong.onnx"
    with pytest.raises(VerificationError, match="disagrees with PyTorch"):
        run_export(ExportRequest(weights=tiny_checkpoint, output=out, height=64, width=64))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options,message", [
    (dict(height=96), "--height and --width together"),
    (dict(height=16, width=64), "at least 32"),
    (dict(batch=0), "--batch must be at least 1"),
    (dict(opset=12), "--opset 12 is not supported"),
    (dict(simplify=True, verify=False), "drop --no-verify"),
    (dict(dataset="ade20k"), "--dataset ade20k has 150 classes but the model predicts 19"),
])
def test_bad_options(tiny_checkpoint, tmp_path, options, message):
    out = tmp_path / "x.onnx"
    with pytest.raises(ConfigError, match=message):
        run_export(ExportRequest(weights=tiny_checkpoint, output=out, **options))
    assert not out.exists()
