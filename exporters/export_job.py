"""`ocr-deploy export`: checkpoint in, verified ONNX out, nothing half-written on failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from exporters.checkpoint_dataset import dataset_for
from exporters.checkpoint_files import checkpoint_stem
from exporters.checkpoints import BatchNormMode, Checkpoint, load_checkpoint
from exporters.fp16_job import MIN_FP16_AGREEMENT, Fp16Check, make_fp16, verification_frames
from exporters.onnx_files import model_meta
from exporters.verify import MAX_LOGIT_DELTA, MIN_AGREEMENT, Verification
from ocr_deploy import __version__
from ocr_deploy.errors import ConfigError, VerificationError
from ocr_deploy.fileio import atomic_write_bytes, ensure_writable_dir
from ocr_deploy.meta import MIN_SIDE, InputSpec, ModelMeta, OutputSpec, Provenance
from ocr_deploy.postprocess import label_dtype
from ocr_deploy.vocabulary import InputFormat, OutputKind, Precision, parse_choice

if TYPE_CHECKING:
    import onnx

    from exporters.onnx_export import DeployGraph

SUPPORTED_OPSETS = range(17, 24)
EXPORT_PRECISIONS = (Precision.fp32, Precision.fp16)


@dataclass(frozen=True, kw_only=True)
class ExportRequest:
    weights: Path
    output: Path | None = None
    dataset: str | None = None
    output_kind: OutputKind = OutputKind.labels
    input_format: InputFormat = InputFormat.raw
    height: int | None = None
    width: int | None = None
    batch: int | None = None
    opset: int = 17
    config_yaml: Path | None = None
    align_corners: bool | None = None  # None: from --config, else True like every released model
    batch_norm: BatchNormMode = BatchNormMode.auto
    verify: bool = True
    simplify: bool = False
    precision: Precision = Precision.fp32  # fp16: mixed, FP32 OCR islands, proved against FP32
    fp32_islands: bool = True
    min_fp16_agreement: float = MIN_FP16_AGREEMENT


@dataclass(frozen=True)
class ExportResult:
    output: Path
    meta: ModelMeta
    parameters: int
    file_bytes: int
    seconds: float
    checkpoint_layout: str
    verification: Verification | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    fp16: Fp16Check | None = None

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) lines of the export summary."""
        from ocr_deploy.describe import describe_meta

        rows = describe_meta(self.meta)
        rows.insert(1, ("parameters", f"{self.parameters / 1e6:.2f} M"))
        rows.insert(2, ("checkpoint", self.checkpoint_layout))
        if self.verification is None:
            rows.append(("verified", "skipped (--no-verify)"))
        else:
            rows += [("verified", check.describe()) for check in self.verification.checks]
        if self.fp16 is not None:
            rows += self.fp16.rows()
        return rows + [("note", note) for note in self.notes]


def default_output(weights: Path, precision: Precision = Precision.fp32) -> Path:
    suffix = "_fp16.onnx" if precision == "fp16" else ".onnx"
    return weights.with_name(checkpoint_stem(weights) + suffix)


def validate(request: ExportRequest) -> Path:
    """Check options before the slow work starts; returns the output path."""
    parse_choice(OutputKind, request.output_kind, "--output")
    parse_choice(InputFormat, request.input_format, "--input")
    if parse_choice(Precision, request.precision, "--precision") not in EXPORT_PRECISIONS:
        raise ConfigError(f"export writes {' or '.join(EXPORT_PRECISIONS)} graphs; bf16 and int8 "
                          "are built from the FP32 export: ocr-deploy build MODEL.onnx --backend "
                          f"openvino --precision {request.precision}")
    if (request.height is None) != (request.width is None):
        raise ConfigError("give --height and --width together (a static size), or neither")
    for name, side in (("height", request.height), ("width", request.width)):
        if side is not None and side < MIN_SIDE:
            raise ConfigError(f"--{name} {side} is too small; HRNet-OCR needs at least {MIN_SIDE} px")
    if request.batch is not None and request.batch < 1:
        raise ConfigError(f"--batch must be at least 1 (got {request.batch})")
    if request.simplify and not request.verify:
        raise ConfigError("--simplify keeps a simplified graph only if it passes verification; "
                          "drop --no-verify")
    if request.precision == "fp16" and not request.verify:
        raise ConfigError("--precision fp16 is proved against the FP32 graph; drop --no-verify")
    if request.opset not in SUPPORTED_OPSETS:
        raise ConfigError(f"--opset {request.opset} is not supported; use "
                          f"{SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} (17 recommended)")
    output = request.output or default_output(request.weights, request.precision)
    if output.suffix != ".onnx":
        raise ConfigError(f"output {output} should end in .onnx")
    if output.resolve() == request.weights.resolve():
        raise ConfigError("the output path equals the checkpoint path; choose another -o")
    ensure_writable_dir(output.parent.resolve())
    return output


def build_meta(checkpoint: Checkpoint, request: ExportRequest, dataset: str | None,
               notes: list[str]) -> ModelMeta:
    network = checkpoint.network_spec()
    normalisation = checkpoint.output_contract().normalisation
    dataset_spec, note = dataset_for(checkpoint.source, network.num_classes, dataset)
    if note:
        notes.append(note)
    kind = request.output_kind
    dtype = np.dtype(label_dtype(network.num_classes)).name if kind == "labels" else "float32"
    return ModelMeta(
        network=network,
        dataset=dataset_spec,
        input=InputSpec(format=request.input_format, mean=normalisation.mean,
                        std=normalisation.std, batch=request.batch, height=request.height,
                        width=request.width),
        output=OutputSpec(kind=kind, name=kind, dtype=dtype),
        provenance=Provenance(checkpoint.path.name, checkpoint.sha256, __version__,
                              notes=checkpoint.notes))


def _load(request: ExportRequest) -> tuple[Checkpoint, str | None]:
    dataset = request.dataset
    align_corners = request.align_corners
    experiment = None
    if request.config_yaml is not None:
        from exporters.reference_yaml import read_reference_yaml

        experiment = read_reference_yaml(request.config_yaml)
        dataset = dataset or experiment.dataset
        if align_corners is None:
            align_corners = experiment.config.align_corners
    checkpoint = load_checkpoint(request.weights, batch_norm=request.batch_norm,
                                 align_corners=align_corners)
    if experiment is not None:
        from exporters.reference_yaml import cross_check

        cross_check(experiment, checkpoint.config, request.config_yaml)
    return checkpoint, dataset


def run_export(request: ExportRequest, *, log: Callable[[str], None] = lambda _: None) -> ExportResult:
    started = time.perf_counter()
    output = validate(request)
    checkpoint, dataset = _load(request)
    notes: list[str] = list(checkpoint.notes)
    meta = build_meta(checkpoint, request, dataset, notes)
    model = checkpoint.build_model()
    log(f"exporting {meta.network.title} {meta.network.variant} (K={meta.num_classes}) with "
        f"opset {request.opset}")

    from exporters.onnx_export import DeployGraph, export_graph, without_verification_output

    onnx_model = export_graph(model, meta, opset=request.opset)
    verification = None
    if request.verify:
        onnx_model, verification = _verified(onnx_model, DeployGraph(model, meta).eval(), meta,
                                             simplify=request.simplify, notes=notes, log=log)
    final = without_verification_output(onnx_model, meta)
    fp16_check = None
    if request.precision == "fp16":
        log("converting to mixed FP16 and comparing with FP32 on ONNX Runtime (CPU)")
        final, fp16_check = make_fp16(final, meta, verification_frames(meta),
                                      fp32_islands=request.fp32_islands,
                                      min_agreement=request.min_fp16_agreement)
        meta = model_meta(final, source=str(output))  # the conversion records its precision
    data = final.SerializeToString()
    atomic_write_bytes(output, data)
    return ExportResult(output=output, meta=meta,
                        parameters=sum(p.numel() for p in model.parameters()),
                        file_bytes=len(data), seconds=time.perf_counter() - started,
                        checkpoint_layout=checkpoint.layout, verification=verification,
                        notes=tuple(notes), fp16=fp16_check)


def _verified(onnx_model: onnx.ModelProto, graph: DeployGraph, meta: ModelMeta, *, simplify: bool,
              notes: list[str], log: Callable[[str], None]) -> tuple[onnx.ModelProto, Verification]:
    """The graph to save and its verification; a simplified graph is kept only if it passes."""
    from exporters.verify import verify_export

    candidates = [onnx_model]
    if simplify:
        import onnxslim

        log("simplifying the graph with onnxslim")
        candidates.insert(0, onnxslim.slim(onnx_model))
    log("verifying against PyTorch on ONNX Runtime (CPU)")
    for index, candidate in enumerate(candidates):
        verification = verify_export(graph, candidate, meta)
        if verification.passed:
            if simplify and index == 0:
                notes.append(f"simplified with onnxslim: {len(onnx_model.graph.node)} -> "
                             f"{len(candidate.graph.node)} nodes")
            elif simplify:
                notes.append("onnxslim changed the results; kept the unsimplified graph")
            return candidate, verification
    failed = next(check for check in verification.checks if not check.passed)
    raise VerificationError(
        f"the exported graph disagrees with PyTorch at {failed.describe()} (needed labels >= "
        f"{100 * MIN_AGREEMENT:.1f} % and max |dlogits| <= {MAX_LOGIT_DELTA:g}); no file was "
        "written. Try another --opset, and report it if that does not help")
