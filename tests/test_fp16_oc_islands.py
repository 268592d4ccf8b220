"""FP32 islands for OCNet's self-attention (OC blocks), found by graph structure: on a small
torch module with the OC attention pattern exported for real, on a hand-made graph without node
names, and on every model family's example network after conversion."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from exporters.fp16 import find_fp32_islands, to_mixed_fp16
from exporters.fp16_job import make_fp16
from exporters.models import FAMILIES
from exporters.onnx_files import model_meta
from ocr_deploy.testframes import synthetic_frame

CLASSES = 5


class _OCBlock(nn.Module):
    """Self-attention over all positions as OCNet's blocks compute it: query . key scaled by
    key_channels ** -0.5, softmax over positions, attention . value. `pool`: keys, queries and
    values max-pooled first and the context upsampled back (ASP-OC); `transposed`: the context
    computed as value . attention^T (a Transpose between the softmax and its MatMul)."""

    def __init__(self, channels: int = 8, key_channels: int = 4, *, pool: int = 1,
                 transposed: bool = False):
        super().__init__()
        self.query, self.key, self.value = (nn.Conv2d(channels, key_channels, 1) for _ in range(3))
        self.out = nn.Conv2d(key_channels, channels, 1)
        self.key_channels, self.pool, self.transposed = key_channels, pool, transposed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        y = F.max_pool2d(x, self.pool) if self.pool > 1 else x
        query = self.query(y).flatten(2).permute(0, 2, 1)
        key = self.key(y).flatten(2)
        value = self.value(y).flatten(2)
        similarity = F.softmax(torch.matmul(query, key) * self.key_channels ** -0.5, dim=-1)
        if self.transposed:
            context = torch.matmul(value, similarity.permute(0, 2, 1))
        else:
            context = torch.matmul(similarity, value.permute(0, 2, 1)).permute(0, 2, 1)
        context = context.reshape(batch, self.key_channels, *y.shape[2:])
        if self.pool > 1:
            context = F.interpolate(context, size=(height, width), mode="bilinear",
                                    align_corners=True)
        return self.out(context)


class _OCNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList([_OCBlock(), _OCBlock(pool=2), _OCBlock(transposed=True)])
        self.classifier = nn.Conv2d(8, CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.classifier(x)


@pytest.fixture(scope="module")
def oc_graph() -> onnx.ModelProto:
    torch.manual_seed(0)
    net = _OCNet().eval()
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=16),
            3: torch.export.Dim("width", min=16)}
    with torch.no_grad():
        program = torch.onnx.export(net, (torch.randn(2, 3, 32, 48),), dynamo=True,
                                    opset_version=18, input_names=["x"], output_names=["y"],
                                    dynamic_shapes=(dims,), verbose=False)
    return program.model_proto


def _types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    return types


def _producer(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(node for node in model.graph.node if name in node.output)


def test_islands_cover_each_oc_block(oc_graph):
    """Per block: the softmax, query . key, its scale, attention . value, and, in the transposed
    block, the Transpose between them; nothing else."""
    nodes = {node.name: node for node in oc_graph.graph.node}
    islands = find_fp32_islands(oc_graph)
    assert len(islands) == 3 == sum(node.op_type == "Softmax" for node in nodes.values())
    for island in islands:
        softmax = nodes[island[0]]
        ops = sorted(nodes[name].op_type for name in island)
        assert ops in (["MatMul", "MatMul", "Mul", "Softmax"],
                       ["MatMul", "MatMul", "Mul", "Softmax", "Transpose"])
        scale = _producer(oc_graph, softmax.input[0])
        similarity = next(_producer(oc_graph, name) for name in scale.input
                          if any(name in node.output for node in nodes.values())
                          and _producer(oc_graph, name).op_type == "MatMul")
        assert scale.op_type == "Mul" and {scale.name, similarity.name} <= set(island)
        consumers = [node for node in nodes.values() if softmax.output[0] in node.input]
        assert len(consumers) == 1 and consumers[0].name in island
        if consumers[0].op_type == "Transpose":  # value . attention^T
            product = next(node for node in nodes.values() if consumers[0].output[0] in node.input)
            assert product.op_type == "MatMul" and product.name in island
    assert sum(len(island) == 5 for island in islands) == 1


def test_oc_islands_compute_in_fp32_and_agree_with_fp32(oc_graph):
    fp16 = to_mixed_fp16(oc_graph)
    types = _types(fp16)
    island_nodes = {name for island in find_fp32_islands(oc_graph) for name in island}
    for node in fp16.graph.node:
        if node.name in island_nodes:
            assert types[node.output[0]] == TensorProto.FLOAT, (node.name, node.op_type)
        elif node.op_type == "Conv":
            assert types[node.output[0]] == TensorProto.FLOAT16, node.name
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32)
    runs = [ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            .run(None, {"x": x})[0] for model in (oc_graph, fp16)]
    scale = np.abs(runs[0]).max()
    assert np.abs(runs[0] - runs[1]).max() <= 2e-3 * scale
    assert (runs[0].argmax(1) == runs[1].argmax(1)).mean() >= 0.99


def _attention_graph(positions: int, channels: int) -> onnx.ModelProto:
    """query [P, C] . key [C, P] * C**-0.5 -> softmax -> . value [P, C], negated (an FP16 op
    after the island, as a convolution follows it in a network), with no node names."""
    scale = numpy_helper.from_array(np.array(channels ** -0.5, np.float32), "scale")
    nodes = [helper.make_node("MatMul", ["query", "key"], ["similarity"]),
             helper.make_node("Mul", ["similarity", "scale"], ["scaled"]),
             helper.make_node("Softmax", ["scaled"], ["attention"], axis=-1),
             helper.make_node("MatMul", ["attention", "value"], ["context"]),
             helper.make_node("Neg", ["context"], ["out"])]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in (
        ("query", [positions, channels]), ("key", [channels, positions]),
        ("value", [positions, channels]))]
    graph = helper.make_graph(nodes, "attention", inputs, [helper.make_tensor_value_info(
        "out", TensorProto.FLOAT, [positions, channels])], [scale])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_unnamed_attention_nodes_are_named_and_kept_fp32():
    """The converter blocks nodes by name: a graph whose nodes have none still gets its island.
    (ONNX Runtime's CPU provider computes FP16 MatMul and Softmax through FP32 kernels, so it
    cannot show FP16's underflow; the types of the converted graph are the proof here.)"""
    positions, channels = 1024, 16
    rng = np.random.default_rng(1)
    feeds = {"query": rng.normal(0, 3, (positions, channels)).astype(np.float32),
             "key": rng.normal(0, 3, (channels, positions)).astype(np.float32),
             "value": rng.normal(0, 1, (positions, channels)).astype(np.float32)}
    model = _attention_graph(positions, channels)
    assert not any(node.name for node in model.graph.node)
    fp16 = to_mixed_fp16(model)
    types = _types(fp16)
    assert all(node.name for node in fp16.graph.node)
    computing = [node for node in fp16.graph.node if node.op_type != "Cast"]
    assert [node.op_type for node in computing] == ["MatMul", "Mul", "Softmax", "MatMul", "Neg"]
    assert [types[node.output[0]] for node in computing] == [TensorProto.FLOAT] * 4 + [
        TensorProto.FLOAT16]
    outputs = [ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
               .run(None, feeds)[0] for graph in (model, fp16)]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=2e-3 * np.abs(outputs[0]).max())


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_export(request, tmp_path_factory):
    """Each family's example network (synthetic weights), exported through `export` at a static
    64x96, batch 1: Pyramid-OC's region loops take minutes to trace with dynamic sides, seconds
    without. Verified (one 64x96 pass against PyTorch, a fraction of a second): this is also the
    proof, for every family's example head, that its graph computes what PyTorch computes, which
    lets test_resnet_families.py skip the full-size CLI export of os_base_ocnet. (model, meta)."""
    from exporters.export_job import ExportRequest, run_export
    from exporters.synthetic import synthetic_model

    family = FAMILIES[request.param]
    network = synthetic_model(family.example_config(num_classes=CLASSES), seed=0,
                              calibration_size=(64, 96))
    folder = tmp_path_factory.mktemp(f"fp16_{request.param}")
    torch.save(network.state_dict(), folder / "weights.pth")
    out = folder / "model.onnx"
    result = run_export(ExportRequest(weights=folder / "weights.pth", output=out, height=64, width=96,
                                      batch=1))
    assert result.verification is not None and result.verification.passed
    assert [(check.height, check.width) for check in result.verification.checks] == [(64, 96)]
    model = onnx.load(str(out))
    return model, model_meta(model, source=str(out))


def test_every_family_converts_with_no_softmax_in_fp16(family_export):
    model, meta = family_export
    softmaxes = [node for node in model.graph.node if node.op_type == "Softmax"]
    frames = [("synthetic 64x96", synthetic_frame(64, 96, seed=3))]
    fp16, check = make_fp16(model, meta, frames, min_agreement=0.95)
    types = _types(fp16)
    converted = [node for node in fp16.graph.node if node.op_type == "Softmax"]
    assert len(converted) == len(softmaxes) and check.islands == len(softmaxes)
    for node in converted:
        assert types[node.output[0]] == TensorProto.FLOAT, (meta.network.title, node.name)
    convs = [node for node in fp16.graph.node if node.op_type == "Conv"]
    assert convs and all(types[node.output[0]] == TensorProto.FLOAT16 for node in convs)
    assert check.after.fp32_ops.get("Softmax") == len(softmaxes)
