"""Forward hooks on the network the export uses: they read the object-context block's own
softmaxes while it runs, so every number explain shows is the network's, not a re-computation.

OCR: `SpatialGather.soft_regions` (the K soft object regions, a softmax over positions per
class) and `RelationSoftmax` (each pixel's relation to the K regions). OCNet: each
`SelfAttentionBlock`'s `similarity` softmax (one row per query position; Pyramid-OC runs it once
per corner of its partition, see `PyramidSelfAttentionBlock.corner_spans`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from exporters.explain.request import ExplainError
from exporters.hrnet_ocr import RelationSoftmax, SpatialGather
from exporters.oc_heads import PyramidSelfAttentionBlock, SelfAttentionBlock

Cell = tuple[int, int]  # (row, column) on a feature grid
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass
class OcrCapture:
    """`soft_regions` [K, h, w]: sums to 1 over positions per class; `relations` [h, w, K]: sums
    to 1 over regions per pixel."""

    soft_regions: np.ndarray
    relations: np.ndarray

    @property
    def grid(self) -> tuple[int, int]:
        return self.soft_regions.shape[1], self.soft_regions.shape[2]


@dataclass
class AttentionStage:
    """One self-attention block: `grid` is the map it attends over (after its max-pool), `parts`
    its pyramid partition (1: every position). `calls` holds the similarity softmax of each call,
    [batch * regions, n, n], in the order the block made them."""

    name: str
    parts: int
    pool: int
    grid: tuple[int, int] = (0, 0)
    calls: list[torch.Tensor] = field(default_factory=list)
    spans: Any = None  # PyramidSelfAttentionBlock.corner_spans of the grid, or None

    def cell(self, fraction_y: float, fraction_x: float) -> Cell:
        """The grid cell under a point given as fractions of the input's height and width."""
        height, width = self.grid
        return min(int(fraction_y * height), height - 1), min(int(fraction_x * width), width - 1)

    def row(self, cell: Cell) -> np.ndarray:
        """The attention of `cell` over the grid [h, w]: its softmax row, placed where its
        partition region lies (zero elsewhere: a pyramid region attends only inside itself)."""
        y, x = cell
        full = np.zeros(self.grid, dtype=np.float64)
        if self.spans is None:
            weights = self.calls[0][0, y * self.grid[1] + x]
            full[:] = weights.double().numpy().reshape(self.grid)
            return full
        row_spans, column_spans = self.spans
        for index, (row_span, _, block_h) in enumerate(row_spans):
            for column_index, (column_span, columns, block_w) in enumerate(column_spans):
                if not (row_span.start <= y < row_span.stop and column_span.start <= x < column_span.stop):
                    continue
                block_row, block_column = (y - row_span.start) // block_h, (x - column_span.start) // block_w
                top = row_span.start + block_row * block_h
                left = column_span.start + block_column * block_w
                weights = self.calls[2 * index + column_index][block_row * columns + block_column]
                position = (y - top) * block_w + (x - left)
                block = weights[position].double().numpy().reshape(block_h, block_w)
                full[top:top + block_h, left:left + block_w] = block
                return full
        raise ValueError(f"cell {cell} lies outside the {self.grid} grid")


@dataclass
class OcCapture:
    stages: list[AttentionStage]


@dataclass
class NetworkOutputs:
    """The raw network outputs ([aux, out] at the feature stride) of the last forward."""

    outputs: list[torch.Tensor] = field(default_factory=list)


def context_kind(network: nn.Module) -> str | None:
    """'ocr', 'ocnet', or None when the network has no object-context block."""
    modules = list(network.modules())
    if any(isinstance(module, SpatialGather) for module in modules):
        return "ocr"
    if any(isinstance(module, SelfAttentionBlock) for module in modules):
        return "ocnet"
    return None


def _only(network: nn.Module, kind: type[ModuleT]) -> ModuleT:
    found = [module for module in network.modules() if isinstance(module, kind)]
    if len(found) != 1:
        raise ExplainError(f"expected one {kind.__name__} in the network, found {len(found)}; "
                           "explain reads exactly one object-context block (please report it)")
    return found[0]


@contextmanager
def capture_ocr(network: nn.Module) -> Iterator[tuple[OcrCapture, NetworkOutputs]]:
    """Hooks on the gather softmax and the relation softmax while the block is open; the
    capture is filled by the first forward inside it."""
    gather = _only(network, SpatialGather)
    relation = _only(network, RelationSoftmax)
    capture = OcrCapture(np.zeros((0, 0, 0)), np.zeros((0, 0, 0)))
    grid: list[tuple[int, int]] = []
    outputs = NetworkOutputs()

    def on_gather(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        height, width = inputs[1].shape[-2:]
        grid[:] = [(int(height), int(width))]

    def on_regions(_: nn.Module, __: Any, weights: torch.Tensor) -> None:
        capture.soft_regions = weights[0].detach().double().numpy().reshape(-1, *grid[0])

    def on_relation(_: nn.Module, __: Any, weights: torch.Tensor) -> None:
        height, width = grid[0]
        capture.relations = weights[0].detach().double().numpy().reshape(height, width, -1)

    handles = [gather.register_forward_pre_hook(on_gather),
               gather.soft_regions.register_forward_hook(on_regions),
               relation.register_forward_hook(on_relation),
               _outputs_hook(network, outputs)]
    try:
        yield capture, outputs
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_ocnet(network: nn.Module) -> Iterator[tuple[OcCapture, NetworkOutputs]]:
    """Hooks on every self-attention block (its input size) and its similarity softmax."""
    capture, outputs, handles = OcCapture([]), NetworkOutputs(), []
    for name, block in network.named_modules():
        if not isinstance(block, SelfAttentionBlock):
            continue
        parts = block.parts if isinstance(block, PyramidSelfAttentionBlock) else 1
        stage = AttentionStage(name=name, parts=parts, pool=block.pool)
        capture.stages.append(stage)
        handles.append(block.register_forward_pre_hook(_size_hook(block, stage)))
        handles.append(block.similarity.register_forward_hook(_weights_hook(stage)))
    handles.append(_outputs_hook(network, outputs))
    try:
        yield capture, outputs
    finally:
        for handle in handles:
            handle.remove()


def _size_hook(block: SelfAttentionBlock, stage: AttentionStage) -> Any:
    def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        height, width = inputs[0].shape[-2:]
        if block.pool > 1:  # max_pool2d floors
            height, width = height // block.pool, width // block.pool
        stage.grid = (int(height), int(width))
        stage.calls.clear()
        if isinstance(block, PyramidSelfAttentionBlock) and block.parts > 1:
            stage.spans = block.corner_spans(int(height), int(width))
    return hook


def _weights_hook(stage: AttentionStage) -> Any:
    def hook(_: nn.Module, __: Any, weights: torch.Tensor) -> None:
        stage.calls.append(weights.detach())
    return hook


def _outputs_hook(network: nn.Module, outputs: NetworkOutputs) -> Any:
    def hook(_: nn.Module, __: Any, result: Any) -> None:
        outputs.outputs = [tensor.detach() for tensor in result]
    return network.register_forward_hook(hook)
