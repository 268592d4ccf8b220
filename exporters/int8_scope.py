"""What stays out of INT8, found by graph structure on an ONNX or an OpenVINO graph.

Three kinds of node keep float precision (why: exporters/int8.py):
- softmax islands: a Softmax feeding a MatMul, its MatMul consumers and the MatMul/scale chain
  producing it (the rule of exporters.fp16.find_fp32_islands), so the OCR gather and attention
  softmaxes and any OCNet-style self-attention;
- classifier convolutions: reached upwards from a graph output or an island softmax through
  upsampling, ArgMax, casts, reshapes and bias/scale;
- input convolutions: reached downwards from a graph input through casts, layout, the channel
  flip and the normalisation.

One walker serves both flavours through a small view of the graph: node kinds come from a
per-flavour op table, and an operand counts only when it carries frame data (constants and
values computed from shapes, such as OpenVINO's reshaped Conv biases, do not).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnx

if TYPE_CHECKING:
    import openvino as ov

# Node kinds by op type, per graph flavour. PASS ops carry their data operand 0 unchanged in
# meaning (reshapes, casts, the channel flip, the upsampling, the ArgMax); SCALE and BIAS ops
# pass their one frame-data operand through (the other is a constant or computed from shapes).
_SOFTMAX, _MATMUL, _SCALE, _BIAS, _CONV, _PASS = "softmax matmul scale bias conv pass".split()
_PASS_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice",
             "Gather")
_KINDS = {
    "onnx": {"Softmax": _SOFTMAX, "MatMul": _MATMUL, "Mul": _SCALE, "Div": _SCALE, "Add": _BIAS,
             "Sub": _BIAS, "Conv": _CONV,
             **dict.fromkeys((*_PASS_OPS, "Cast", "Resize", "Upsample", "ArgMax"), _PASS)},
    "openvino": {"Softmax": _SOFTMAX, "MatMul": _MATMUL, "Multiply": _SCALE, "Divide": _SCALE,
                 "Add": _BIAS, "Subtract": _BIAS, "Convolution": _CONV, "GroupConvolution": _CONV,
                 **dict.fromkeys((*_PASS_OPS, "Convert", "Interpolate", "TopK", "ArgMax"), _PASS)},
}


_SHAPE_SOURCES = ("Shape", "ShapeOf", "Size")  # their outputs are sizes, not frame values


@dataclass(frozen=True)
class _Node:
    name: str
    kind: str | None
    inputs: tuple[str | None, ...]  # producing node per operand; None unless frame data


@dataclass(frozen=True)
class _GraphView:
    nodes: dict[str, _Node]
    consumers: dict[str, list[str]]
    outputs: tuple[str, ...]  # nodes that produce the graph outputs
    entries: tuple[str, ...]  # nodes that read a graph input


@dataclass(frozen=True)
class KeptInFloat:
    """Nodes left out of INT8: softmax islands (Softmax, its MatMul consumers, the MatMul/scale
    chain producing it), classifier convolutions (feeding an island softmax or an output) and
    input convolutions (reading the graph input through casts, layout and normalisation)."""

    islands: tuple[tuple[str, ...], ...]
    classifiers: tuple[str, ...]
    inputs: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted({*self.classifiers, *self.inputs,
                             *(name for island in self.islands for name in island)}))

    def describe(self) -> str:
        return (f"{len(self.names)} node(s) kept in float: {len(self.islands)} softmax "
                f"island(s), {len(self.classifiers)} classifier and {len(self.inputs)} input "
                "convolution(s)")


def _onnx_view(model: onnx.ModelProto) -> _GraphView:
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    initializers = {init.name for init in graph.initializer}
    data = {value.name for value in graph.input} - initializers  # tensors of frame values
    consumers: dict[str, list[str]] = collections.defaultdict(list)
    nodes = {}
    for node in graph.node:
        inputs = tuple(producers[name].name if name in producers and name in data else None
                       for name in node.input)
        if node.op_type not in _SHAPE_SOURCES and any(name in data for name in node.input):
            data.update(node.output)
        nodes[node.name] = _Node(node.name, _KINDS["onnx"].get(node.op_type), inputs)
        for source in filter(None, inputs):
            consumers[source].append(node.name)
    outputs = tuple(producers[out.name].name for out in graph.output if out.name in producers)
    fed = {value.name for value in graph.input} - initializers
    entries = tuple(node.name for node in graph.node if fed.intersection(node.input))
    return _GraphView(nodes, consumers, outputs, entries)


def _openvino_view(model: ov.Model) -> _GraphView:
    consumers: dict[str, list[str]] = collections.defaultdict(list)
    nodes, data = {}, set()  # data: ops whose outputs carry frame values (not shapes, constants)
    for op in model.get_ordered_ops():
        name, kind = op.get_friendly_name(), op.get_type_name()
        sources = [port.get_source_output().get_node().get_friendly_name() for port in op.inputs()]
        inputs = tuple(source if source in data else None for source in sources)
        if kind == "Parameter" or (kind not in _SHAPE_SOURCES and any(inputs)):
            data.add(name)
        nodes[name] = _Node(name, _KINDS["openvino"].get(kind), inputs)
        for source in filter(None, inputs):
            consumers[source].append(name)
    outputs = tuple(result.input_value(0).get_node().get_friendly_name()
                    for result in model.get_results())
    entries = tuple(name for parameter in model.get_parameters()
                    for name in consumers[parameter.get_friendly_name()])
    return _GraphView(nodes, consumers, outputs, entries)


def _island(view: _GraphView, softmax: _Node) -> tuple[str, ...]:
    """Softmax, the MatMuls reading it, and the scale chain up to the MatMul producing it (the
    rule of exporters.fp16.find_fp32_islands, on either graph flavour)."""
    users = [name for name in view.consumers[softmax.name] if view.nodes[name].kind == _MATMUL]
    if not users:
        return ()  # a probabilities head over classes, not an island
    island = [softmax.name, *users]
    source = view.nodes.get(softmax.inputs[0] or "")
    while source is not None and source.kind in (_SCALE, _MATMUL):
        island.append(source.name)
        if source.kind == _MATMUL:
            break
        source = next((view.nodes[name] for name in source.inputs
                       if name and view.nodes[name].kind in (_SCALE, _MATMUL)), None)
    return tuple(island)


def _classifiers_above(view: _GraphView, start: str | None, through: set[str]) -> list[str]:
    """Convolutions reached upwards from `start` through nodes whose kind is in `through`."""
    found, stack, seen = [], [start], set()
    while stack:
        name = stack.pop()
        if name is None or name in seen:
            continue
        seen.add(name)
        node = view.nodes[name]
        if node.kind == _CONV:
            found.append(name)
        elif node.kind in through and node.kind in (_PASS, _SOFTMAX):
            stack.append(node.inputs[0])
        elif node.kind in through:  # a scale or bias: follow its one non-constant operand
            data = [item for item in node.inputs if item]
            stack += data if len(data) == 1 else []
    return found


def _convolutions_below(view: _GraphView) -> list[str]:
    """Convolutions reached downwards from the graph inputs through casts, layout changes, the
    channel flip and the normalisation (scale and shift)."""
    found, stack, seen = [], list(view.entries), set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        kind = view.nodes[name].kind
        if kind == _CONV:
            found.append(name)
        elif kind in (_PASS, _SCALE, _BIAS):
            stack += view.consumers[name]
    return found


def kept_in_float(model: onnx.ModelProto | ov.Model) -> KeptInFloat:
    """The softmax islands, classifier and input convolutions of an ONNX or OpenVINO graph."""
    view = _onnx_view(model) if isinstance(model, onnx.ModelProto) else _openvino_view(model)
    softmaxes = [node for node in view.nodes.values() if node.kind == _SOFTMAX]
    islands = tuple(island for island in (_island(view, node) for node in softmaxes) if island)
    heads = {_PASS, _SCALE, _BIAS, _SOFTMAX}  # upsampling, ArgMax or a probs softmax, casts
    classifiers = [conv for output in view.outputs
                   for conv in _classifiers_above(view, output, heads)]
    classifiers += [conv for island in islands
                    for conv in _classifiers_above(view, view.nodes[island[0]].inputs[0],
                                                   {_PASS, _SCALE, _BIAS})]
    return KeptInFloat(islands, tuple(dict.fromkeys(classifiers)),
                       tuple(dict.fromkeys(_convolutions_below(view))))
