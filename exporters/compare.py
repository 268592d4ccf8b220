"""`ocr-deploy compare A B`: do two artifacts of one model give the same segmentation?

A and B may each be a checkpoint (run by PyTorch, the reference backend), an FP32 or FP16 ONNX,
or a TensorRT engine. Both see the same frames through the same pre- and post-processing
(A's size plan), so any difference comes from the artifacts themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from exporters.checkpoint_files import is_checkpoint
from ocr_deploy.errors import ConfigError
from ocr_deploy.meta import ModelMeta
from ocr_deploy.metrics import SegmentationScores, confusion_matrix
from ocr_deploy.postprocess import labels_from_scores, restore_labels
from ocr_deploy.preprocess import Placement, graph_input, plan_size, prepare_frame

class Runner(Protocol):
    """A model artifact that returns its primary output and, when it can, its logits."""

    name: str
    meta: ModelMeta

    def run(self, graph_input: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


class TorchRunner:
    """A checkpoint, run by PyTorch: the reference."""

    def __init__(self, path: Path):
        from exporters.torch_backend import TorchBackend

        self.backend = TorchBackend(path)
        self.meta = self.backend.meta
        self.name = f"{path.name} (PyTorch)"

    def run(self, graph_input: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.backend.run_with_logits(graph_input)


class OnnxRunner:
    def __init__(self, path: Path):
        import onnxruntime as ort

        from exporters.graph_compare import with_logits_output
        from exporters.onnx_files import load_model

        model, self.meta = load_model(path)
        self.session = ort.InferenceSession(with_logits_output(model).SerializeToString(),
                                            providers=["CPUExecutionProvider"])
        self.name = f"{path.name} ({self.meta.provenance.precision} ONNX)"

    def run(self, graph_input: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        from exporters.onnx_files import LOGITS

        names = [output.name for output in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(None, {self.meta.input.name: graph_input})))
        return outputs[self.meta.output.name], outputs[LOGITS].astype(np.float32)


class BackendRunner:
    """Any runtime backend (TensorRT engines): logits only if that is the engine's output."""

    def __init__(self, path: Path, device: str):
        from ocr_deploy.backends import open_backend

        self.backend = open_backend(path, device=device)
        self.meta = self.backend.meta
        self.name = f"{path.name} ({self.backend.describe()})"

    def run(self, graph_input: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        output = self.backend.run(graph_input)
        return output, output.astype(np.float32) if self.meta.output.kind == "logits" else None


def open_runner(path: Path, *, device: str = "auto") -> Runner:
    if is_checkpoint(path):
        return TorchRunner(path)
    if path.suffix.lower() == ".onnx":
        return OnnxRunner(path)
    return BackendRunner(path, device)


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


def _labels(runner: Runner, output: np.ndarray, placement: Placement) -> np.ndarray:
    if runner.meta.output.kind == "labels":
        return restore_labels(output, placement)
    return labels_from_scores(output, placement)


def compare(a: Runner, b: Runner, frames: list[tuple[str, np.ndarray]], *,
            heatmaps: Path | None = None) -> Comparison:
    if a.meta.num_classes != b.meta.num_classes:
        raise ConfigError(f"A predicts {a.meta.num_classes} classes and B {b.meta.num_classes}; "
                          "compare artifacts of the same model")
    plan = plan_size(a.meta)
    classes = a.meta.num_classes
    result = Comparison(a.name, b.name, a.meta.dataset.classes, np.zeros((classes, classes), np.int64))
    for name, frame in frames:
        image, placement = prepare_frame(frame, plan, a.meta.input)
        outputs = []
        for runner in (a, b):
            batch = np.repeat(image[None], runner.meta.input.batch or 1, axis=0)
            primary, logits = runner.run(graph_input(batch, runner.meta.input))
            outputs.append((_labels(runner, primary[0], placement),
                            None if logits is None else logits[0]))
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
    frames = [(f"synthetic_{h}x{w}", synthetic_frame(h, w, seed=i)) for i, (h, w) in enumerate(sizes)]
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
