"""`ocr-deploy compare A B`: do two artifacts of one model give the same segmentation?

A and B may each be a checkpoint (run by PyTorch, the reference backend), an FP32 or FP16 ONNX,
or a TensorRT engine. Both see the same frames through the same pre- and post-processing
(A's size plan), so any difference comes from the artifacts themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters.artifacts import artifact_spec, open_artifact
from exporters.onnx_files import LOGITS
from ocr_deploy.backends import Backend
from ocr_deploy.errors import ConfigError
from ocr_deploy.metrics import SegmentationScores, confusion_matrix
from ocr_deploy.postprocess import labels_from_scores, restore_labels
from ocr_deploy.preprocess import Placement, graph_input, plan_size, prepare_frame
from ocr_deploy.vocabulary import Device

# How each backend's artifact is named in the report; any other backend: its describe() line.
_TITLES = {"pytorch": "PyTorch", "onnxruntime": "{precision} ONNX"}


@dataclass(frozen=True, kw_only=True)
class CompareRequest:
    a: Path  # the reference
    b: Path
    sources: tuple[str, ...] = ()  # images, folders, globs, videos; () = built-in frames
    max_frames: int = 10  # per video source
    heatmaps: Path | None = None  # folder for one disagreement image per frame
    device: str = "auto"  # where engines run; checkpoints and ONNX run on the CPU


@dataclass
class FrameResult:
    name: str
    agreement: float
    max_abs_logits: float | None
    mean_abs_logits: float | None


@dataclass
class Comparison:
    a: str
    b: str
    classes: tuple[str, ...]
    confusion: np.ndarray  # rows: A's labels, columns: B's
    frames: list[FrameResult] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    def confused_pairs(self, count: int = 5) -> list[tuple[str, str, int]]:
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(off, axis=None)[::-1][:count]
        pairs = [np.unravel_index(index, off.shape) for index in order]
        return [(self.classes[a], self.classes[b], int(off[a, b])) for a, b in pairs if off[a, b]]

    def lines(self) -> list[str]:
        scores = SegmentationScores(self.confusion)
        lines = [f"A: {self.a}", f"B: {self.b}",
                 f"pixel agreement {100 * self.agreement:.4f} % over {len(self.frames)} frame(s)"]
        deltas = [f for f in self.frames if f.max_abs_logits is not None]
        if deltas:
            lines.append(f"|dlogits|: max {max(f.max_abs_logits for f in deltas):.3g}, mean "
                         f"{np.mean([f.mean_abs_logits for f in deltas]):.3g}")
        else:
            lines.append("|dlogits|: n/a (one of them gives labels only)")
        present = [i for i in range(len(self.classes)) if self.confusion[i].sum()]
        lines.append("IoU of B against A: " + ", ".join(
            f"{self.classes[i]} {100 * scores.iou[i]:.2f}" for i in present))
        pairs = self.confused_pairs()
        lines.append("most confused (A -> B, pixels): " + (", ".join(
            f"{a} -> {b} {n}" for a, b, n in pairs) if pairs else "none"))
        lines += [f"  {f.name}: {100 * f.agreement:.4f} %" for f in self.frames]
        return lines

    def shortfall(self, min_agreement: float) -> str | None:
        """Why the comparison fails a bar of `min_agreement` percent, or None when it passes."""
        if self.agreement * 100 >= min_agreement:
            return None
        return (f"agreement {100 * self.agreement:.4f} % is below --min-agreement "
                f"{min_agreement} %")


def run_compare(request: CompareRequest) -> Comparison:
    """Open both artifacts (each on the CPU where its backend can: the float32 reference;
    engines on request.device), compare them on the request's frames, close both."""
    from ocr_deploy.fileio import ensure_output_folder

    frames = comparison_frames(list(request.sources), request.max_frames)
    if request.heatmaps is not None:
        ensure_output_folder(request.heatmaps)
    opened: list[Backend] = []
    try:
        for path in (request.a, request.b):
            spec = artifact_spec(path)
            device = Device.cpu if Device.cpu in spec.devices else request.device
            opened.append(open_artifact(path, device=device, logits=True))
        a, b = opened
        return compare(a, b, frames, names=(_title(request.a, a), _title(request.b, b)),
                       heatmaps=request.heatmaps)
    finally:
        for backend in opened:
            backend.close()


def _title(path: Path, backend: Backend) -> str:
    title = _TITLES.get(backend.name, "{describe}").format(
        precision=backend.meta.provenance.precision, describe=backend.describe())
    return f"{path.name} ({title})"


def _labels(backend: Backend, output: np.ndarray, placement: Placement) -> np.ndarray:
    if backend.meta.output.kind == "labels":
        return restore_labels(output, placement)
    return labels_from_scores(output, placement)


def compare(a: Backend, b: Backend, frames: list[tuple[str, np.ndarray]], *,
            names: Sequence[str] | None = None, heatmaps: Path | None = None) -> Comparison:
    """Both backends on the same frames through A's size plan; logits compared where both
    return them (under "logits")."""
    if a.meta.num_classes != b.meta.num_classes:
        raise ConfigError(f"A predicts {a.meta.num_classes} classes and B {b.meta.num_classes}; "
                          "compare artifacts of the same model")
    plan = plan_size(a.meta)
    classes = a.meta.num_classes
    name_a, name_b = names or (a.describe(), b.describe())
    result = Comparison(name_a, name_b, a.meta.dataset.classes,
                        np.zeros((classes, classes), np.int64))
    for name, frame in frames:
        image, placement = prepare_frame(frame, plan, a.meta.input)
        outputs = []
        for backend in (a, b):
            batch = np.repeat(image[None], backend.meta.input.batch or 1, axis=0)
            ran = backend.run(graph_input(batch, backend.meta.input))
            logits = ran.get(LOGITS)
            outputs.append((_labels(backend, ran[backend.meta.output.name][0], placement),
                            None if logits is None else logits[0].astype(np.float32)))
        (labels_a, logits_a), (labels_b, logits_b) = outputs
        result.confusion += confusion_matrix(labels_b, labels_a, classes, ignore_index=-1)
        delta = None if logits_a is None or logits_b is None else np.abs(logits_a - logits_b)
        result.frames.append(FrameResult(name, float((labels_a == labels_b).mean()),
                                         None if delta is None else float(delta.max()),
                                         None if delta is None else float(delta.mean())))
        if heatmaps is not None:
            _save_heatmap(heatmaps, name, frame, labels_a != labels_b)
    return result


def comparison_frames(sources: list[str], max_frames: int) -> list[tuple[str, np.ndarray]]:
    """Frames from the sources, or the built-in set: street-like synthetic frames at three
    sizes and three frames of the shipped sample video."""
    from ocr_deploy.sources import read_frames

    if sources:
        return read_frames(sources, max_frames=max_frames, stride=10)
    from ocr_deploy.assets import demo_video
    from ocr_deploy.testframes import synthetic_frame

    sizes = [(256, 512), (250, 378), (320, 640)]
    frames = [(f"synthetic_{h}x{w}", synthetic_frame(h, w, seed=i))
              for i, (h, w) in enumerate(sizes)]
    return frames + read_frames([str(demo_video())], max_frames=3, stride=10)


def _save_heatmap(folder: Path, name: str, frame: np.ndarray, disagree: np.ndarray) -> None:
    """The frame dimmed, disagreeing pixels in red."""
    import cv2

    from ocr_deploy.fileio import atomic_write_bytes

    image = (frame.astype(np.float32) * 0.35).astype(np.uint8)
    image[disagree] = (0, 0, 255)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    ok, data = cv2.imencode(".png", image)
    if ok:
        atomic_write_bytes(folder / f"{safe}_disagreement.png", data.tobytes())
