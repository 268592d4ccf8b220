"""The deployable graph (pre-processing, network, upsampling, output head) and its ONNX export."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from exporters.graph_rewrites import uint8_input_feeds_cast_only
from exporters.models import family_named
from exporters.models.base import ChannelOrder
from exporters.onnx_files import LOGITS, write_meta
from ocr_deploy.errors import ExportError
from ocr_deploy.meta import InputSpec, ModelMeta

if TYPE_CHECKING:
    import onnx

# Tracing size for dynamic exports: any size >= 32 works; 2 avoids batch-1 specialisation.
_EXAMPLE_BATCH, _EXAMPLE_HEIGHT, _EXAMPLE_WIDTH = 2, 256, 320
_TORCH_DTYPES = {"uint8": torch.uint8, "int32": torch.int32}
# Loggers that narrate the exporter's internals (opset fallback, torchvision ops, guards).
_CHATTY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "torch._guards",
                   "onnxscript")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[io.StringIO]:
    """Silence progress prints, warnings and info logs; errors still raise."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    captured = io.StringIO()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured):
            warnings.simplefilter("ignore")
            yield captured
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class DeployGraph(nn.Module):
    """frame -> network -> segmentation upsampled to the input size -> labels, logits or probs.

    The family's output contract (from meta.network) says which network output is the
    segmentation, how to upsample it and which channel order the network reads. Auxiliary heads
    stay inside the network (OCR's soft object regions need them); only the segmentation is used.
    """

    def __init__(self, network: nn.Module, meta: ModelMeta):
        super().__init__()
        contract = family_named(meta.network.family).output_contract(meta.network)
        self.network = network
        self.segmentation_index = contract.segmentation_index
        self.upsample = contract.output_stride != 1
        self.align_corners = contract.align_corners
        self.raw_input = meta.input.format == "raw"
        # Raw frames arrive BGR, normalised input RGB; either is turned into the network's order.
        network_bgr = contract.normalisation.channels is ChannelOrder.bgr
        self.flip_raw, self.flip_normalized = not network_bgr, network_bgr
        self.output_kind = meta.output.kind
        self.labels_dtype = _TORCH_DTYPES.get(meta.output.dtype, torch.float32)
        mean = torch.tensor(meta.input.mean).view(1, 3, 1, 1)  # RGB order
        std = torch.tensor(meta.input.std).view(1, 3, 1, 1)
        if network_bgr:
            mean, std = mean.flip(1), std.flip(1)
        # (x/255 - mean)/std folded into one multiply-add per pixel.
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.raw_input:
            # NHWC uint8 -> NCHW float (float64 when verification runs in double). The cast
            # comes first: TensorRT takes UINT8 only as a network input or output.
            x = image.to(self.scale.dtype).permute(0, 3, 1, 2)
            x = (x.flip(1) if self.flip_raw else x) * self.scale + self.shift
        else:
            x = image.flip(1) if self.flip_normalized else image
        logits = self.network(x)[self.segmentation_index]
        if self.upsample:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear",
                                   align_corners=self.align_corners)
        if self.output_kind == "labels":
            return _labels(logits.argmax(dim=1), self.labels_dtype), logits
        if self.output_kind == "probs":
            return torch.softmax(logits, dim=1), logits
        return (logits,)


def _labels(indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ArgMax indices (int64) as the labels dtype, through casts TensorRT accepts: its
    DataType.UINT8 converts only to and from FLOAT/HALF (not INT32), so uint8 labels go through
    float32, exact for every class id up to 2**24 (and K <= 255 here; FP16 conversion turns it
    into float16, exact up to 2048). Wider labels keep int32, which TensorRT's ArgMax yields."""
    if dtype == torch.uint8:
        return indices.to(torch.float32).to(torch.uint8)
    return indices.to(torch.int32).to(dtype)


def example_input(spec: InputSpec) -> torch.Tensor:
    batch = spec.batch or _EXAMPLE_BATCH
    height = spec.height or _EXAMPLE_HEIGHT
    width = spec.width or _EXAMPLE_WIDTH
    if spec.format == "raw":
        return torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8)
    return torch.randn(batch, 3, height, width)


def _dynamic_shapes(spec: InputSpec) -> tuple[dict[int, torch.export.Dim], ...]:
    height_axis, width_axis = (1, 2) if spec.format == "raw" else (2, 3)
    dims: dict[int, torch.export.Dim] = {}
    if spec.batch is None:
        dims[0] = torch.export.Dim("batch", min=1)
    if spec.height is None:
        dims[height_axis] = torch.export.Dim("height", min=spec.min_side)
    if spec.width is None:
        dims[width_axis] = torch.export.Dim("width", min=spec.min_side)
    return (dims,)


def output_names(meta: ModelMeta) -> list[str]:
    if meta.output.kind == "logits":
        return [LOGITS]
    return [meta.output.name, LOGITS]


def export_graph(network: nn.Module, meta: ModelMeta, *, opset: int) -> onnx.ModelProto:
    """Export with torch's dynamo exporter; the result still carries the verification output."""
    graph = DeployGraph(network, meta).eval()
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                graph, (example_input(meta.input),), dynamo=True, opset_version=opset,
                input_names=[meta.input.name], output_names=output_names(meta),
                dynamic_shapes=_dynamic_shapes(meta.input), verbose=False)
    except Exception as error:  # the exporter raises many private types; keep its first line
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch.onnx.export failed: {detail[:200]}") from error
    finally:
        # The exporter may restore training flags; the graph we verify must stay in eval mode.
        graph.eval()
    model = program.model_proto
    uint8_input_feeds_cast_only(model)  # TensorRT: a uint8 input may feed its Cast only
    model.producer_name = "ocr-deploy"
    model.producer_version = meta.provenance.toolkit_version
    write_meta(model, meta)
    return model


def without_verification_output(model: onnx.ModelProto, meta: ModelMeta) -> onnx.ModelProto:
    """The file users get: logits stay a graph output only when they are what was asked for."""
    import onnx

    final = onnx.ModelProto()
    final.CopyFrom(model)
    if meta.output.kind != "logits":
        for output in list(final.graph.output):
            if output.name == LOGITS:
                final.graph.output.remove(output)
    return final
