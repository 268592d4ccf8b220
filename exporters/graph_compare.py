"""Two ONNX graphs of one model (FP32 and FP16, say) on the same frames, on ONNX Runtime CPU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from exporters.onnx_files import LOGITS
from ocr_deploy.errors import ExportError
from ocr_deploy.meta import ModelMeta
from ocr_deploy.preprocess import graph_input, plan_size, prepare_frame


@dataclass(frozen=True)
class FrameAgreement:
    name: str
    height: int
    width: int
    agreement: float
    max_abs_logits: float


@dataclass(frozen=True)
class GraphAgreement:
    frames: tuple[FrameAgreement, ...]

    @property
    def agreement(self) -> float:
        """Share of all pixels (over every frame) whose labels agree."""
        pixels = np.array([f.height * f.width for f in self.frames], dtype=np.float64)
        return float(np.dot([f.agreement for f in self.frames], pixels) / pixels.sum())

    @property
    def max_abs_logits(self) -> float:
        return max(f.max_abs_logits for f in self.frames)

    def describe(self) -> str:
        return (f"labels agree {100 * self.agreement:.3f} % over {len(self.frames)} frame(s), "
                f"max |dlogits| {self.max_abs_logits:.3g}")


def with_logits_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph also returns the upsampled logits, whatever its precision."""
    if any(output.name == LOGITS for output in model.graph.output):
        return model
    inferred = onnx.shape_inference.infer_shapes(model)
    info = {value.name: value for value in inferred.graph.value_info}.get(LOGITS)
    if info is None:
        raise ExportError("this ONNX file has no internal 'logits' tensor (made by an older "
                          "ocr-deploy?); export it again from its checkpoint")
    inferred.graph.output.append(info)
    return inferred


def compare_graphs(reference: onnx.ModelProto, candidate: onnx.ModelProto, meta: ModelMeta,
                   frames: list[tuple[str, np.ndarray]]) -> GraphAgreement:
    from ocr_deploy.backends.onnxrt import cpu_session

    sessions = [cpu_session(with_logits_output(model).SerializeToString())
                for model in (reference, candidate)]
    plan = plan_size(meta)
    results = []
    for name, frame in frames:
        image, _ = prepare_frame(frame, plan, meta.input)
        batch = np.repeat(image[None], meta.input.batch or 1, axis=0)
        feed = {meta.input.name: graph_input(batch, meta.input)}
        (labels_a, logits_a), (labels_b, logits_b) = (_labels_and_logits(s, feed, meta)
                                                      for s in sessions)
        results.append(FrameAgreement(
            name, *image.shape[:2], agreement=float((labels_a == labels_b).mean()),
            max_abs_logits=float(np.abs(logits_a - logits_b).max())))
    return GraphAgreement(tuple(results))


def _labels_and_logits(session, feed: dict, meta: ModelMeta) -> tuple[np.ndarray, np.ndarray]:
    names = [output.name for output in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, feed), strict=True))
    logits = outputs[LOGITS].astype(np.float32)
    labels = outputs[meta.output.name] if meta.output.kind == "labels" else logits.argmax(1)
    return labels, logits
