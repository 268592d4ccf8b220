"""Rewrites of the exported ONNX graph so that TensorRT accepts what ONNX Runtime already runs.

TensorRT takes a UINT8 network input only into a Cast (to FLOAT or HALF) and nothing else
(NVIDIA/TensorRT#3985); torch's exporter, in a dynamic raw-frame export, also reads the input's
shape with `Shape` nodes on the uint8 tensor itself. A Cast keeps the shape, so those nodes can read
the Cast's output instead: same values, and the uint8 input then feeds the Cast alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto

from ocr_deploy.errors import ExportError

# Ops whose result depends only on their input's shape: reading the Cast's output changes nothing.
_SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
# Element types TensorRT converts a UINT8 tensor to and from.
_UINT8_PARTNERS = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16})


@dataclass(frozen=True)
class RewriteReport:
    """What `uint8_input_feeds_cast_only` changed: (input, [node names now reading its Cast])."""

    moved: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def count(self) -> int:
        return sum(len(nodes) for _, nodes in self.moved)


def _uint8_inputs(graph: onnx.GraphProto) -> list[str]:
    return [value.name for value in graph.input
            if value.type.tensor_type.elem_type == TensorProto.UINT8]


def _cast_to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((attribute.i for attribute in node.attribute if attribute.name == "to"), None)


def uint8_input_feeds_cast_only(model: onnx.ModelProto) -> RewriteReport:
    """In place: every shape-only reader of a uint8 graph input reads the input's Cast instead,
    and that Cast moves to the front of the node list (it reads only a graph input, so the order
    stays topological). Raises ExportError for a uint8 input with no Cast to FLOAT/FLOAT16, or one
    that feeds anything else (which no rewrite can keep equal)."""
    graph = model.graph
    moved = []
    for name in _uint8_inputs(graph):
        readers = [node for node in graph.node if name in node.input]
        casts = [node for node in readers if _cast_to(node) in _UINT8_PARTNERS]
        others = [node for node in readers if node not in casts]
        if not casts:
            raise ExportError(f"the uint8 input {name!r} feeds no Cast to float; TensorRT cannot "
                              "take it (please report it)")
        foreign = sorted({node.op_type for node in others} - _SHAPE_ONLY_OPS)
        if foreign:
            raise ExportError(f"the uint8 input {name!r} feeds {', '.join(foreign)} besides its "
                              "Cast; TensorRT takes a uint8 input into a Cast only (please report it)")
        cast = casts[0]
        for node in others + casts[1:]:
            for index, value in enumerate(node.input):
                if value == name:
                    node.input[index] = cast.output[0]
        graph.node.remove(cast)
        graph.node.insert(0, cast)
        moved.append((name, tuple(node.name for node in others + casts[1:])))
    return RewriteReport(tuple(moved))


def uint8_casts_via_float(model: onnx.ModelProto) -> int:
    """In place: a Cast to UINT8 from another type than FLOAT/FLOAT16 (the labels of earlier
    exports: ArgMax -> INT32 -> UINT8) gets a Cast to FLOAT in front of it.
    Exact for integers up to 2**24, far above any uint8 label. Returns how many were fixed."""
    types = _element_types(model)
    nodes = list(model.graph.node)
    fixed = 0
    for node in nodes:
        if _cast_to(node) != TensorProto.UINT8 or types.get(node.input[0]) in _UINT8_PARTNERS:
            continue
        as_float = f"{node.input[0]}_as_float"
        cast = onnx.helper.make_node("Cast", [node.input[0]], [as_float], to=TensorProto.FLOAT,
                                     name=f"{node.name or as_float}_via_float")
        model.graph.node.insert(list(model.graph.node).index(node), cast)
        node.input[0] = as_float
        fixed += 1
    return fixed


def tensorrt_io_problems(model: onnx.ModelProto) -> list[str]:
    """What TensorRT would refuse at the graph's uint8 boundaries, one line each (empty: none):
    a uint8 input read by anything but a Cast to FLOAT/FLOAT16, or a Cast to UINT8 from another
    type than FLOAT/FLOAT16 (TensorRT's DataType.UINT8 documents conversions with those only)."""
    graph = model.graph
    problems = []
    for name in _uint8_inputs(graph):
        for node in graph.node:
            if name in node.input and _cast_to(node) not in _UINT8_PARTNERS:
                problems.append(f"uint8 input {name} feeds {node.op_type} {node.name}")
    types = _element_types(model)
    for node in graph.node:
        if _cast_to(node) == TensorProto.UINT8:
            source = types.get(node.input[0])
            if source not in _UINT8_PARTNERS:
                problems.append(f"{node.name} casts {TensorProto.DataType.Name(source or 0)} to UINT8")
    return problems


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    fresh = onnx.ModelProto()
    fresh.CopyFrom(model)
    del fresh.graph.value_info[:]  # recorded types may predate an edit; infer them anew
    inferred = onnx.shape_inference.infer_shapes(fresh)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {value.name: value.type.tensor_type.elem_type for value in values}
