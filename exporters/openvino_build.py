"""`ocr-deploy build MODEL.onnx --backend openvino`: OpenVINO artifacts of an FP32 ocr-deploy ONNX.

fp32 and bf16 are one IR (.xml + .bin) with FP32 weights; the precision in its metadata tells
the backend which inference hint to compile with. int8 is NNCF post-training quantization
(exporters.int8), as an IR or, with --format onnx, a QDQ ONNX file that ONNX Runtime runs too.
Every build is proved before anything is written: it runs on the backend that will run it and
its labels are compared with ONNX Runtime FP32 on held-out frames. The IR's two files are written
under temporary names and renamed when both are complete.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from exporters.builds import BuildOptions, BuiltArtifact, refuse_unused
from exporters.compare import Comparison, compare
from exporters.verify import VERIFICATION_SIZES
from ocr_deploy.backends import Backend
from ocr_deploy.backends.openvino import import_openvino, require_bf16
from ocr_deploy.errors import ConfigError, ExportError, VerificationError
from ocr_deploy.fileio import atomic_write_bytes, ensure_writable_dir
from ocr_deploy.meta import META_KEY, ModelMeta
from ocr_deploy.testframes import synthetic_frame
from ocr_deploy.vocabulary import ArtifactFormat, Precision, parse_choice

if TYPE_CHECKING:
    from exporters.int8 import QuantizationCheck

# Least share of pixels whose labels equal ONNX Runtime FP32's, per precision (issue 11's gates).
MIN_AGREEMENT = {Precision.fp32: 0.999, Precision.bf16: 0.995, Precision.int8: 0.99}
HELD_OUT_SEED = 10_000  # synthetic proof frames start here: never among calibration frames
MAX_PROOF_FRAMES = 16


@dataclass(frozen=True)
class BackendAgreement:
    """Labels of a candidate backend vs a reference backend, frame by frame (a Comparison of
    exporters.compare: the same pre- and post-processing, the reference's size plan)."""

    comparison: Comparison

    @property
    def agreement(self) -> float:
        """Share of all pixels (over every frame) whose labels agree."""
        return self.comparison.agreement

    def describe(self) -> str:
        frames = self.comparison.frames
        worst = min(frames, key=lambda f: f.agreement)
        return (f"labels agree {100 * self.agreement:.3f} % over {len(frames)} held-out "
                f"frame(s) (lowest {100 * worst.agreement:.3f} %, {worst.name})")


def held_out_frames(meta: ModelMeta, spec: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Frames a build is proved on: those of `spec` (image, folder, glob, video; up to 16), else
    frames of the shipped demo video (held-out generated streets; frames 5, 35, 65, 95, never
    among the built-in INT8 calibration frames, which take every 10th from frame 0) and
    street-like synthetic frames at the verification sizes, with seeds no calibration uses.
    Without a fixed input, frames keep their sizes."""
    from ocr_deploy.sources import read_frames

    if spec is not None:
        return read_frames([spec], max_frames=MAX_PROOF_FRAMES)
    from ocr_deploy.assets import demo_video

    video = read_frames([str(demo_video())], max_frames=20, stride=5)[1::6]
    sizes = [meta.input.fixed_size] if meta.input.fixed_size else list(VERIFICATION_SIZES)
    seeds = range(HELD_OUT_SEED, HELD_OUT_SEED + len(sizes))
    return video + [(f"synthetic {h}x{w} #{seed}", synthetic_frame(h, w, seed=seed))
                    for seed, (h, w) in zip(seeds, sizes, strict=True)]


def backend_agreement(reference: Backend, candidate: Backend,
                      frames: list[tuple[str, np.ndarray]]) -> BackendAgreement:
    """Run both backends on the same prepared frames (the reference's metadata sizes them)."""
    return BackendAgreement(compare(reference, candidate, frames))


@dataclass(frozen=True, kw_only=True)
class OpenVinoBuildRequest:
    """An FP32 ocr-deploy ONNX in; an OpenVINO IR (or an int8 QDQ ONNX) out, proved first."""

    onnx: Path
    output: Path | None = None  # default: <model>_<precision>.xml (or _int8.onnx)
    precision: Precision = Precision.fp32
    calibration: str | None = None  # int8: frames to calibrate on [default: built-in frames]
    calibration_count: int | None = None  # int8: frames taken [default: exporters.int8's]
    format: ArtifactFormat = ArtifactFormat.ir
    frames: str | None = None  # held-out frames to prove the build on [default: synthetic]
    min_agreement: float | None = None  # default: MIN_AGREEMENT[precision]


@dataclass(frozen=True)
class OpenVinoBuildResult:
    path: Path
    meta: ModelMeta
    file_bytes: int  # the .bin (IR) or the .onnx file
    seconds: float
    proof: BackendAgreement | None  # fp32/bf16: against ONNX Runtime FP32
    check: QuantizationCheck | None = None  # int8: exporters.int8's proof

    def rows(self) -> list[tuple[str, str]]:
        precision = self.meta.provenance.precision
        kind = "QDQ ONNX" if self.path.suffix == ".onnx" else "OpenVINO IR"
        rows = [("artifact", f"{kind}, {precision}" + (", FP32 weights, bf16 inference hint"
                                                       if precision == Precision.bf16 else ""))]
        if self.proof is not None:
            rows.append((f"{precision} vs onnxruntime fp32", self.proof.describe()))
        if self.check is not None:
            rows += self.check.rows()
        if self.path.suffix == ".xml":
            rows.append(("weights", f"{self.path.with_suffix('.bin').name}, "
                                    f"{self.file_bytes / 1e6:.1f} MB"))
        return rows


def default_output(onnx: Path, precision: Precision, artifact_format: ArtifactFormat) -> Path:
    suffix = ".onnx" if artifact_format is ArtifactFormat.onnx else ".xml"
    return onnx.with_name(f"{onnx.stem}_{precision.value}{suffix}")


@contextmanager
def atomic_ir(final: Path) -> Iterator[Path]:
    """A temporary .xml path beside `final` (its .bin goes beside it); on success the .bin and
    then the .xml are renamed onto the final names, on failure both are removed."""
    temporary = final.with_name(f".{final.stem}.{secrets.token_hex(4)}.partial.xml")
    try:
        yield temporary
        os.replace(temporary.with_suffix(".bin"), final.with_suffix(".bin"))
        try:
            os.replace(temporary, final)
        except OSError:
            final.with_suffix(".bin").unlink(missing_ok=True)  # never a .bin of another .xml
            raise
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_suffix(".bin").unlink(missing_ok=True)


def save_ir(model: Any, meta: ModelMeta, path: Path) -> None:
    """Our metadata into the IR's rt_info (the stale copy OpenVINO's ONNX front end keeps under
    'framework' goes), weights kept FP32."""
    import openvino as ov

    if model.has_rt_info(["framework", META_KEY]):  # the RTMap is a copy below the top level
        framework = model.get_rt_info()["framework"]
        others = {key: framework[key].astype(str) for key in framework if key != META_KEY}
        del model.get_rt_info()["framework"]
        for key, value in others.items():
            model.set_rt_info(value, ["framework", key])
    model.set_rt_info(meta.to_json(), META_KEY)
    ov.save_model(model, str(path), compress_to_fp16=False)


def _source_meta(onnx: Path) -> ModelMeta:
    from ocr_deploy.backends.onnxrt import read_meta

    meta = read_meta(onnx)  # one line for a missing, unreadable or foreign ONNX
    if meta.provenance.precision != Precision.fp32:
        raise ConfigError(f"{onnx} is {meta.provenance.precision}; build OpenVINO artifacts "
                          "from the FP32 export (`ocr-deploy export CHECKPOINT`)")
    return meta


def _prove(onnx: Path, candidate: Path, frames: list[tuple[str, np.ndarray]], *,
           precision: Precision, min_agreement: float) -> BackendAgreement:
    from ocr_deploy.backends.onnxrt import OnnxRuntimeBackend
    from ocr_deploy.backends.openvino import OpenVinoBackend

    reference = OnnxRuntimeBackend(onnx, device="cpu")
    built = OpenVinoBackend(candidate, device="cpu", cache=False)
    try:
        proof = backend_agreement(reference, built, frames)
    finally:
        built.close()
    if proof.agreement < min_agreement:
        raise VerificationError(
            f"the OpenVINO {precision.value} build agrees with ONNX Runtime FP32 on only "
            f"{100 * proof.agreement:.3f} % of pixels (< {100 * min_agreement:.2f} %); nothing "
            "was written. Keep fp32, check with your own images (--frames), or lower the "
            "threshold knowingly")
    return proof


def _build_float(request: OpenVinoBuildRequest, meta: ModelMeta, output: Path,
                 precision: Precision, min_agreement: float,
                 log: Callable[[str], None]) -> tuple[BackendAgreement, ModelMeta]:
    ov = import_openvino()
    log(f"converting {request.onnx.name} with OpenVINO {ov.__version__.split('-')[0]}")
    try:
        model = ov.convert_model(str(request.onnx))
    except Exception as error:  # the front end raises its own types, not importable portably
        raise ExportError(f"OpenVINO cannot convert {request.onnx} ({error})") from None
    meta = meta.with_precision(precision)
    frames = held_out_frames(meta, request.frames)
    with atomic_ir(output) as temporary:
        save_ir(model, meta, temporary)
        log(f"proving {precision.value} against ONNX Runtime FP32 on {len(frames)} frame(s)")
        proof = _prove(request.onnx, temporary, frames, precision=precision,
                       min_agreement=min_agreement)
    return proof, meta


def _build_int8(request: OpenVinoBuildRequest, meta: ModelMeta, output: Path,
                min_agreement: float, log: Callable[[str], None]
                ) -> tuple[QuantizationCheck, ModelMeta]:
    from exporters import int8

    count = request.calibration_count or int8.CALIBRATION_FRAMES
    calibration = int8.calibration_frames(meta, request.calibration, count=count)
    held_out = held_out_frames(meta, request.frames)
    log(f"quantizing to INT8 on {len(calibration)} calibration frame(s), proving on "
        f"{len(held_out)} held-out frame(s)")
    if request.format is ArtifactFormat.onnx:
        from exporters.onnx_files import write_meta

        proto, check = int8.quantize_to_onnx(request.onnx, meta, calibration, held_out,
                                             min_agreement=min_agreement)
        meta = meta.with_precision(Precision.int8)
        write_meta(proto, meta)
        atomic_write_bytes(output, proto.SerializeToString())
        return check, meta
    model, check = int8.quantize_to_ir(request.onnx, meta, calibration, held_out,
                                       min_agreement=min_agreement)
    meta = meta.with_precision(Precision.int8)
    with atomic_ir(output) as temporary:
        save_ir(model, meta, temporary)
    return check, meta


def build_openvino(request: OpenVinoBuildRequest, *,
                   log: Callable[[str], None] = lambda _: None) -> OpenVinoBuildResult:
    started = time.perf_counter()
    precision = parse_choice(Precision, request.precision, "--precision")
    artifact_format = parse_choice(ArtifactFormat, request.format, "--format")
    if precision not in MIN_AGREEMENT:
        raise ConfigError(f"OpenVINO builds fp32, bf16 or int8, not {precision.value} (an FP16 "
                          "graph is for TensorRT: `ocr-deploy convert`)")
    if artifact_format is ArtifactFormat.onnx and precision is not Precision.int8:
        raise ConfigError("--format onnx writes a quantized (QDQ) ONNX: use it with --precision "
                          "int8; for fp32 the export itself runs on OpenVINO (--backend openvino)")
    if request.calibration is not None and precision is not Precision.int8:
        raise ConfigError("--calib calibrates an INT8 build; use it with --precision int8")
    meta = _source_meta(request.onnx)
    ov = import_openvino()  # one line with the install command before any work
    if precision is Precision.bf16:
        require_bf16(ov.Core(), what=f"a bf16 build of {request.onnx.name}")
    output = request.output or default_output(request.onnx, precision, artifact_format)
    wanted = ".onnx" if artifact_format is ArtifactFormat.onnx else ".xml"
    if output.suffix.lower() != wanted:
        raise ConfigError(f"--format {artifact_format.value} writes a {wanted} file, not "
                          f"{output.name}; name the output *{wanted}")
    ensure_writable_dir(output.parent.resolve())
    min_agreement = (MIN_AGREEMENT[precision] if request.min_agreement is None
                     else request.min_agreement)
    proof, check = None, None
    if precision is Precision.int8:
        check, meta = _build_int8(request, meta, output, min_agreement, log)
    else:
        proof, meta = _build_float(request, meta, output, precision, min_agreement, log)
    size_of = output.with_suffix(".bin") if output.suffix == ".xml" else output
    return OpenVinoBuildResult(output, meta, size_of.stat().st_size, time.perf_counter() - started,
                               proof, check)


def build_from_options(options: BuildOptions, *, log: Callable[[str], None] = lambda _: None
                       ) -> BuiltArtifact:
    """The `build --backend openvino` row of exporters.builds."""
    refuse_unused(options, "openvino", shape=None, min_shape=None, opt_shape=None,
                  max_shape=None, batch=None, workspace_gib=4.0, timing_cache=None, opt_level=3)
    result = build_openvino(OpenVinoBuildRequest(
        onnx=options.model, output=options.output, precision=options.precision or Precision.fp32,
        calibration=options.calibration, format=options.format or ArtifactFormat.ir,
        frames=options.frames, min_agreement=options.min_agreement), log=log)
    return BuiltArtifact(result.path, result.file_bytes, result.seconds, result.rows())
