"""explain.json: the numbers behind the figures. Maps are stored at the resolution the network
computed them (the feature grid), row-major, with their shape; floats to 6 significant digits."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from exporters.explain.explanation import Explanation, PixelExplanation, StageMap

FORMAT = "ocr-deploy-explain/1"


def _floats(values: np.ndarray) -> list[Any]:
    return np.vectorize(lambda value: float(f"{value:.6g}"), otypes=[object])(values).tolist()


def _peak(weights: np.ndarray) -> list[int]:
    """[row, column] of the largest weight on its grid."""
    return [int(index) for index in np.unravel_index(int(np.argmax(weights)), weights.shape)]


def _stage(stage_map: StageMap) -> dict[str, Any]:
    return {"block": stage_map.stage, "parts": stage_map.parts, "pool": stage_map.pool,
            "grid": list(stage_map.weights.shape), "cell": list(stage_map.cell),
            "max": float(stage_map.weights.max()), "peak": _peak(stage_map.weights),
            "weights": _floats(stage_map.weights)}


def _pixel(explanation: Explanation, item: PixelExplanation) -> dict[str, Any]:
    classes = explanation.classes
    entry: dict[str, Any] = {
        "x": item.frame_xy[0], "y": item.frame_xy[1], "input_x": item.pixel.x, "input_y": item.pixel.y,
        "reason": item.pixel.reason, "final_label": classes[item.final_label],
        "aux_label": None if item.aux_label is None else classes[item.aux_label]}
    if item.relations is not None and item.cell is not None:
        entry["cell"] = list(item.cell)
        entry["relations"] = {name: float(f"{weight:.6g}") for name, weight in zip(classes, item.relations,
                                                                                 strict=True)}
    if item.maps:
        entry["attention"] = [_stage(stage_map) for stage_map in item.maps]
    return entry


def _regions(explanation: Explanation) -> list[dict[str, Any]]:
    assert explanation.soft_regions is not None
    return [{"class": name, "max": float(region.max()), "peak": _peak(region), "weights": _floats(region)}
            for name, region in zip(explanation.classes, explanation.soft_regions, strict=True)]


def to_json(explanation: Explanation) -> str:
    height, width = explanation.size
    data: dict[str, Any] = {
        "format": FORMAT, "kind": explanation.kind, "family": explanation.title,
        "weights": str(explanation.weights), "image": str(explanation.image),
        "frame": {"height": explanation.frame_size[0], "width": explanation.frame_size[1]},
        "input": {"height": height, "width": width}, "classes": list(explanation.classes),
        "pixels": [_pixel(explanation, item) for item in explanation.pixels]}
    if explanation.soft_regions is not None:
        data["soft_regions"] = {"grid": list(explanation.soft_regions.shape[1:]), "regions": _regions(explanation)}
    return json.dumps(data)
