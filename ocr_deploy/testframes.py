"""Deterministic synthetic frames for verification and benchmarks (no files, no downloads)."""

from __future__ import annotations

import numpy as np


def _muted(rng: np.random.Generator, low: int = 50, high: int = 190) -> tuple[int, int, int]:
    grey = rng.integers(low, high)
    tint = rng.integers(-25, 26, size=3)
    return tuple(int(np.clip(grey + t, 0, 255)) for t in tint)


def synthetic_frame(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A uint8 BGR street-like frame: sky, facades with windows, trees, road, cars, mild noise.

    Verification needs frames whose statistics resemble camera images: a saturated test
    pattern drives a network's logits into the thousands, where float rounding differences
    between correct implementations alone exceed any useful tolerance.
    """
    import cv2

    rng = np.random.default_rng(seed)
    horizon = int(height * rng.uniform(0.35, 0.5))
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky_top, sky_low = np.array([200, 160, 120]), np.array([225, 210, 190])  # BGR
    frame = (sky_top * (1 - rows) + sky_low * rows).repeat(width, axis=1)
    frame[horizon:] = np.array(_muted(rng, 70, 120))
    x = 0
    while x < width:  # facades along the horizon
        facade_w = int(width * rng.uniform(0.08, 0.25))
        top = int(horizon * rng.uniform(0.05, 0.7))
        colour = _muted(rng)
        cv2.rectangle(frame, (x, top), (x + facade_w, horizon + height // 20), colour, -1)
        window = tuple(max(0, c - 45) for c in colour)
        for wy in range(top + 6, horizon, 14):
            for wx in range(x + 4, x + facade_w - 8, 12):
                cv2.rectangle(frame, (wx, wy), (wx + 5, wy + 7), window, -1)
        x += facade_w + int(rng.integers(0, width // 30 + 1))
    for _ in range(int(rng.integers(2, 6))):  # trees
        centre = (int(rng.integers(0, width)), int(horizon * rng.uniform(0.7, 1.1)))
        axes = (int(width * rng.uniform(0.03, 0.08)), int(height * rng.uniform(0.06, 0.14)))
        cv2.ellipse(frame, centre, axes, 0, 0, 360, (60, 120 + int(rng.integers(0, 40)), 70), -1)
    for _ in range(int(rng.integers(1, 5))):  # cars on the road
        y = int(rng.uniform(horizon + 0.1 * height, height * 0.95))
        car_w = int(width * (0.05 + 0.15 * (y - horizon) / max(1, height - horizon)))
        x0 = int(rng.integers(0, max(1, width - car_w)))
        cv2.rectangle(frame, (x0, y - car_w // 2), (x0 + car_w, y), _muted(rng, 30, 220), -1)
    frame = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), 0.8)
    noise = rng.normal(0.0, 3.0, size=frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)
