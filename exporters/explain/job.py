"""`run_explain`: one frame through the network the export uses (the PyTorch reference backend's
DeployGraph), with hooks on its object-context block; figures and explain.json from what they saw."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from exporters.explain import capture, figures
from exporters.explain.explanation import Explanation, ocnet_pixels, ocr_pixels
from exporters.explain.pixels import ChosenPixel, check_pixels, choose_pixels
from exporters.explain.report import to_json
from exporters.explain.request import ExplainError, ExplainRequest, ExplainResult
from exporters.models import family_named
from ocr_deploy.fileio import atomic_write_bytes, ensure_output_folder, remove_empty_folders
from ocr_deploy.sinks.base import OutputClaims

if TYPE_CHECKING:
    from exporters.torch_backend import TorchBackend

JSON_NAME = "explain.json"
CAPTURES = {"ocr": capture.capture_ocr, "ocnet": capture.capture_ocnet}


def read_frame(path: Path) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if frame is None:
        raise ExplainError(f"cannot read {path} as an image (PNG, JPEG, ...); give an image file, "
                           "e.g. a frame saved from your video")
    return frame


def _aux_labels(outputs: list[torch.Tensor], segmentation_index: int, size: tuple[int, int],
                align_corners: bool) -> np.ndarray | None:
    """The auxiliary head's labels, upsampled like the segmentation (None: no second output)."""
    others = [output for index, output in enumerate(outputs) if index != segmentation_index]
    if len(others) != 1:
        return None
    logits = F.interpolate(others[0], size=size, mode="bilinear", align_corners=align_corners)
    return logits.argmax(dim=1)[0].numpy()


def _pixels(request: ExplainRequest, frame_size: tuple[int, int], size: tuple[int, int]) -> list[ChosenPixel]:
    """The user's pixels on the network input: scaled from the frame when --size resizes it."""
    scale_y, scale_x = size[0] / frame_size[0], size[1] / frame_size[1]
    return [ChosenPixel(min(int(x * scale_x), size[1] - 1), min(int(y * scale_y), size[0] - 1),
                        "asked for with --pixel", frame=(x, y)) for x, y in request.pixels]


def load_backend(weights: Path) -> TorchBackend:
    """The PyTorch reference backend: the DeployGraph export verifies its ONNX graph against."""
    from exporters.torch_backend import TorchBackend

    return TorchBackend(weights, device="cpu")


def context_kind(backend: TorchBackend) -> str:
    """'ocr' or 'ocnet'; an error naming the family when its network has neither block."""
    kind = capture.context_kind(backend.graph.network)
    if kind is None:
        raise ExplainError(f"{backend.meta.network.title} has no object-context block (neither OCR's soft object "
                           "regions nor OCNet's self-attention); explain shows OCR and OCNet families only")
    return kind


def explain_frame(request: ExplainRequest, backend: TorchBackend | None = None,
                  frame: np.ndarray | None = None) -> Explanation:
    """Everything the figures and explain.json show, from one hooked forward pass (through
    `backend` when given: it must hold `request.weights`; on `frame`, read from request.image
    when not given)."""
    frame = read_frame(request.image) if frame is None else frame
    frame_size = (frame.shape[0], frame.shape[1])
    check_pixels(request.pixels, height=frame_size[0], width=frame_size[1])
    backend = backend or load_backend(request.weights)
    kind = context_kind(backend)
    meta, network = backend.meta, backend.graph.network
    size = request.size or frame_size
    resized = frame if size == frame_size else cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    contract = family_named(meta.network.family).output_contract(meta.network)
    with CAPTURES[kind](network) as (captured, outputs):
        final = backend.run(resized[None])[meta.output.name][0].astype(np.int64)
    aux = _aux_labels(outputs.outputs, contract.segmentation_index, size, contract.align_corners)
    dataset = meta.dataset
    chosen = _pixels(request, frame_size, size) or choose_pixels(final, aux, dataset.classes)
    if not chosen:
        raise ExplainError("found no pixel to explain automatically; name one with --pixel X,Y")
    explain_pixels: Any = ocr_pixels if kind == "ocr" else ocnet_pixels
    return Explanation(
        kind=kind, title=meta.network.title, weights=request.weights, image=request.image, frame=resized,
        frame_size=frame_size, classes=dataset.classes, palette=dataset.palette, final=final, aux=aux,
        soft_regions=captured.soft_regions if isinstance(captured, capture.OcrCapture) else None,
        pixels=explain_pixels(captured, chosen, final, aux, frame_size))


def run_explain(request: ExplainRequest) -> ExplainResult:
    """Inputs and the output folder are checked before the forward pass: a refused file costs
    only the checkpoint load."""
    figures.require_matplotlib()
    frame = read_frame(request.image)
    check_pixels(request.pixels, height=frame.shape[0], width=frame.shape[1])
    backend = load_backend(request.weights)
    makers = figures.FIGURES[context_kind(backend)]
    created = ensure_output_folder(request.output)
    claims = OutputClaims(request.output, overwrite=request.overwrite)
    written: list[Path] = []
    try:
        paths = {name: claims.claim(name) for name in (*makers, JSON_NAME)}
        explanation = explain_frame(request, backend, frame)
        for name, make in makers.items():
            written.append(figures.save(make(explanation), paths[name]))
        atomic_write_bytes(paths[JSON_NAME], to_json(explanation).encode())
        written.append(paths[JSON_NAME])
    finally:
        claims.record(written)
        if not written:
            remove_empty_folders(created)  # nothing written: leave no empty folder behind
    lines = tuple(_pixel_line(explanation, index) for index in range(len(explanation.pixels)))
    return ExplainResult(explanation.kind, explanation.title, lines, tuple(written))


def _pixel_line(explanation: Explanation, index: int) -> str:
    item = explanation.pixels[index]
    classes = explanation.classes
    aux = f", auxiliary {classes[item.aux_label]!r}" if item.aux_label is not None else ""
    return (f"pixel {index + 1} at ({item.frame_xy[0]}, {item.frame_xy[1]}): final {classes[item.final_label]!r}"
            f"{aux} ({item.pixel.reason})")
