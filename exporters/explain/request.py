"""What `ocr-deploy explain` is asked for, what it hands back, and the error it raises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.errors import OcrDeployError

INSTALL_HINT = "pip install 'ocr-deploy[explain]'"
WHAT_IS_SHOWN = {"ocr": "soft object regions and pixel-region relations",
                 "ocnet": "self-attention maps of the object-context block"}


class ExplainError(OcrDeployError):
    """A bad input to explain: an unreadable image, a pixel outside the frame, a network without
    an object-context block, matplotlib missing."""


@dataclass(frozen=True, kw_only=True)
class ExplainRequest:
    """`pixels`: (x, y) in the frame's own coordinates; empty: chosen automatically.
    `size`: (height, width) the network runs at; None: the frame's own size."""

    weights: Path
    image: Path
    output: Path
    pixels: tuple[tuple[int, int], ...] = ()
    size: tuple[int, int] | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class ExplainResult:
    kind: str  # "ocr" or "ocnet"
    title: str  # the family's title
    pixel_lines: tuple[str, ...]  # one line per chosen pixel: where, labels, why
    files: tuple[Path, ...]

    def lines(self) -> list[str]:
        return [f"{self.title}: {WHAT_IS_SHOWN[self.kind]}", *self.pixel_lines,
                *(f"wrote {path}" for path in self.files)]
