"""A colour legend drawn onto colour and overlay images: the classes present, largest first.

A coloured picture says nothing about which colour is which class; `--legend` puts a box in the
top-left corner with a swatch and the name of every class the frame holds (the largest first,
as many as fit; the rest counted on the last line).
"""

from __future__ import annotations

import numpy as np

from ocr_deploy.presets import RGB

_MIN_SHARE = 0.0  # a class is present when it has any pixel


def present_classes(fractions: np.ndarray, min_share: float = _MIN_SHARE) -> list[int]:
    """Class ids with pixels in the frame, the largest share first."""
    ids = [int(index) for index in np.flatnonzero(fractions > min_share)]
    return sorted(ids, key=lambda index: (-float(fractions[index]), index))


def draw_legend(image: np.ndarray, fractions: np.ndarray, classes: tuple[str, ...],
                palette: tuple[RGB, ...]) -> np.ndarray:
    """A copy of the BGR `image` with the legend of the classes present drawn in its corner."""
    import cv2

    ids = present_classes(fractions)
    if not ids:
        return image
    height, width = image.shape[:2]
    scale = max(0.3, min(1.0, height / 900))
    line = max(10, round(26 * scale))
    pad = max(2, line // 5)
    rows = max(1, min(len(ids), (height - 2 * pad) // line))
    if rows < len(ids):  # the last row says how many more there are
        shown, rest = ids[: rows - 1], len(ids) - (rows - 1)
    else:
        shown, rest = ids, 0
    texts = [classes[index] if index < len(classes) else f"class_{index}" for index in shown]
    texts += [f"+{rest} more"] if rest else []
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    text_width = max(cv2.getTextSize(text, font, 0.6 * scale, thickness)[0][0] for text in texts)
    box_w = min(width, pad * 3 + line + text_width)
    box_h = min(height, pad * 2 + line * len(texts))
    out = image.copy()
    region = out[:box_h, :box_w]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darkened backdrop
    for row, text in enumerate(texts):
        top = pad + row * line
        if row < len(shown):
            index = shown[row]
            r, g, b = palette[index] if index < len(palette) else (0, 0, 0)
            cv2.rectangle(out, (pad, top + 2), (pad + line - 4, top + line - 3), (b, g, r), -1)
        cv2.putText(out, text, (pad * 2 + line, top + line - pad - 1), font, 0.6 * scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return out
