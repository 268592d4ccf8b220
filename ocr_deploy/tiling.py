"""Sliding-window inference: numpy only, shared by every backend.

A placed frame is cut into overlapping tiles of one size (the network input), the tiles run as
one batch, and their class scores are averaged where tiles overlap. The tile origins along a
side are 0, stride, 2*stride, ... with the last one shifted inward so that every tile is whole
and the last one ends at the frame's edge, as the HRNet-OCR reference's multi-scale test and
OCNet.pytorch's sliding predictor place their windows. A frame smaller than a tile is padded
bottom-right first (preprocess.SizePlan.place), like every other policy pads.

A frame that is not tiled has the WHOLE_FRAME layout: one view, its own output. The Segmenter
runs every layout the same way (split, run the views batched, merge), so no policy needs a
branch of its own there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ocr_deploy.errors import ConfigError

# OCNet.pytorch's sliding predictor overlaps neighbouring windows by a third of a window.
DEFAULT_OVERLAP = 1.0 / 3.0


class FrameLayout(Protocol):
    """How one placed frame becomes network inputs, and their outputs one result."""

    def split(self, image: np.ndarray) -> list[np.ndarray]:
        """Network-input views [h, w, C] of a placed uint8 image [H, W, C]."""
        ...

    def merge(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """The outputs of the views, in split order, as one output for the whole image."""
        ...


class WholeFrame:
    """The frame is the network input: one view, whose output is the result."""

    def split(self, image: np.ndarray) -> list[np.ndarray]:
        return [image]

    def merge(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        return outputs[0]

    def __len__(self) -> int:
        return 1


WHOLE_FRAME = WholeFrame()


def tile_origins(length: int, tile: int, stride: int) -> tuple[int, ...]:
    """Start of each tile along a side of `length` >= `tile`: every `stride`, the last one
    moved inward to end at the edge (so no tile hangs over it)."""
    if length < tile:
        raise ValueError(f"a side of {length} px cannot hold a {tile} px tile; pad it first")
    count = math.ceil((length - tile) / stride) + 1
    return tuple(min(index * stride, length - tile) for index in range(count))


def _coverage(origins: tuple[int, ...], tile: int, length: int) -> np.ndarray:
    """How many tiles cover each position of one side."""
    counts = np.zeros(length, dtype=np.float32)
    for start in origins:
        counts[start:start + tile] += 1.0
    return counts


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one image of `height` x `width` (each side at least the tile's): the grid of
    every row origin with every column origin, in row-major order."""

    height: int
    width: int
    tile_height: int
    tile_width: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def origins(self) -> list[tuple[int, int]]:
        return [(top, left) for top in self.rows for left in self.cols]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def split(self, image: np.ndarray) -> list[np.ndarray]:
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"the grid is for {self.height}x{self.width} images, not "
                             f"{image.shape[0]}x{image.shape[1]}")
        return [np.ascontiguousarray(image[top:top + self.tile_height, left:left + self.tile_width])
                for top, left in self.origins]

    def coverage(self) -> np.ndarray:
        """Tiles covering each pixel, float32 [H, W] (at least 1 everywhere)."""
        return np.outer(_coverage(self.rows, self.tile_height, self.height),
                        _coverage(self.cols, self.tile_width, self.width))

    def merge(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Scores [..., tile_h, tile_w] per tile -> float32 [..., H, W], averaged where tiles
        overlap."""
        if len(outputs) != len(self):
            raise ValueError(f"{len(outputs)} outputs for a grid of {len(self)} tiles")
        first = outputs[0]
        if first.shape[-2:] != (self.tile_height, self.tile_width):
            raise ValueError(f"tile outputs are {first.shape[-2]}x{first.shape[-1]}, not the "
                             f"{self.tile_height}x{self.tile_width} tiles; sliding windows need "
                             "class scores at input size (a logits or probs export)")
        total = np.zeros((*first.shape[:-2], self.height, self.width), dtype=np.float32)
        for (top, left), output in zip(self.origins, outputs, strict=True):
            total[..., top:top + self.tile_height, left:left + self.tile_width] += output
        total /= self.coverage()
        return total


@dataclass(frozen=True)
class TileSpec:
    """Tiles of height x width; neighbours overlap by `overlap` of a tile (0 <= overlap < 1)."""

    height: int
    width: int
    overlap: float = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 1:
            raise ConfigError(f"--tile must have positive sides, got {self.height}x{self.width}")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"--overlap is the share of a tile that neighbours share: at least 0 "
                              f"and below 1, e.g. 0.25 (got {self.overlap:g})")

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def strides(self) -> tuple[int, int]:
        """Steps between tile origins: ceil(side x (1 - overlap)), at least 1 px."""
        keep = 1.0 - self.overlap
        return (max(1, math.ceil(self.height * keep - 1e-9)),
                max(1, math.ceil(self.width * keep - 1e-9)))

    def grid(self, height: int, width: int) -> TileGrid:
        """The tiles of an image of height x width (each side at least the tile's)."""
        stride_h, stride_w = self.strides
        return TileGrid(height, width, self.height, self.width,
                        tile_origins(height, self.height, stride_h),
                        tile_origins(width, self.width, stride_w))

    def describe(self) -> str:
        return f"{self.height}x{self.width} tiles overlapping by {self.overlap:.2g}"
