"""`ocr-deploy build`: a TensorRT engine or an OpenVINO IR from an ocr-deploy ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    BuildBackend,
    echo_rows,
    one_line_errors,
    progress_line,
)
from ocr_deploy.vocabulary import ArtifactFormat, Precision

DEFAULT_BUILD = BuildBackend("tensorrt")


@one_line_errors
def build(
    model: Annotated[Path, typer.Argument(help="An .onnx made by ocr-deploy export "
                                          "(FP32, or FP16 from convert).")],
    backend: Annotated[BuildBackend, typer.Option(help="What to build for.")] = DEFAULT_BUILD,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output file "
                                             "[default: beside the model].")] = None,
    precision: Annotated[Precision | None, typer.Option(
        help="Precision [default: fp16 for tensorrt, fp32 for openvino].")] = None,
    shape: Annotated[str | None, typer.Option(help="Static input size HxW [default: the "
                                              "model's or its dataset's test size].")] = None,
    min_shape: Annotated[str | None, typer.Option(help="Dynamic profile: smallest HxW.")] = None,
    opt_shape: Annotated[str | None, typer.Option(help="Dynamic profile: tuned HxW.")] = None,
    max_shape: Annotated[str | None, typer.Option(help="Dynamic profile: largest HxW.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size [default: 1].")] = None,
    workspace: Annotated[float, typer.Option(help="Builder workspace, GiB.")] = 4.0,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file, read and "
                                                      "updated.")] = None,
    opt_level: Annotated[int, typer.Option(help="Builder optimisation level 0..5.")] = 3,
    tf32: Annotated[bool, typer.Option(help="tensorrt: allow TF32 in FP32 layers (faster on "
                                       "Ampere+, 10-bit mantissas) [default: off].")] = False,
    version_compatible: Annotated[bool, typer.Option(
        help="tensorrt: a plan the lean runtime (tensorrt-lean) and later TensorRT of the same "
             "major version run.")] = False,
    exclude_lean_runtime: Annotated[bool, typer.Option(
        help="tensorrt, with --version-compatible: leave the lean runtime out of the plan "
             "(smaller; run it with tensorrt-lean of the same version).")] = False,
    frames: Annotated[str | None, typer.Option(help="Images to prove a reduced-precision "
                                               "artifact on.")] = None,
    calib: Annotated[str | None, typer.Option(help="Images, folder or video to calibrate INT8 "
                                              "on [default: built-in frames].")] = None,
    artifact_format: Annotated[ArtifactFormat | None, typer.Option(
        "--format", help="openvino: ir (default) or onnx (QDQ, int8 only).")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="openvino: least share of pixels whose labels must match FP32, in % [default: 99.9 "
             "fp32, 99.5 bf16, 99.0 int8].")] = None,
) -> None:
    """Build a TensorRT engine (plan + JSON sidecar) or an OpenVINO IR from an ocr-deploy ONNX."""
    from exporters.builds import BuildOptions, run_build
    from ocr_deploy.preprocess import parse_size

    def size(text: str | None, option: str) -> tuple[int, int] | None:
        return parse_size(text, option) if text else None

    options = BuildOptions(
        model=model, output=out, precision=precision, shape=size(shape, "--shape"),
        min_shape=size(min_shape, "--min-shape"), opt_shape=size(opt_shape, "--opt-shape"),
        max_shape=size(max_shape, "--max-shape"), batch=batch, workspace_gib=workspace,
        timing_cache=timing_cache, opt_level=opt_level, frames=frames, calibration=calib,
        format=artifact_format, min_agreement=None if min_agreement is None else min_agreement / 100,
        tf32=tf32, version_compatible=version_compatible, exclude_lean_runtime=exclude_lean_runtime)
    built = run_build(options, backend=backend.value, log=progress_line)
    typer.echo(f"built {built.path} ({built.file_bytes / 1e6:.1f} MB in {built.seconds:.1f} s)")
    echo_rows(built.rows)
