"""Pre-processing shared by every backend: numpy and OpenCV only."""

from __future__ import annotations

import numpy as np

from ocr_deploy.meta import InputSpec


def normalize_frames(frames_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 NHWC BGR -> float32 NCHW RGB, (x/255 - mean)/std, as the reference test does."""
    rgb = frames_bgr[..., ::-1].astype(np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((rgb - mean) / std).transpose(0, 3, 1, 2))


def graph_input(frames_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """What the graph takes for a batch of uint8 BGR frames [N,H,W,3]."""
    if spec.format == "raw":
        return np.ascontiguousarray(frames_bgr)
    return normalize_frames(frames_bgr, spec)
