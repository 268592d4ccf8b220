"""Which pixels to explain: the user's (checked against the frame), or a few informative ones
chosen from the network's own labels: where the auxiliary head and the final head disagree (the
object context changed the answer there), and the most interior pixel of each large class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from exporters.explain.request import ExplainError

LARGE_CLASS_SHARE = 0.05  # a class covering at least this share of the frame gets a pixel
MAX_LARGE_CLASSES = 3
MAX_DISAGREEMENTS = 1


@dataclass(frozen=True)
class ChosenPixel:
    """(x, y) on the network's input (the frame resized to the explained size), and why;
    `frame`: the (x, y) the user gave in the frame's own coordinates, if the user chose it."""

    x: int
    y: int
    reason: str
    frame: tuple[int, int] | None = None


def parse_pixel(text: str) -> tuple[int, int]:
    """'120,45' -> (120, 45): x (column) first, as image viewers show it."""
    try:
        x, y = (int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise ExplainError(f"--pixel {text!r} is not X,Y (column, row in pixels), e.g. 120,45") from None
    return x, y


def check_pixels(pixels: Sequence[tuple[int, int]], *, height: int, width: int) -> None:
    for x, y in pixels:
        if not (0 <= x < width and 0 <= y < height):
            raise ExplainError(f"--pixel {x},{y} is outside the frame, which is {width} x {height} "
                               f"(x 0..{width - 1}, y 0..{height - 1})")


def _interior(mask: np.ndarray) -> tuple[int, int, float]:
    """The pixel of `mask` farthest from its border: (x, y, distance)."""
    padded = np.pad(mask.astype(np.uint8), 1)  # the frame edge counts as a border
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y), float(distance[y, x])


def choose_pixels(final: np.ndarray, aux: np.ndarray | None, classes: Sequence[str]) -> list[ChosenPixel]:
    """At most MAX_DISAGREEMENTS + MAX_LARGE_CLASSES pixels of the label maps [H, W]."""
    chosen: list[ChosenPixel] = []
    if aux is not None:
        disagree = final != aux
        share = float(disagree.mean())
        if share > 0:
            x, y, depth = _interior(disagree)
            chosen.append(ChosenPixel(x, y, (
                f"auxiliary and final labels disagree on {100 * share:.1f}% of the frame; this pixel "
                f"lies deepest inside such an area ({depth:.0f} px from its edge)")))
    counts = np.bincount(final.ravel(), minlength=len(classes))
    large = [int(label) for label in np.argsort(-counts)[:MAX_LARGE_CLASSES]
             if counts[label] >= LARGE_CLASS_SHARE * final.size]
    for label in large:
        x, y, _ = _interior(final == label)
        if any(abs(x - other.x) + abs(y - other.y) < 4 for other in chosen):
            continue
        chosen.append(ChosenPixel(x, y, (
            f"most interior pixel of {classes[label]!r}, which covers "
            f"{100 * counts[label] / final.size:.1f}% of the frame")))
    return chosen
