"""`ocr-deploy convert MODEL.onnx --precision fp16` and `export --precision fp16`.

The FP16 graph is proved against the FP32 graph on ONNX Runtime's CPU provider before it is
written: labels must agree on >= 99.9 % of pixels (by default); max |dlogits| is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from exporters.fp16 import PrecisionBreakdown, find_fp32_islands, precision_breakdown, to_mixed_fp16
from exporters.graph_compare import GraphAgreement, compare_graphs
from exporters.onnx_files import load_model, model_meta
from exporters.verify import VERIFICATION_SIZES
from ocr_deploy.errors import ConfigError, VerificationError
from ocr_deploy.fileio import atomic_write_bytes, ensure_writable_dir
from ocr_deploy.meta import ModelMeta
from ocr_deploy.testframes import synthetic_frame
from ocr_deploy.vocabulary import Precision, parse_choice

MIN_FP16_AGREEMENT = 0.999  # FP16 graph vs FP32 graph, share of pixels with equal labels


@dataclass(frozen=True)
class Fp16Check:
    agreement: GraphAgreement
    before: PrecisionBreakdown
    after: PrecisionBreakdown
    islands: int

    def rows(self) -> list[tuple[str, str]]:
        return [("fp16 vs fp32", self.agreement.describe()),
                ("precision", f"{self.after.describe()} ({self.islands} FP32 island(s))")]


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    meta: ModelMeta
    check: Fp16Check
    file_bytes: int
    seconds: float


def verification_frames(meta: ModelMeta, frames: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Street-like synthetic frames at the export's verification sizes and at the model's
    deployment size (where the gather softmax spans the most pixels), or the frames of
    a folder/glob/file/video (up to 16)."""
    if frames is None:
        sizes = [meta.input.fixed_size] if meta.input.fixed_size else list(VERIFICATION_SIZES)
        if meta.deployment_size() not in (None, *sizes):
            sizes.append(meta.deployment_size())
        return [(f"synthetic {h}x{w}", synthetic_frame(h, w, seed=i)) for i, (h, w) in enumerate(sizes)]
    from ocr_deploy.sources import read_frames

    return read_frames([frames], max_frames=16)


def make_fp16(fp32: onnx.ModelProto, meta: ModelMeta, frames: list[tuple[str, np.ndarray]], *,
              fp32_islands: bool = True, min_agreement: float = MIN_FP16_AGREEMENT,
              ) -> tuple[onnx.ModelProto, Fp16Check]:
    """Convert, compare with the FP32 graph, and refuse a graph that disagrees."""
    fp16 = to_mixed_fp16(fp32, fp32_islands=fp32_islands)
    check = Fp16Check(compare_graphs(fp32, fp16, meta, frames), precision_breakdown(fp32),
                      precision_breakdown(fp16), len(find_fp32_islands(fp32)) if fp32_islands else 0)
    if check.agreement.agreement < min_agreement:
        raise VerificationError(
            f"the FP16 graph agrees with FP32 on only {100 * check.agreement.agreement:.3f} % of "
            f"pixels (< {100 * min_agreement:.2f} %); this model is not FP16-safe on these frames. "
            "Keep FP32, check with your own images (--frames), or lower --min-agreement knowingly")
    return fp16, check


def default_fp16_output(model: Path) -> Path:
    return model.with_name(f"{model.stem}_fp16.onnx")


@dataclass(frozen=True, kw_only=True)
class ConvertRequest:
    """`ocr-deploy convert`: an FP32 ocr-deploy ONNX in, a proved mixed-FP16 ONNX out."""

    model: Path
    output: Path | None = None  # default: <model>_fp16.onnx
    precision: Precision = Precision.fp16
    fp32_islands: bool = True
    frames: str | None = None  # images (file, folder, glob, video) to prove it on
    min_agreement: float = MIN_FP16_AGREEMENT


def run_convert(request: ConvertRequest) -> ConvertResult:
    started = time.perf_counter()
    if parse_choice(Precision, request.precision, "--precision") is not Precision.fp16:
        raise ConfigError("convert makes FP16 graphs; `ocr-deploy export` makes FP32 ones")
    output = request.output or default_fp16_output(request.model)
    ensure_writable_dir(output.parent.resolve())
    fp32, meta = load_model(request.model)
    if meta.provenance.precision != Precision.fp32:
        raise ConfigError(f"{request.model} is already {meta.provenance.precision}; convert the "
                          "FP32 export instead")
    fp16, check = make_fp16(fp32, meta, verification_frames(meta, request.frames),
                            fp32_islands=request.fp32_islands, min_agreement=request.min_agreement)
    data = fp16.SerializeToString()
    atomic_write_bytes(output, data)
    return ConvertResult(output, model_meta(fp16, source=str(output)), check, len(data),
                         time.perf_counter() - started)
