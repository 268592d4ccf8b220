"""One explained frame: the frame, both label maps, and per chosen pixel the numbers the figures
and explain.json show, taken from the hooks' capture (exporters/explain/capture.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.explain.capture import AttentionStage, Cell, OcCapture, OcrCapture
from exporters.explain.pixels import ChosenPixel


@dataclass(frozen=True)
class StageMap:
    """A pixel's attention over one block's grid: `cell` is the pixel's query position."""

    stage: str
    parts: int
    pool: int
    cell: Cell
    weights: np.ndarray  # [h, w]; sums to 1 over the pixel's partition region


@dataclass(frozen=True)
class PixelExplanation:
    pixel: ChosenPixel  # on the network input
    frame_xy: tuple[int, int]  # the same pixel in the frame's own coordinates
    final_label: int
    aux_label: int | None
    cell: Cell | None  # OCR: the pixel's cell on the gather grid
    relations: np.ndarray | None  # OCR: [K], sums to 1 over the regions
    maps: tuple[StageMap, ...]  # OCNet: one per self-attention block (pyramid: per partition)


@dataclass(frozen=True)
class Explanation:
    kind: str  # "ocr" or "ocnet"
    title: str
    weights: Path
    image: Path
    frame: np.ndarray  # BGR uint8 at the size the network ran at
    frame_size: tuple[int, int]  # the frame's own (height, width)
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB
    final: np.ndarray  # [H, W] labels of the segmentation head
    aux: np.ndarray | None  # [H, W] labels of the auxiliary head
    soft_regions: np.ndarray | None  # OCR: [K, h, w], sums to 1 over positions per class
    pixels: tuple[PixelExplanation, ...]

    @property
    def size(self) -> tuple[int, int]:
        return self.final.shape[0], self.final.shape[1]


def _fractions(pixel: ChosenPixel, size: tuple[int, int]) -> tuple[float, float]:
    """The pixel's centre as fractions of the input's height and width."""
    return (pixel.y + 0.5) / size[0], (pixel.x + 0.5) / size[1]


def _cell(fractions: tuple[float, float], grid: tuple[int, int]) -> Cell:
    return (min(int(fractions[0] * grid[0]), grid[0] - 1), min(int(fractions[1] * grid[1]), grid[1] - 1))


def to_frame(pixel: ChosenPixel, size: tuple[int, int], frame_size: tuple[int, int]) -> tuple[int, int]:
    """A network-input pixel in the frame's own coordinates (as the user gave it, if they did)."""
    if pixel.frame is not None:
        return pixel.frame
    return (min(int((pixel.x + 0.5) * frame_size[1] / size[1]), frame_size[1] - 1),
            min(int((pixel.y + 0.5) * frame_size[0] / size[0]), frame_size[0] - 1))


def ocr_pixels(capture: OcrCapture, chosen: Sequence[ChosenPixel], final: np.ndarray,
               aux: np.ndarray | None, frame_size: tuple[int, int]) -> tuple[PixelExplanation, ...]:
    size = final.shape[:2]
    explained = []
    for pixel in chosen:
        cell = _cell(_fractions(pixel, size), capture.grid)
        explained.append(PixelExplanation(
            pixel=pixel, frame_xy=to_frame(pixel, size, frame_size), final_label=int(final[pixel.y, pixel.x]),
            aux_label=None if aux is None else int(aux[pixel.y, pixel.x]), cell=cell,
            relations=capture.relations[cell], maps=()))
    return tuple(explained)


def _stage_map(stage: AttentionStage, fractions: tuple[float, float]) -> StageMap:
    cell = stage.cell(*fractions)
    return StageMap(stage=stage.name, parts=stage.parts, pool=stage.pool, cell=cell, weights=stage.row(cell))


def ocnet_pixels(capture: OcCapture, chosen: Sequence[ChosenPixel], final: np.ndarray,
                 aux: np.ndarray | None, frame_size: tuple[int, int]) -> tuple[PixelExplanation, ...]:
    size = final.shape[:2]
    return tuple(PixelExplanation(
        pixel=pixel, frame_xy=to_frame(pixel, size, frame_size), final_label=int(final[pixel.y, pixel.x]),
        aux_label=None if aux is None else int(aux[pixel.y, pixel.x]), cell=None, relations=None,
        maps=tuple(_stage_map(stage, _fractions(pixel, size)) for stage in capture.stages))
        for pixel in chosen)
