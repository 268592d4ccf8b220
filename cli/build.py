"""`ocr-deploy build`: a TensorRT engine or an OpenVINO IR from an ocr-deploy ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    BuildBackend,
    check_output_file,
    echo_rows,
    one_line_errors,
    one_size,
    progress_line,
)
from ocr_deploy.vocabulary import ArtifactFormat, Precision

DEFAULT_BUILD = BuildBackend("tensorrt")


@one_line_errors
def build(
    model: Annotated[Path, typer.Argument(help="An .onnx made by ocr-deploy export "
                                          "(FP32, or FP16 from convert).")],
    backend: Annotated[BuildBackend, typer.Option(help="What to build for.")] = DEFAULT_BUILD,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output file.",
                                             show_default="beside the model")] = None,
    precision: Annotated[Precision | None, typer.Option(
        help="Precision.", show_default="fp16 for tensorrt, fp32 for openvino")] = None,
    size: Annotated[str | None, typer.Option(
        help="Static input size HxW.", show_default="the model's or its dataset's test size")] = None,
    min_size: Annotated[str | None, typer.Option(help="Dynamic profile: smallest HxW.",
                                                 show_default="none")] = None,
    opt_size: Annotated[str | None, typer.Option(help="Dynamic profile: tuned HxW.",
                                                 show_default="none")] = None,
    max_size: Annotated[str | None, typer.Option(help="Dynamic profile: largest HxW.",
                                                 show_default="none")] = None,
    shape: Annotated[str | None, typer.Option(hidden=True, help="Old name of --size.")] = None,
    min_shape: Annotated[str | None, typer.Option(hidden=True, help="Old name of --min-size.")] = None,
    opt_shape: Annotated[str | None, typer.Option(hidden=True, help="Old name of --opt-size.")] = None,
    max_shape: Annotated[str | None, typer.Option(hidden=True, help="Old name of --max-size.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size.", show_default="1")] = None,
    workspace: Annotated[float, typer.Option(help="Builder workspace, GiB.")] = 4.0,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file, read and "
                                                      "updated.", show_default="none")] = None,
    opt_level: Annotated[int, typer.Option(help="Builder optimisation level 0..5.")] = 3,
    tf32: Annotated[bool, typer.Option(help="tensorrt: allow TF32 in FP32 layers (faster on "
                                       "Ampere+, 10-bit mantissas).")] = False,
    version_compatible: Annotated[bool, typer.Option(
        help="tensorrt: a plan the lean runtime (tensorrt-lean) and later TensorRT of the same "
             "major version run.")] = False,
    exclude_lean_runtime: Annotated[bool, typer.Option(
        help="tensorrt, with --version-compatible: leave the lean runtime out of the plan "
             "(smaller; run it with tensorrt-lean of the same version).")] = False,
    frames: Annotated[str | None, typer.Option(help="Images to prove a reduced-precision "
                                               "artifact on.", show_default="built-in frames")] = None,
    calib: Annotated[str | None, typer.Option(help="Images, folder or video to calibrate INT8 "
                                              "on.", show_default="built-in frames")] = None,
    artifact_format: Annotated[ArtifactFormat | None, typer.Option(
        "--format", help="openvino: ir, or onnx (QDQ, int8 only).", show_default="ir")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="openvino: least share of pixels whose labels must match FP32, in %.",
        show_default="99.9 fp32, 99.5 bf16, 99.0 int8")] = None,
) -> None:
    """Build a TensorRT engine (plan + JSON sidecar) or an OpenVINO IR from an ocr-deploy ONNX."""
    from exporters.builds import BuildOptions, run_build

    check_output_file(out, "-o")
    options = BuildOptions(
        model=model, output=out, precision=precision,
        shape=one_size("--size", size, **{"--shape": shape}),
        min_shape=one_size("--min-size", min_size, **{"--min-shape": min_shape}),
        opt_shape=one_size("--opt-size", opt_size, **{"--opt-shape": opt_shape}),
        max_shape=one_size("--max-size", max_size, **{"--max-shape": max_shape}), batch=batch, workspace_gib=workspace,
        timing_cache=timing_cache, opt_level=opt_level, frames=frames, calibration=calib,
        format=artifact_format, min_agreement=None if min_agreement is None else min_agreement / 100,
        tf32=tf32, version_compatible=version_compatible, exclude_lean_runtime=exclude_lean_runtime)
    built = run_build(options, backend=backend.value, log=progress_line)
    typer.echo(f"built {built.path} ({built.file_bytes / 1e6:.1f} MB in {built.seconds:.1f} s)")
    echo_rows(built.rows)
