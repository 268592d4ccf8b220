"""`ocr-deploy export`: a checkpoint to one verified ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    Dataset,
    check_output_file,
    echo_rows,
    one_line_errors,
    one_size,
    progress_line,
)
from exporters.checkpoints import BatchNormMode
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.vocabulary import InputFormat, OutputKind, Precision


@one_line_errors
def export(
    weights: Annotated[Path, typer.Argument(
        help="Checkpoint of HRNet-OCR, OCR or OCNet from the reference, openseg.pytorch, OCNet.pytorch "
             "or mmsegmentation (.pth, .pth.tar, .pt, .safetensors).")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output .onnx path.",
                                             show_default="beside the checkpoint")] = None,
    dataset: Annotated[Dataset | None, typer.Option(help="Class names, palette and test policy.",
                                                    show_default="inferred from K")] = None,
    output: Annotated[OutputKind, typer.Option(help="What the graph returns.")] = OutputKind.labels,
    input_format: Annotated[InputFormat, typer.Option(
        "--input", help="raw: uint8 BGR HWC frames, normalised inside the graph; normalized: "
                        "float32 NCHW for other toolchains.")] = InputFormat.raw,
    size: Annotated[str | None, typer.Option(help="Static input size HxW, e.g. 512x1024.",
                                             show_default="dynamic")] = None,
    height: Annotated[int | None, typer.Option(hidden=True, help="Old: --size's height.")] = None,
    width: Annotated[int | None, typer.Option(hidden=True, help="Old: --size's width.")] = None,
    batch: Annotated[int | None, typer.Option(help="Static batch size.",
                                              show_default="dynamic")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    config: Annotated[Path | None, typer.Option(help="Reference experiment YAML, cross-checked "
                                                "against the weights.", show_default="none")] = None,
    align_corners: Annotated[bool | None, typer.Option(
        "--align-corners/--no-align-corners",
        help="Resize mode of the model.", show_default="from --config, else align-corners")] = None,
    batch_norm: Annotated[BatchNormMode, typer.Option(
        help="BatchNorm scales: auto converts InPlaceABN-era files (no num_batches_tracked).")
    ] = BatchNormMode.auto,
    verify: Annotated[bool, typer.Option(help="Compare with PyTorch on ONNX Runtime.")] = True,
    simplify: Annotated[bool, typer.Option(help="Simplify with onnxslim if it stays "
                                           "verified.")] = False,
    precision: Annotated[Precision, typer.Option(
        help="fp16: mixed precision (FP32 OCR islands) for TensorRT, proved against FP32.")
    ] = Precision.fp32,
    fp32_islands: Annotated[bool, typer.Option(help="Keep the OCR softmaxes and their MatMuls "
                                               "in FP32 (fp16 only).")] = True,
) -> None:
    """Export a checkpoint to one ONNX file with upsampling folded in, verified against PyTorch."""
    from exporters.export_job import ExportRequest, run_export

    check_output_file(out, "-o")
    if size is not None:
        if height is not None or width is not None:
            raise OcrDeployError("--size and --height/--width name the same size; give --size")
        height, width = one_size("--size", size) or (None, None)
    request = ExportRequest(
        weights=weights, output=out, dataset=dataset.value if dataset else None,
        output_kind=output, input_format=input_format, height=height, width=width,
        batch=batch, opset=opset, config_yaml=config, align_corners=align_corners,
        batch_norm=batch_norm, verify=verify, simplify=simplify, precision=precision,
        fp32_islands=fp32_islands)
    result = run_export(request, log=progress_line)
    typer.echo(f"exported {result.output} ({result.file_bytes / 1e6:.1f} MB in "
               f"{result.seconds:.1f} s)")
    from ocr_deploy.attention import attention_rows

    echo_rows(result.rows() + attention_rows(result.meta))
