"""The exported graph's uint8 boundaries, as TensorRT needs them, for every export variant.

Every variant (input format x dynamic/static x output kind) is exported by the real DeployGraph
and torch exporter around a one-convolution stand-in network (the rewrites touch only the graph's
input and output head, and a stand-in keeps twelve exports to seconds); the graph before the
rewrite is captured and both run on ONNX Runtime, which must give identical outputs.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto
from torch import nn

import exporters.onnx_export as onnx_export
from exporters.export_job import ExportRequest, build_meta
from exporters.graph_rewrites import tensorrt_io_problems, uint8_casts_via_float, uint8_input_feeds_cast_only
from exporters.onnx_export import DeployGraph
from ocr_deploy.errors import ExportError
from ocr_deploy.preprocess import normalize_frames
from ocr_deploy.testframes import synthetic_frame

VARIANTS = list(itertools.product(("raw", "normalized"), ("dynamic", "static"),
                                  ("labels", "logits", "probs")))
STATIC = (64, 96)


class StandIn(nn.Module):
    """Where HRNet-OCR returns (auxiliary, segmentation) at stride 4, so does this."""

    def __init__(self, classes: int):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 3, stride=4, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv(x)
        return out, out


@pytest.fixture(scope="module")
def base_meta(tiny_checkpoint):
    from exporters.checkpoints import load_checkpoint

    return build_meta(load_checkpoint(tiny_checkpoint), ExportRequest(weights=tiny_checkpoint), None, [])


def _meta(base, input_format: str, size: str, kind: str, classes: int = 19):
    height, width = STATIC if size == "static" else (None, None)
    dtype = ("uint8" if classes <= 255 else "int32") if kind == "labels" else "float32"
    return dataclasses.replace(
        base, input=dataclasses.replace(base.input, format=input_format, height=height, width=width),
        output=dataclasses.replace(base.output, kind=kind, name=kind, dtype=dtype))


def _export(meta, classes: int = 19, monkeypatch=None):
    """(graph before the rewrite, graph export_graph returns)."""
    captured = []
    original = onnx_export.uint8_input_feeds_cast_only

    def capture(model):
        captured.append(copy.deepcopy(model))
        return original(model)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_export, "uint8_input_feeds_cast_only", capture)
        after = onnx_export.export_graph(StandIn(classes).eval(), meta, opset=17)
    return captured[0], after


def _feed(meta, height: int, width: int) -> np.ndarray:
    frames = np.stack([synthetic_frame(height, width, seed=seed) for seed in (1, 2)])
    return frames if meta.input.format == "raw" else normalize_frames(frames, meta.input)


def _run(model: onnx.ModelProto, feed: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: feed})


@pytest.fixture(scope="module")
def exported(base_meta):
    return {variant: (_meta(base_meta, *variant), *_export(_meta(base_meta, *variant)))
            for variant in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS, ids=["-".join(v) for v in VARIANTS])
def test_every_variant_has_tensorrt_boundaries_and_same_outputs(exported, variant):
    meta, before, after = exported[variant]
    onnx.checker.check_model(after)
    assert tensorrt_io_problems(after) == []
    (graph_input,) = after.graph.input
    readers = [node for node in after.graph.node if graph_input.name in node.input]
    if meta.input.format == "raw":
        assert graph_input.type.tensor_type.elem_type == TensorProto.UINT8
        assert [node.op_type for node in readers] == ["Cast"] and after.graph.node[0] is readers[0]
        shape_readers = [node for node in before.graph.node if graph_input.name in node.input
                         and node.op_type == "Shape"]
        assert bool(shape_readers) == (variant[1] == "dynamic")  # what the rewrite is for
    if meta.output.kind == "labels":
        casts = [node for node in after.graph.node if node.op_type == "Cast"
                 and node.attribute[0].i == TensorProto.UINT8]
        assert len(casts) == 1 and after.graph.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    height, width = STATIC if variant[1] == "static" else (72, 104)
    feed = _feed(meta, height, width)
    old, new = _run(before, feed), _run(after, feed)
    assert len(old) == len(new)
    for a, b in zip(old, new, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    with torch.no_grad():
        logits = DeployGraph(StandIn(19).eval(), meta).eval()(torch.from_numpy(feed))[-1].numpy()
    if meta.output.kind == "labels":
        assert new[0].dtype == np.uint8 and np.array_equal(new[0], logits.argmax(1))


def test_old_int32_to_uint8_labels_are_fixed_and_equal(exported):
    """A graph in the earlier form (ArgMax -> INT32 -> UINT8) is flagged, then rewritten."""
    _, _, after = exported[("raw", "dynamic", "labels")]
    old = copy.deepcopy(after)
    to_float = next(node for node in old.graph.node if node.op_type == "Cast"
                    and node.attribute[0].i == TensorProto.FLOAT and node.input[0] != "image")
    to_float.attribute[0].i = TensorProto.INT32
    del old.graph.value_info[:]  # the recorded float type no longer holds
    assert any("casts INT32 to UINT8" in line for line in tensorrt_io_problems(old))
    fixed = copy.deepcopy(old)
    assert uint8_casts_via_float(fixed) == 1 and tensorrt_io_problems(fixed) == []
    onnx.checker.check_model(fixed)
    feed = synthetic_frame(40, 56, seed=3)[None]
    assert np.array_equal(_run(old, feed)[0], _run(fixed, feed)[0])
    assert uint8_casts_via_float(fixed) == 0  # idempotent


def test_wide_labels_stay_int32(base_meta):
    meta = _meta(base_meta, "raw", "dynamic", "labels", classes=300)
    _, after = _export(meta, classes=300)
    feed = synthetic_frame(48, 64, seed=5)[None]
    labels = _run(after, feed)[0]
    with torch.no_grad():
        logits = DeployGraph(StandIn(300).eval(), meta).eval()(torch.from_numpy(feed))[-1].numpy()
    assert labels.dtype == np.int32 and np.array_equal(labels, logits.argmax(1))
    assert tensorrt_io_problems(after) == []


def test_a_uint8_input_feeding_other_ops_is_refused(exported):
    _, _, after = exported[("raw", "dynamic", "logits")]
    broken = copy.deepcopy(after)
    broken.graph.node.append(onnx.helper.make_node("Identity", ["image"], ["copy"], name="stray"))
    assert any("feeds Identity stray" in line for line in tensorrt_io_problems(broken))
    with pytest.raises(ExportError, match="feeds Identity besides its Cast"):
        uint8_input_feeds_cast_only(broken)


def test_the_real_tiny_export_is_tensorrt_ready(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    assert tensorrt_io_problems(model) == []
    assert [node.op_type for node in model.graph.node if "image" in node.input] == ["Cast"]


def test_the_mixed_fp16_graph_keeps_tensorrt_boundaries(tiny_onnx):
    """FP16 conversion turns the labels' float32 step into float16 (exact up to 2048 classes)."""
    from exporters.fp16 import to_mixed_fp16

    fp32 = onnx.load(str(tiny_onnx))
    fp16 = to_mixed_fp16(fp32)
    assert tensorrt_io_problems(fp16) == []
    frame = synthetic_frame(64, 96, seed=6)[None]
    labels = _run(fp16, frame)[0]
    assert labels.dtype == np.uint8 and (labels == _run(fp32, frame)[0]).mean() > 0.9
