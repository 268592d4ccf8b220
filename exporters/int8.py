"""INT8 by NNCF post-training quantization, proved against FP32 on held-out frames.

Quantizing everything costs HRNet-OCR a tenth of its labels: the OCR softmaxes (the gather
softmax spans every pixel of the 1/4 map, the attention softmax sits between two MatMuls) and
the classifiers whose logits feed them or the final ArgMax need a finer grid than 8 bits, and
so does the first convolution: its input is the normalised image, three channels of different
ranges on one per-tensor grid (on the demo model it alone costs 1.5 % of the labels at 512x1024
and 0.25 % at 256x512, for a few per cent of the INT8 speed). All are found by graph structure,
on the graph NNCF quantizes (ONNX node names for the QDQ ONNX, OpenVINO friendly names for the
IR, where a Conv with bias becomes `<name>/WithoutBiases` plus an Add), and passed to NNCF as
an IgnoredScope; the speed comes from the other convolutions.

The quantized graph is compared with the FP32 graph on frames NNCF never saw: OpenVINO f32
against the INT8 IR compiled as the OpenVINO backend compiles it (its inference hint for int8,
which sets the precision of the layers left in float), ONNX Runtime against ONNX Runtime
for the QDQ file (OpenVINO when ONNX Runtime cannot run it, and the check says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from exporters.graph_compare import FrameAgreement, GraphAgreement, compare_graphs
from exporters.int8_scope import KeptInFloat, kept_in_float
from exporters.onnx_files import LOGITS, load_model
from ocr_deploy.errors import ConfigError, ModelFileError, OcrDeployError, VerificationError
from ocr_deploy.meta import ModelMeta
from ocr_deploy.preprocess import graph_input, plan_size, prepare_frame
from ocr_deploy.testframes import synthetic_frame
from ocr_deploy.vocabulary import Precision

if TYPE_CHECKING:
    import openvino as ov

MIN_INT8_AGREEMENT = 0.99  # INT8 graph vs FP32 graph, share of held-out pixels with equal labels
MIN_CALIBRATION_FRAMES = 8
CALIBRATION_FRAMES = 16  # the default count, built-in or from --calib
BUILT_IN_SIZES = ((256, 512), (512, 1024))  # a dynamic model's calibration sizes
_SYNTHETIC_SEED = 1000  # verification_frames uses seeds 0.., so built-in frames stay distinct
_VIDEO_STRIDE = 10  # consecutive video frames are near copies: take every 10th
_FIX = "give --calib an image folder, glob or video with more (and more varied) frames, or use bf16"

Frames = list[tuple[str, np.ndarray]]


class CalibrationError(ConfigError):
    """Calibration frames that cannot be read, are too few, or overlap the held-out frames."""


# --- calibration frames --------------------------------------------------------------------

def calibration_frames(meta: ModelMeta, spec: str | None, *,
                       count: int = CALIBRATION_FRAMES) -> Frames:
    """Up to `count` named uint8 BGR frames: from an image folder, glob, image or video (every
    10th frame), or built in: street-like synthetic frames at the model's fixed size (a dynamic
    model: 256x512 and 512x1024) and frames of the shipped demo video. Fewer than 8 -> one line."""
    if spec is None:
        frames = _built_in_frames(meta, count)
    else:
        frames = _read_calibration(spec, count)
    if len(frames) < MIN_CALIBRATION_FRAMES:
        where = spec or "the built-in frames"
        raise CalibrationError(f"only {len(frames)} readable calibration frame(s) in {where}; "
                               f"INT8 calibration needs at least {MIN_CALIBRATION_FRAMES}: {_FIX}")
    return frames


def _built_in_frames(meta: ModelMeta, count: int) -> Frames:
    from ocr_deploy.assets import demo_video

    sizes = [meta.input.fixed_size] if meta.input.fixed_size else list(BUILT_IN_SIZES)
    synthetic = []
    for index in range(count - count // 2):
        height, width = sizes[index % len(sizes)]
        synthetic.append((f"synthetic {height}x{width} #{index}",
                          synthetic_frame(height, width, seed=_SYNTHETIC_SEED + index)))
    return synthetic + _read_calibration(str(demo_video()), count // 2)


def _read_calibration(spec: str, count: int) -> Frames:
    from ocr_deploy.sources import VIDEO_SUFFIXES, read_frames

    if count < 1:
        return []
    stride = _VIDEO_STRIDE if Path(spec).suffix.lower() in VIDEO_SUFFIXES else 1
    try:
        return read_frames([spec], max_frames=count, stride=stride)
    except OcrDeployError as error:
        raise CalibrationError(f"calibration frames: {error}; {_FIX}") from None


def _feeds(meta: ModelMeta, frames: Frames, *, role: str) -> list[np.ndarray]:
    """Each frame as the graph takes it (placed by the model's size plan, batch filled)."""
    plan = plan_size(meta)
    feeds = []
    for name, frame in frames:
        try:
            image, _ = prepare_frame(frame, plan, meta.input)
        except OcrDeployError as error:
            raise CalibrationError(f"{role} frame {name}: {error}") from None
        feeds.append(graph_input(np.repeat(image[None], meta.input.batch or 1, axis=0), meta.input))
    return feeds


def _check_frames(calibration: Frames, held_out: Frames) -> None:
    if len(calibration) < MIN_CALIBRATION_FRAMES:
        raise CalibrationError(f"only {len(calibration)} calibration frame(s); INT8 calibration "
                               f"needs at least {MIN_CALIBRATION_FRAMES}: {_FIX}")
    if not held_out:
        raise CalibrationError("no held-out frames to prove the INT8 graph on; give frames that "
                               "calibration did not use")
    seen = {hashlib.sha256(np.ascontiguousarray(frame).tobytes()).digest()
            for _, frame in calibration}
    for name, frame in held_out:
        if hashlib.sha256(np.ascontiguousarray(frame).tobytes()).digest() in seen:
            raise CalibrationError(f"held-out frame {name} is also a calibration frame; prove "
                                   "INT8 on frames NNCF did not see")


# --- quantization and its proof ------------------------------------------------------------

@dataclass(frozen=True)
class QuantizationCheck:
    """How the INT8 graph compares with FP32 on held-out frames, and how it was made."""

    comparison: GraphAgreement
    kept: KeptInFloat
    calibration_frames: int
    held_out_frames: int
    runtime: str  # what ran both graphs
    onnxruntime_error: str | None = None  # QDQ ONNX only: why ONNX Runtime cannot run it

    @property
    def agreement(self) -> float:
        return self.comparison.agreement

    @property
    def max_abs_logits(self) -> float:
        return self.comparison.max_abs_logits

    @property
    def ignored_nodes(self) -> int:
        return len(self.kept.names)

    def rows(self) -> list[tuple[str, str]]:
        rows = [("int8 vs fp32", f"{self.comparison.describe()} (held out), on {self.runtime}"),
                ("quantization", f"NNCF post-training, {self.calibration_frames} calibration "
                                 f"frame(s); {self.kept.describe()}")]
        if self.onnxruntime_error is not None:
            rows.append(("onnxruntime", f"cannot run this QDQ file: {self.onnxruntime_error}"))
        return rows


def quantize_to_ir(onnx_path: Path, meta: ModelMeta, calibration: Frames, held_out: Frames, *,
                   min_agreement: float = MIN_INT8_AGREEMENT) -> tuple[ov.Model, QuantizationCheck]:
    """The FP32 ONNX read by OpenVINO, quantized by NNCF, proved on held-out frames."""
    import openvino as ov

    _check_frames(calibration, held_out)
    fp32 = _read_openvino(onnx_path)
    kept = kept_in_float(fp32)
    int8 = _quantize(fp32, kept, _feeds(meta, calibration, role="calibration"),
                     lambda feed: {meta.input.name: feed})
    comparison = _openvino_agreement(fp32, int8, meta, held_out)
    check = QuantizationCheck(comparison, kept, len(calibration), len(held_out),
                              f"OpenVINO {ov.get_version().split('-')[0]} CPU")
    require_agreement(check, min_agreement)
    return int8, check


def quantize_to_onnx(onnx_path: Path, meta: ModelMeta, calibration: Frames, held_out: Frames, *,
                     min_agreement: float = MIN_INT8_AGREEMENT,
                     ) -> tuple[onnx.ModelProto, QuantizationCheck]:
    """The FP32 ONNX quantized by NNCF's ONNX backend to a QDQ ONNX, proved on held-out frames
    with ONNX Runtime (with OpenVINO, and the reason recorded, where ONNX Runtime fails)."""
    _check_frames(calibration, held_out)
    fp32, _ = load_model(onnx_path)
    kept = kept_in_float(fp32)
    int8 = _quantize(fp32, kept, _feeds(meta, calibration, role="calibration"),
                     lambda feed: {meta.input.name: feed})
    if not int8.metadata_props:
        int8.metadata_props.extend(fp32.metadata_props)
    comparison, runtime, failure = qdq_agreement(fp32, int8, meta, held_out)
    check = QuantizationCheck(comparison, kept, len(calibration), len(held_out), runtime, failure)
    require_agreement(check, min_agreement)
    return int8, check


def _read_openvino(onnx_path: Path) -> ov.Model:
    import openvino as ov

    if not onnx_path.is_file():
        raise ModelFileError(f"model not found: {onnx_path}")
    try:
        return ov.Core().read_model(str(onnx_path))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelFileError(f"OpenVINO cannot read {onnx_path} ({first})") from None


def _quantize(model: Any, kept: KeptInFloat, feeds: list[np.ndarray],
              transform: Callable[[np.ndarray], dict]) -> Any:
    """nncf.quantize with the CNN defaults (symmetric INT8 weights and activations, fast bias
    correction), the float nodes ignored, every calibration frame used."""
    import nncf

    with _quiet_nncf():
        return nncf.quantize(model, nncf.Dataset(feeds, transform), subset_size=len(feeds),
                             preset=nncf.QuantizationPreset.PERFORMANCE,
                             ignored_scope=nncf.IgnoredScope(names=list(kept.names)))


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs a line per ignored node at INFO; keep its warnings, restore the level after.
    Its progress bars (rich, on stdout) go to stderr, so a command's stdout stays its report."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        logger.setLevel(level)


def require_agreement(check: QuantizationCheck, min_agreement: float) -> None:
    """Refuse an INT8 graph whose held-out labels agree with FP32 less than `min_agreement`."""
    if check.agreement < min_agreement:
        raise VerificationError(
            f"the INT8 graph agrees with FP32 on only {100 * check.agreement:.3f} % of held-out "
            f"pixels (< {100 * min_agreement:.2f} %); nothing written: {_FIX}")


def _openvino_agreement(reference: ov.Model, candidate: ov.Model, meta: ModelMeta,
                        frames: Frames) -> GraphAgreement:
    """OpenVINO f32 for the reference; the candidate compiled as the backend compiles int8."""
    import openvino as ov

    from ocr_deploy.backends.openvino import inference_hint

    core = ov.Core()
    hints = ("f32", inference_hint(Precision.int8))
    compiled = [core.compile_model(_with_logits(model), "CPU", {"INFERENCE_PRECISION_HINT": hint})
                for model, hint in zip((reference, candidate), hints, strict=True)]
    results = []
    for (name, _), feed in zip(frames, _feeds(meta, frames, role="held-out"), strict=True):
        (labels_a, logits_a), (labels_b, logits_b) = (_labels_and_logits(model, feed, meta)
                                                      for model in compiled)
        gap = float(np.abs(logits_a - logits_b).max()) if logits_a is not None else float("nan")
        results.append(FrameAgreement(name, *labels_a.shape[-2:],
                                      agreement=float((labels_a == labels_b).mean()),
                                      max_abs_logits=gap))
    return GraphAgreement(tuple(results))


def _with_logits(model: ov.Model) -> ov.Model:
    """A copy that also returns the upsampled logits where the graph names them."""
    copy = model.clone()
    if not any(LOGITS in output.get_names() for output in copy.outputs):
        with contextlib.suppress(RuntimeError):  # no such tensor: labels only
            copy.add_outputs(LOGITS)
    return copy


def _labels_and_logits(compiled: Any, feed: np.ndarray, meta: ModelMeta,
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    outputs = compiled(feed)
    by_name = {name: outputs[port] for port in compiled.outputs for name in port.get_names()}
    logits = by_name.get(LOGITS)
    logits = None if logits is None else np.asarray(logits, dtype=np.float32)
    if meta.output.kind == "labels":
        return np.asarray(by_name[meta.output.name]), logits
    scores = np.asarray(by_name[meta.output.name], dtype=np.float32)
    return scores.argmax(1), logits if logits is not None else scores


def qdq_agreement(fp32: onnx.ModelProto, int8: onnx.ModelProto, meta: ModelMeta, frames: Frames,
                  ) -> tuple[GraphAgreement, str, str | None]:
    """Both graphs on ONNX Runtime; where it cannot run the QDQ graph, both on OpenVINO, and the
    reason ONNX Runtime gave (one line) as the third item."""
    try:
        return compare_graphs(fp32, int8, meta, frames), "ONNX Runtime CPU", None
    except OcrDeployError:
        raise
    except Exception as error:  # ONNX Runtime refusing the QDQ graph: say so, prove elsewhere
        failure = " ".join(str(error).split())[:200] or type(error).__name__
        return _qdq_on_openvino(fp32, int8, meta, frames), "OpenVINO CPU", failure


def _qdq_on_openvino(fp32: onnx.ModelProto, int8: onnx.ModelProto, meta: ModelMeta,
                     frames: Frames) -> GraphAgreement:
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="ocr-deploy-int8-") as folder:
        paths = [Path(folder, f"{kind}.onnx") for kind in ("fp32", "int8")]
        for path, model in zip(paths, (fp32, int8), strict=True):
            onnx.save(model, str(path))
        reference, candidate = (ov.Core().read_model(str(path)) for path in paths)
        return _openvino_agreement(reference, candidate, meta, frames)
