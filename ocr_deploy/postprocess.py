"""Post-processing shared by every backend: back to the frame's geometry, colours, statistics."""

from __future__ import annotations

import numpy as np

from ocr_deploy.preprocess import Placement
from ocr_deploy.presets import RGB

_CV_MAX_CHANNELS = 512  # OpenCV's limit on channels per image


def restore_labels(labels: np.ndarray, placement: Placement) -> np.ndarray:
    """Network-input labels [H', W'] -> frame labels [H, W]: crop the padding, nearest resize."""
    import cv2

    if placement.is_identity:
        return labels
    content = labels[: placement.content_height, : placement.content_width]
    if content.shape == (placement.source_height, placement.source_width):
        return np.ascontiguousarray(content)
    dtype = content.dtype
    # cv2.resize has no int32 nearest path on all builds; class ids fit exactly in float32.
    work = content if dtype in (np.uint8, np.uint16) else content.astype(np.float32)
    resized = cv2.resize(work, (placement.source_width, placement.source_height),
                         interpolation=cv2.INTER_NEAREST)
    return resized.astype(dtype, copy=False)


def resize_scores(scores: np.ndarray, placement: Placement) -> np.ndarray:
    """Class scores [K, H', W'] at network-input size -> [K, H, W] at the frame's size: the
    padding cropped, then a bilinear resize (as the reference resizes logits)."""
    import cv2

    content = scores[:, : placement.content_height, : placement.content_width]
    height, width = placement.source_height, placement.source_width
    if content.shape[1:] == (height, width):
        return content
    planes = content.transpose(1, 2, 0)  # OpenCV resizes H x W x channels
    chunks = [cv2.resize(np.ascontiguousarray(planes[:, :, start:start + _CV_MAX_CHANNELS]),
                         (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
              for start in range(0, len(content), _CV_MAX_CHANNELS)]
    return np.concatenate(chunks, axis=2).transpose(2, 0, 1)


def labels_from_scores(scores: np.ndarray, placement: Placement) -> np.ndarray:
    """Class scores (logits or probabilities) -> labels [H, W]: resized first, then argmax,
    which keeps class boundaries smooth, as the reference does."""
    return resize_scores(scores, placement).argmax(axis=0).astype(label_dtype(len(scores)))


def label_dtype(num_classes: int) -> type:
    return np.uint8 if num_classes <= 255 else np.int32


def palette_lut(palette: tuple[RGB, ...]) -> np.ndarray:
    """A [max(256, K), 3] BGR table; ids beyond the palette (e.g. 255 'ignore') map to black."""
    lut = np.zeros((max(256, len(palette)), 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)[:, ::-1]
    return lut


def colorize(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Labels [H, W] -> BGR colour image through the palette table."""
    import cv2

    if labels.dtype == np.uint8:
        # cv2.LUT over a 3-channel view is several times faster than numpy fancy indexing.
        return cv2.LUT(cv2.merge((labels, labels, labels)), lut[:256].reshape(256, 1, 3))
    return lut[np.clip(labels, 0, len(lut) - 1)]


def overlay(frame_bgr: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    import cv2

    return cv2.addWeighted(frame_bgr, 1.0 - alpha, color, alpha, 0.0)


_COUNT_CHUNK = 1 << 22  # pixels per np.bincount call: its int64 copy of them stays at 32 MB


def class_fractions(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of pixels per class (float64 [K]); ids outside 0..K-1 are not counted. Counted
    in chunks: np.bincount copies its input to int64, 8 bytes per pixel of a whole frame."""
    flat = labels.reshape(-1)
    counts = np.zeros(num_classes, dtype=np.int64)
    for start in range(0, flat.size, _COUNT_CHUNK):
        chunk = flat[start:start + _COUNT_CHUNK]
        if chunk.dtype.kind == "i":
            chunk = chunk[chunk >= 0]
        counts += np.bincount(chunk, minlength=num_classes)[:num_classes]
    return counts / max(1, labels.size)
