"""The memory of all-pairs self-attention (OCNet's Base-OC, Pyramid-OC and ASP-OC blocks).

Such a block compares every position of its feature map with every other: at 1/s of an H x W
frame it holds a (H/s * W/s)^2 similarity map per frame. Base-OC at 1/8 of 1024x2048 is a
32768 x 32768 map, 4 GiB in FP32. A family with such a block records the stride of its largest
attention map as NetworkSpec.settings["self_attention_stride"] (8 for Base-OC and Pyramid-OC,
16 for ASP-OC, which pools by 2 first); OCR's attention runs over K regions only and records
nothing. Above a limit, the note suggests the sliding-window policy with a tile that fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ocr_deploy.meta import ModelMeta
from ocr_deploy.tiling import TileSpec
from ocr_deploy.vocabulary import Precision

ATTENTION_STRIDE = "self_attention_stride"  # the NetworkSpec.settings key
ATTENTION_LIMIT_BYTES = 1 << 30  # above this per frame (1 GiB), the note suggests tiling
_TILE_STEP = 64  # suggested tile sides are multiples of this (and of every output stride)
# Bytes per similarity value by artifact precision. An FP16 graph with FP32 islands keeps the
# similarity softmax and its MatMuls in FP32 (exporters.fp16); int8 keeps them in float too.
_ELEMENT_BYTES = {Precision.fp32: 4, Precision.fp16: 2, Precision.bf16: 2, Precision.int8: 4}


def _format_bytes(count: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.0f} B"


@dataclass(frozen=True)
class AttentionMemory:
    """One frame's similarity map: `positions` x `positions` values of `element_bytes`."""

    title: str  # the network, e.g. "OCNet Base-OC"
    height: int
    width: int
    stride: int
    element_bytes: int

    @property
    def positions(self) -> int:
        return math.ceil(self.height / self.stride) * math.ceil(self.width / self.stride)

    @property
    def bytes(self) -> int:
        return self.positions ** 2 * self.element_bytes

    def describe(self, unit: str = "frame") -> str:
        """'OCNet Base-OC self-attention at 1024x2048: 32768 positions (1/8), a 32768 x 32768
        similarity map, 4 GiB per frame in FP32'."""
        kind = "FP32" if self.element_bytes == 4 else "16-bit floats"
        return (f"{self.title} self-attention at {self.height}x{self.width}: {self.positions} "
                f"positions (1/{self.stride}), a {self.positions} x {self.positions} similarity "
                f"map, {_format_bytes(self.bytes)} per {unit} in {kind}")

    def suggested_tile(self, limit_bytes: int = ATTENTION_LIMIT_BYTES) -> TileSpec:
        """The largest square tile (a multiple of 64 px, at most the frame) within the limit."""
        side_positions = math.isqrt(math.isqrt(limit_bytes // self.element_bytes))
        side = max(_TILE_STEP, side_positions * self.stride // _TILE_STEP * _TILE_STEP)
        return TileSpec(min(side, self.height), min(side, self.width))


def element_bytes(meta: ModelMeta) -> int:
    """Bytes per similarity value in this artifact."""
    source = meta.provenance
    if source.precision == Precision.fp16 and source.fp32_islands:
        return 4
    return _ELEMENT_BYTES.get(source.precision, 4)


def attention_memory(meta: ModelMeta, height: int, width: int) -> AttentionMemory | None:
    """The similarity map of one height x width frame, or None when the network has no
    all-pairs self-attention."""
    stride = meta.network.settings.get(ATTENTION_STRIDE)
    if not stride:
        return None
    return AttentionMemory(meta.network.title, height, width, int(stride), element_bytes(meta))


def attention_note(meta: ModelMeta, size: tuple[int, int] | None, *, tiled: bool = False,
                   limit_bytes: int = ATTENTION_LIMIT_BYTES) -> str | None:
    """One line for `export` and `infer`: the attention memory at `size` (default: the model's
    deployment size) and, above the limit, the sliding-window options that keep it below."""
    where = ""
    if size is None:
        size = meta.deployment_size()
        if meta.input.fixed_size is None:
            where = f" (the {meta.dataset.name} test size)"
    if size is None:
        return None
    memory = attention_memory(meta, *size)
    if memory is None:
        return None
    note = memory.describe("tile" if tiled else "frame") + where
    if memory.bytes <= limit_bytes:
        return note
    tile = memory.suggested_tile(limit_bytes)
    advice = (f"; above {_format_bytes(limit_bytes)}: run with --policy sliding --tile "
              f"{tile.height}x{tile.width} --overlap {tile.overlap:.2f}")
    if meta.output.kind == "labels":
        advice += " (needs a logits or probs export: ocr-deploy export CHECKPOINT --output logits)"
    return note + advice


def attention_rows(meta: ModelMeta) -> list[tuple[str, str]]:
    """The export summary's row: the attention memory at the model's deployment size."""
    note = attention_note(meta, None)
    return [("attention", note)] if note else []
