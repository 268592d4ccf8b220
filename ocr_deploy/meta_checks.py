"""Is a model's metadata believable, and does it agree with the graph it travels with?

Metadata is JSON anyone can edit or copy onto another graph. A wrong K, class list, output
name or input format would otherwise surface as a corrupt CSV, wrong class fractions or a
multi-GB allocation. Three checks, each raising ModelFileError with what disagrees:
`check_values` (the metadata alone, when it is parsed), `check_graph` (against the graph's
inputs and outputs, when a backend opens or reads a model) and `check_labels` (on each output
of a labels graph: class ids must lie in 0..K-1, a cheap max over the network-size output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ocr_deploy.errors import ModelFileError
from ocr_deploy.vocabulary import InputFormat, OutputKind

if TYPE_CHECKING:
    from ocr_deploy.meta import ModelMeta

MAX_CLASSES = 65535  # labels PNGs are 16-bit at most
_REBUILD = "export the model again with `ocr-deploy export` (metadata and graph disagree)"
_INPUT_DTYPES = {InputFormat.raw.value: "uint8", InputFormat.normalized.value: "float32"}
_INTEGER_LABELS = {"uint8": 255, "uint16": 65535, "int32": MAX_CLASSES, "int64": MAX_CLASSES}
_FLOAT_SCORES = {"float32", "float16"}


@dataclass(frozen=True)
class TensorSig:
    """A graph input or output: name, numpy dtype name, shape (None where dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


def _is_count(value: Any, *, least: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _values_problem(meta: ModelMeta) -> str | None:
    k = meta.network.num_classes
    if not _is_count(k) or k > MAX_CLASSES:
        return f"K={k!r} is not a class count in 1..{MAX_CLASSES}"
    classes, palette = meta.dataset.classes, meta.dataset.palette
    if not isinstance(classes, tuple) or not all(isinstance(name, str) for name in classes):
        return "the class names are not a list of strings"
    if len(classes) != k:
        return f"{len(classes)} class names for K={k}"
    if not isinstance(palette, tuple) or len(palette) != k:
        return f"a palette of {len(palette) if isinstance(palette, tuple) else '?'} colours for K={k}"
    for colour in palette:
        if (not isinstance(colour, tuple) or len(colour) != 3
                or not all(_is_count(c, least=0) and c <= 255 for c in colour)):
            return f"palette entry {colour!r} is not an RGB triple of 0..255"
    spec = meta.input
    if spec.format not in _INPUT_DTYPES:
        return f"input format {spec.format!r} is not one of {', '.join(_INPUT_DTYPES)}"
    for name in ("batch", "height", "width"):
        value = getattr(spec, name)
        if value is not None and not _is_count(value):
            return f"input {name} {value!r} is not a positive integer"
    if not (_is_count(spec.min_side) and isinstance(spec.name, str)):
        return "the input name or minimum side is malformed"
    for name in ("mean", "std"):
        numbers = getattr(spec, name)
        if (not isinstance(numbers, tuple) or len(numbers) != 3
                or not all(isinstance(x, int | float) and np.isfinite(x) for x in numbers)):
            return f"input {name} {numbers!r} is not three finite numbers"
    if not all(abs(x) > 0 for x in spec.std):
        return "an input std of 0"
    output = meta.output
    if output.kind not in OutputKind.values() or not isinstance(output.name, str):
        return f"output kind {output.kind!r} is not one of {', '.join(OutputKind.values())}"
    if output.kind == OutputKind.labels and _INTEGER_LABELS.get(output.dtype, 0) < k - 1:
        return f"labels of dtype {output.dtype} cannot hold K={k} classes"
    return None


def check_values(meta: ModelMeta, *, source: str) -> ModelMeta:
    """The metadata is self-consistent (K, classes, palette, input, output); returns it."""
    problem = _values_problem(meta)
    if problem is not None:
        raise ModelFileError(f"{source} has damaged ocr-deploy metadata: {problem}; export the "
                             "model again with `ocr-deploy export`")
    return meta


def _dims(shape: tuple[int | None, ...]) -> str:
    return "x".join("?" if size is None else str(size) for size in shape)


def _input_problem(meta: ModelMeta, inputs: Sequence[TensorSig]) -> str | None:
    spec = meta.input
    graph = next((item for item in inputs if item.name == spec.name), None)
    if graph is None:
        return (f"its metadata names input {spec.name!r}, the graph has "
                f"{', '.join(repr(item.name) for item in inputs) or 'none'}")
    if graph.dtype != spec.dtype:
        return f"input format {spec.format} means {spec.dtype} input, the graph takes {graph.dtype}"
    if len(graph.shape) != 4:
        return f"input {spec.name!r} is {_dims(graph.shape)}, not 4-D ({spec.layout})"
    batch, *rest = graph.shape
    height, width, channels = (rest[0], rest[1], rest[2]) if spec.format == "raw" else (
        rest[1], rest[2], rest[0])
    if channels not in (None, 3):
        return f"input {spec.name!r} is {_dims(graph.shape)}: {channels} channels where " \
               f"format {spec.format} ({spec.layout}) has 3"
    for what, said, real in (("batch", spec.batch, batch), ("height", spec.height, height),
                             ("width", spec.width, width)):
        if said is not None and real is not None and said != real:
            return f"metadata input {what} {said}, the graph's {real}"
    return None


def _output_problem(meta: ModelMeta, outputs: Sequence[TensorSig]) -> str | None:
    spec, k = meta.output, meta.num_classes
    graph = next((item for item in outputs if item.name == spec.name), None)
    if graph is None:
        return (f"its metadata names output {spec.name!r}, the graph has "
                f"{', '.join(repr(item.name) for item in outputs) or 'none'}")
    if graph.dtype != spec.dtype:
        return f"metadata output dtype {spec.dtype}, the graph's {graph.dtype}"
    if spec.kind == OutputKind.labels:
        if len(graph.shape) != 3 or graph.dtype not in _INTEGER_LABELS:
            return (f"output kind labels is integer N x H x W, the graph's {spec.name!r} is "
                    f"{graph.dtype} {_dims(graph.shape)}")
        return None
    if len(graph.shape) != 4 or graph.dtype not in _FLOAT_SCORES:
        return (f"output kind {spec.kind} is float N x K x H x W, the graph's {spec.name!r} is "
                f"{graph.dtype} {_dims(graph.shape)}")
    if graph.shape[1] is not None and graph.shape[1] != k:
        return f"metadata K={k}, the graph's {spec.name!r} has {graph.shape[1]} channels"
    return None


def check_graph(meta: ModelMeta, inputs: Sequence[TensorSig], outputs: Sequence[TensorSig], *,
                source: str) -> ModelMeta:
    """The graph has the input and output the metadata describes; returns the metadata."""
    problem = _input_problem(meta, inputs) or _output_problem(meta, outputs)
    if problem is not None:
        raise ModelFileError(f"{source}: {problem}; {_REBUILD}")
    return meta


def onnxruntime_sigs(args: Sequence[Any]) -> list[TensorSig]:
    """TensorSigs of ONNX Runtime NodeArgs (session.get_inputs() / get_outputs())."""
    sigs = []
    for arg in args:
        dtype = str(arg.type).removeprefix("tensor(").removesuffix(")")
        dtype = {"float": "float32", "double": "float64", "float16": "float16"}.get(dtype, dtype)
        shape = tuple(size if isinstance(size, int) and size >= 0 else None
                      for size in (arg.shape or ()))
        sigs.append(TensorSig(arg.name, dtype, shape))
    return sigs


def check_session(meta: ModelMeta, session: Any, *, source: str) -> ModelMeta:
    """check_graph for an ONNX Runtime InferenceSession."""
    return check_graph(meta, onnxruntime_sigs(session.get_inputs()),
                       onnxruntime_sigs(session.get_outputs()), source=source)


def openvino_sigs(ports: Sequence[Any]) -> list[TensorSig]:
    """TensorSigs of OpenVINO model ports, one per name a port carries."""
    sigs = []
    for port in ports:
        try:
            dtype = np.dtype(port.get_element_type().to_dtype()).name
        except (TypeError, RuntimeError):
            dtype = port.get_element_type().get_type_name()
        shape = tuple(dim.get_length() if dim.is_static else None
                      for dim in port.get_partial_shape())
        sigs += [TensorSig(name, dtype, shape) for name in sorted(port.get_names())]
    return sigs


def check_labels(labels: np.ndarray, meta: ModelMeta, *, source: str = "the model") -> None:
    """Class ids of a labels output lie in 0..K-1: otherwise the graph is not the model its
    metadata describes (a foreign graph with copied metadata)."""
    if labels.size == 0:
        return
    k = meta.num_classes
    high = int(labels.max())
    low = int(labels.min()) if labels.dtype.kind == "i" else 0
    if high >= k or low < 0:
        raise ModelFileError(f"{source} produced class id {high if high >= k else low}, outside "
                             f"0..{k - 1} (K={k} in its metadata): the graph is not the model "
                             f"its metadata describes; {_REBUILD}")
