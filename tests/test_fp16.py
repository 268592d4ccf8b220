"""The mixed-precision FP16 graph: islands found by structure, types checked, run on ORT CPU."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from typer.testing import CliRunner

from cli import app
from exporters.fp16 import find_fp32_islands, precision_breakdown, to_mixed_fp16
from exporters.fp16_job import ConvertRequest, run_convert
from ocr_deploy.backends import read_meta
from ocr_deploy.errors import ConfigError, VerificationError
from ocr_deploy.testframes import synthetic_frame


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    return {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}


def test_islands_are_the_two_ocr_softmaxes(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    islands = find_fp32_islands(model)
    ops = {node.name: node.op_type for node in model.graph.node}
    assert len(islands) == 2
    gather, attention = sorted(islands, key=len)
    assert sorted(ops[name] for name in gather) == ["MatMul", "Softmax"]
    assert sorted(ops[name] for name in attention) == ["MatMul", "MatMul", "Mul", "Softmax"]


def test_conversion_keeps_islands_fp32_and_io_unchanged(tiny_onnx):
    fp32 = onnx.load(str(tiny_onnx))
    fp16 = to_mixed_fp16(fp32)
    types = _types(fp16)
    names = {name for island in find_fp32_islands(fp32) for name in island}
    island_outputs = [out for node in fp16.graph.node if node.name in names for out in node.output]
    assert island_outputs and all(types[name] == TensorProto.FLOAT for name in island_outputs)
    convs = [node for node in fp16.graph.node if node.op_type == "Conv"]
    assert all(types[node.output[0]] == TensorProto.FLOAT16 for node in convs)
    assert [(v.name, v.type.tensor_type.elem_type) for v in fp16.graph.input] == [
        ("image", TensorProto.UINT8)]
    assert [(v.name, v.type.tensor_type.elem_type) for v in fp16.graph.output] == [
        ("labels", TensorProto.UINT8)]
    breakdown = precision_breakdown(fp16)
    assert breakdown.counts["fp32"] == len(names)
    assert breakdown.counts["fp16"] > 10 * breakdown.counts["fp32"]
    without = precision_breakdown(to_mixed_fp16(fp32, fp32_islands=False))
    assert "fp32" not in without.counts


def test_fp16_graph_runs_and_mostly_agrees(tiny_onnx):
    """ORT CPU runs the FP16 graph; the untrained tiny net only bounds agreement loosely here,
    the trained demo model's held-out agreement is checked in test_demo_model."""
    fp16 = to_mixed_fp16(onnx.load(str(tiny_onnx)))
    frame = synthetic_frame(96, 160, seed=4)[None]
    fp32_labels = ort.InferenceSession(str(tiny_onnx)).run(None, {"image": frame})[0]
    fp16_labels = ort.InferenceSession(fp16.SerializeToString()).run(None, {"image": frame})[0]
    assert fp16_labels.dtype == np.uint8 and fp16_labels.shape == fp32_labels.shape
    assert (fp16_labels == fp32_labels).mean() > 0.9


def test_convert_command_writes_a_proved_fp16_model(tiny_onnx, tmp_path):
    out = tmp_path / "tiny_fp16.onnx"
    result = CliRunner().invoke(app, ["convert", str(tiny_onnx), "-o", str(out),
                                      "--min-agreement", "90"])
    assert result.exit_code == 0, result.output
    assert "fp16 vs fp32" in result.stdout and "FP32 island" in result.stdout
    assert read_meta(out).provenance.precision == "fp16"
    with pytest.raises(ConfigError, match="already fp16"):
        run_convert(ConvertRequest(model=out))


def test_disagreeing_fp16_graph_is_refused(tiny_onnx, tmp_path):
    out = tmp_path / "refused.onnx"
    with pytest.raises(VerificationError, match="not FP16-safe"):
        run_convert(ConvertRequest(model=tiny_onnx, output=out, min_agreement=1.0001))
    assert not out.exists() and list(tmp_path.iterdir()) == []
