"""The explain figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state,
no display needed). Each function draws one figure; `save` writes it under a temporary name."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from exporters.explain.explanation import Explanation, PixelExplanation, StageMap
from exporters.explain.request import INSTALL_HINT, ExplainError
from ocr_deploy.fileio import atomic_path
from ocr_deploy.postprocess import colorize, overlay, palette_lut

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 72
MARKERS = "123456789"


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ExplainError(f"explain draws its figures with matplotlib, which is not installed: "
                           f"{INSTALL_HINT}") from None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return path


def _rgb(image_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_bgr[..., ::-1])


def _name(explanation: Explanation, label: int | None) -> str:
    if label is None:
        return "-"
    return explanation.classes[label] if 0 <= label < len(explanation.classes) else str(label)


def _mark(axes: Axes, explanation: Explanation, *, only: int | None = None) -> None:
    """Numbered markers at the chosen pixels (network-input coordinates)."""
    for index, item in enumerate(explanation.pixels):
        if only is not None and index != only:
            continue
        axes.plot(item.pixel.x, item.pixel.y, marker="o", markersize=9, markerfacecolor="none",
                  markeredgecolor="white", markeredgewidth=2)
        axes.annotate(MARKERS[index % len(MARKERS)], (item.pixel.x, item.pixel.y), xytext=(6, -6),
                      textcoords="offset points", color="white", fontsize=10, fontweight="bold")


def _image(axes: Axes, image_rgb: np.ndarray, title: str) -> None:
    axes.imshow(image_rgb, interpolation="nearest")
    axes.set_title(title, fontsize=9)
    axes.set_axis_off()


def _segmentation(explanation: Explanation, labels: np.ndarray) -> np.ndarray:
    color = colorize(labels.astype(np.uint8) if len(explanation.classes) <= 255 else labels,
                     palette_lut(explanation.palette))
    return _rgb(overlay(explanation.frame, color, 0.6))


def _attention_overlay(explanation: Explanation, stage_map: StageMap) -> np.ndarray:
    """The map resized to the input (bilinear), scaled to its maximum, over a dimmed frame."""
    import matplotlib

    height, width = explanation.size
    weights = cv2.resize(stage_map.weights.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat = matplotlib.colormaps["inferno"](weights / max(float(weights.max()), 1e-12))[..., :3]
    frame = _rgb(explanation.frame).astype(np.float32) / 255.0
    return np.clip(0.35 * frame + 0.65 * heat, 0.0, 1.0)


def _stage_title(stage_map: StageMap) -> str:
    parts = f", {stage_map.parts}x{stage_map.parts} partition" if stage_map.parts > 1 else ""
    return f"{stage_map.stage}{parts} (max {stage_map.weights.max():.3g})"


def _pixel_title(explanation: Explanation, index: int, item: PixelExplanation) -> str:
    aux = f", aux {_name(explanation, item.aux_label)!r}" if item.aux_label is not None else ""
    return (f"{MARKERS[index % len(MARKERS)]}: ({item.frame_xy[0]}, {item.frame_xy[1]}) final "
            f"{_name(explanation, item.final_label)!r}{aux}")


def _bars(axes: Axes, explanation: Explanation, index: int, item: PixelExplanation, *, top: int | None) -> None:
    assert item.relations is not None
    order = np.argsort(-item.relations)[:top] if top else np.arange(len(item.relations))
    colors = [np.asarray(explanation.palette[label]) / 255.0 for label in order]
    axes.bar(range(len(order)), item.relations[order], color=colors, edgecolor="black", linewidth=0.5)
    axes.set_xticks(range(len(order)), [explanation.classes[label] for label in order], rotation=60,
                    ha="right", fontsize=7)
    axes.set_ylim(0, 1)
    axes.set_ylabel("relation weight", fontsize=8)
    axes.set_title(_pixel_title(explanation, index, item), fontsize=9)


def regions_figure(explanation: Explanation) -> Figure:
    """The K soft object regions, one heat map per class, each scaled to its own maximum."""
    assert explanation.soft_regions is not None
    regions = explanation.soft_regions
    count = regions.shape[0]
    columns = min(count, 5)
    rows = math.ceil(count / columns)
    aspect = regions.shape[1] / regions.shape[2]
    figure = _figure(3.0 * columns, 3.0 * aspect * rows + 0.8)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.ravel()):
        axes.set_axis_off()
        if index >= count:
            continue
        region = regions[index]
        axes.imshow(region / max(float(region.max()), 1e-300), cmap="inferno", vmin=0, vmax=1,
                    interpolation="nearest")
        share = float((explanation.final == index).mean())
        axes.set_title(f"{explanation.classes[index]}: {100 * share:.0f}% of frame, max {region.max():.2g}",
                       fontsize=9)
    figure.suptitle(f"Soft object regions of {explanation.title}: per class, the softmax of the auxiliary "
                    f"logits over all {regions.shape[1]}x{regions.shape[2]} positions (each map scaled "
                    "to its own maximum)", fontsize=10)
    return figure


def relations_figure(explanation: Explanation) -> Figure:
    """Per chosen pixel, its relation weights to the K object regions."""
    count = len(explanation.pixels)
    figure = _figure(max(6.0, 0.35 * len(explanation.classes) + 2), 2.6 * count + 0.6)
    grid = figure.subplots(count, 1, squeeze=False)
    for index, item in enumerate(explanation.pixels):
        _bars(grid[index, 0], explanation, index, item, top=None)
    figure.suptitle("Pixel-region relations: each pixel's softmax over the K object regions (the distribution "
                    "step's attention weights)", fontsize=10)
    return figure


def attention_figure(explanation: Explanation) -> Figure:
    """Per chosen pixel (rows), its attention map in each self-attention block (columns)."""
    rows, columns = len(explanation.pixels), len(explanation.pixels[0].maps)
    height, width = explanation.size
    panel = 3.2
    figure = _figure(panel * columns, panel * height / width * rows + 0.4 * rows + 0.6)
    grid = figure.subplots(rows, columns, squeeze=False)
    for row, item in enumerate(explanation.pixels):
        for column, stage_map in enumerate(item.maps):
            axes = grid[row, column]
            _image(axes, _attention_overlay(explanation, stage_map),
                   f"{_pixel_title(explanation, row, item)}\n{_stage_title(stage_map)}")
            _mark(axes, explanation, only=row)
    figure.suptitle("Self-attention of the object-context block: each pixel's similarity softmax over all "
                    "positions (its partition region for Pyramid-OC), scaled to its maximum", fontsize=10)
    return figure


def summary_figure(explanation: Explanation) -> Figure:
    """One figure for a bug report: frame, segmentation(s), the chosen pixels and their maps."""
    count = len(explanation.pixels)
    top = 3 if explanation.aux is not None else 2
    columns = max(top, count)
    height, width = explanation.size
    panel = 3.6
    figure = _figure(panel * columns, panel * height / width + 3.2 + 0.8)
    grid = figure.add_gridspec(2, columns)
    frame_axes = figure.add_subplot(grid[0, 0])
    _image(frame_axes, _rgb(explanation.frame), f"{explanation.image.name} ({width}x{height})")
    _mark(frame_axes, explanation)
    final_axes = figure.add_subplot(grid[0, 1])
    _image(final_axes, _segmentation(explanation, explanation.final), "final labels")
    _mark(final_axes, explanation)
    if explanation.aux is not None:
        aux_axes = figure.add_subplot(grid[0, 2])
        _image(aux_axes, _segmentation(explanation, explanation.aux), "auxiliary-head labels")
        _mark(aux_axes, explanation)
    for index, item in enumerate(explanation.pixels):
        axes = figure.add_subplot(grid[1, index])
        if item.relations is not None:
            _bars(axes, explanation, index, item, top=6)
        else:
            stage_map = item.maps[0]
            _image(axes, _attention_overlay(explanation, stage_map),
                   f"{_pixel_title(explanation, index, item)}\n{_stage_title(stage_map)}")
            _mark(axes, explanation, only=index)
    figure.suptitle(f"{explanation.title} on {explanation.image.name}: {explanation.weights.name}", fontsize=10)
    return figure


FigureMaker = Callable[[Explanation], "Figure"]
# The figures of each kind of object-context block, by file name (summary.png last: it is the
# one to attach to a bug report).
FIGURES: dict[str, dict[str, FigureMaker]] = {
    "ocr": {"regions.png": regions_figure, "relations.png": relations_figure, "summary.png": summary_figure},
    "ocnet": {"attention.png": attention_figure, "summary.png": summary_figure},
}
