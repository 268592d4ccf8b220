"""Mixed-precision ONNX for strongly typed TensorRT: FP16 everywhere except the softmax islands.

HRNet-OCR has two softmaxes that FP16 cannot hold: the gather softmax runs over every pixel of
the 1/4 map, so most of its probabilities fall below FP16's normal range, and the attention
softmax over the K regions sits between two MatMuls. OCNet's OC blocks (Base-OC, Pyramid-OC,
ASP-OC) have the same shape at a larger scale: a query-key similarity over all positions,
scaled, a softmax over thousands of positions, then attention times value. Each island (the
Softmax, the MatMuls that consume it, the Mul/Div chain and MatMul that produce it, and the
layout-only ops in between: a transposed attention map, say) stays FP32; the rest becomes FP16.
Islands are found by graph structure alone, never by node names.

Conversion uses onnxconverter-common's float16 converter: pure Python, no torch or CUDA, and it
keeps adjacent blocked nodes FP32 end to end (onnxruntime.transformers' fork rounds between
them, ModelOpt AutoCast imports torch and pins onnx). Its known gaps are handled here: Cast
nodes to FLOAT are blocked (its issue #320), float initializers shared across the FP16/FP32
boundary are untied, and Resize leaves the block list only when no Resize carries float scales.
"""

from __future__ import annotations

import collections
import warnings
from dataclasses import dataclass

import onnx
from onnx import TensorProto

from ocr_deploy.errors import ExportError
from ocr_deploy.meta import META_KEY
from ocr_deploy.vocabulary import Precision

_PRODUCTS = ("MatMul", "Einsum")  # the similarity (query . key) and attention . value
_SCALES = ("Mul", "Div")  # the similarity's scale, key_channels ** -0.5 or 1 / sqrt(channels)
# Ops that only move values: between a softmax and its products they must stay FP32 too, or the
# converter would round the attention map to FP16 on its way.
_LAYOUT_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
_FLOAT_TYPES = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16"}
_SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape", "Cast",
              "Constant", "Transpose", "Identity", "ConstantOfShape"}


@dataclass(frozen=True)
class PrecisionBreakdown:
    """How many nodes compute in each type, and which ops stayed FP32."""

    counts: dict[str, int]  # precision -> nodes
    fp32_ops: dict[str, int]  # op type -> FP32 nodes

    def describe(self) -> str:
        parts = ", ".join(f"{count} {kind}" for kind, count in sorted(self.counts.items()))
        fp32 = ", ".join(f"{op} x{count}" for op, count in sorted(self.fp32_ops.items()))
        return f"{parts} nodes" + (f"; FP32: {fp32}" if fp32 else "")


def _graph_index(graph: onnx.GraphProto) -> tuple[dict, dict]:
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    return producers, consumers


def _consumer_paths(softmax: onnx.NodeProto, consumers: dict) -> list[str]:
    """The products reading the softmax, directly or through layout-only ops, and those ops."""
    found: list[str] = []
    frontier = [(user, ()) for user in consumers[softmax.output[0]]]
    while frontier:
        user, path = frontier.pop()
        if user.op_type in _PRODUCTS:
            found += [*path, user.name]
        elif user.op_type in _LAYOUT_OPS:
            frontier += [(after, (*path, user.name)) for after in consumers[user.output[0]]]
    return list(dict.fromkeys(found))


def _producer_chain(softmax: onnx.NodeProto, producers: dict) -> list[str]:
    """The scale chain and product computing the softmax's input, through layout-only ops; empty
    when the input comes from anything else (e.g. the OCR gather's reshaped class scores)."""
    chain: list[str] = []
    pending: list[str] = []  # layout ops kept only if a scale or product lies beyond them
    source = producers.get(softmax.input[0])
    while source is not None:
        if source.op_type in _LAYOUT_OPS:
            pending.append(source.name)
            source = producers.get(source.input[0])
            continue
        if source.op_type not in (*_PRODUCTS, *_SCALES):
            break
        chain += [*pending, source.name]
        pending = []
        if source.op_type in _PRODUCTS:
            break
        # a scale may sit on either side of the Mul/Div: follow the operand a node produced
        source = next((producers[name] for name in source.input if name in producers
                       and producers[name].op_type in (*_PRODUCTS, *_SCALES, *_LAYOUT_OPS)), None)
    return chain


def find_fp32_islands(model: onnx.ModelProto) -> list[list[str]]:
    """Node names of each Softmax that feeds a MatMul (or Einsum), with its consumers and the
    chain producing it (see the module docstring). Nodes must have names (to_mixed_fp16 names
    unnamed ones first)."""
    producers, consumers = _graph_index(model.graph)
    islands = []
    for node in model.graph.node:
        if node.op_type != "Softmax":
            continue
        users = _consumer_paths(node, consumers)
        if not users:
            continue  # e.g. the probs head over classes: FP16 is fine there
        islands.append([node.name, *users, *_producer_chain(node, producers)])
    return islands


def _name_unnamed_nodes(model: onnx.ModelProto) -> None:
    """The converter blocks nodes by name: give every unnamed node a unique one."""
    taken = {node.name for node in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type.lower()}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def _untie_shared_initializers(model: onnx.ModelProto, blocked: set[str]) -> None:
    """Give FP32 nodes their own copy of float initializers that FP16 nodes also read."""
    initializers = {init.name: init for init in model.graph.initializer
                    if init.data_type == TensorProto.FLOAT}
    readers: dict[str, set[bool]] = collections.defaultdict(set)
    for node in model.graph.node:
        for name in node.input:
            if name in initializers:
                readers[name].add(node.name in blocked)
    for name, sides in readers.items():
        if len(sides) < 2:
            continue
        copy = onnx.TensorProto()
        copy.CopyFrom(initializers[name])
        copy.name = f"{name}_fp32"
        model.graph.initializer.append(copy)
        for node in model.graph.node:
            if node.name in blocked:
                node.input[:] = [copy.name if item == name else item for item in node.input]


def _op_block_list(model: onnx.ModelProto, default: list[str]) -> list[str]:
    """Resize can run in FP16 when it is driven by integer `sizes`, never by float scales/roi."""
    # Resize inputs are (X, roi, scales, sizes); roi and scales are float tensors.
    float_driven = any(node.op_type == "Resize" and any(node.input[1:3]) for node in model.graph.node)
    return default if float_driven else [op for op in default if op != "Resize"]


def to_mixed_fp16(model: onnx.ModelProto, *, fp32_islands: bool = True) -> onnx.ModelProto:
    """FP16 weights and activations, softmax islands in FP32, graph inputs/outputs unchanged."""
    from onnxconverter_common import float16

    work = onnx.ModelProto()
    work.CopyFrom(model)
    _name_unnamed_nodes(work)
    blocked = {name for island in find_fp32_islands(work) for name in island} if fp32_islands else set()
    blocked |= {node.name for node in work.graph.node if node.op_type == "Cast"
                and any(attr.name == "to" and attr.i == TensorProto.FLOAT for attr in node.attribute)}
    _untie_shared_initializers(work, blocked)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clamping notices; weights beyond FP16 range are rare
        converted = float16.convert_float_to_float16(
            work, keep_io_types=True, min_positive_val=5.96e-08, max_finite_val=65504.0,
            op_block_list=_op_block_list(work, float16.DEFAULT_OP_BLOCK_LIST),
            node_block_list=sorted(blocked))
    _check_converted(model, converted, blocked)
    _mark_precision(converted, fp32_islands=fp32_islands)
    return converted


def _check_converted(original: onnx.ModelProto, converted: onnx.ModelProto,
                     blocked: set[str]) -> None:
    inferred = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
    types = _tensor_types(inferred)
    for node in inferred.graph.node:
        if node.name in blocked and node.op_type != "Cast":
            wrong = [name for name in node.output if types.get(name) != TensorProto.FLOAT]
            if wrong:
                raise ExportError(f"FP16 conversion left FP32 island node {node.name} with "
                                  f"non-FP32 output {wrong[0]}; please report it")
    before = [(v.name, v.type.tensor_type.elem_type) for v in (*original.graph.input,
                                                               *original.graph.output)]
    after = [(v.name, v.type.tensor_type.elem_type) for v in (*converted.graph.input,
                                                              *converted.graph.output)]
    if before != after:
        raise ExportError("FP16 conversion changed the graph's inputs or outputs; please report it")


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    return types


def _mark_precision(model: onnx.ModelProto, *, fp32_islands: bool) -> None:
    """Record the conversion in the model's metadata (when it has ocr-deploy metadata)."""
    from exporters.onnx_files import model_meta, write_meta

    if not any(entry.key == META_KEY for entry in model.metadata_props):
        return
    meta = model_meta(model, source="the converted graph")
    write_meta(model, meta.with_precision(Precision.fp16, fp32_islands=fp32_islands))


def precision_breakdown(model: onnx.ModelProto) -> PrecisionBreakdown:
    """Compute nodes by the type they compute in (shape plumbing counted apart)."""
    types = _tensor_types(onnx.shape_inference.infer_shapes(model))
    counts: collections.Counter[str] = collections.Counter()
    fp32_ops: collections.Counter[str] = collections.Counter()
    for node in model.graph.node:
        if node.op_type in _SHAPE_OPS:
            counts["shape/cast"] += 1
            continue
        kind = next((_FLOAT_TYPES[types[name]] for name in (*node.output, *node.input)
                     if types.get(name) in _FLOAT_TYPES), "integer")
        counts[kind] += 1
        if kind == "fp32":
            fp32_ops[node.op_type] += 1
    return PrecisionBreakdown(dict(counts), dict(fp32_ops))
