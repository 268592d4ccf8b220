"""`ocr-deploy export`: a checkpoint to one verified ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    Dataset,
    echo_rows,
    one_line_errors,
    progress_line,
)
from exporters.checkpoints import BatchNormMode
from ocr_deploy.vocabulary import InputFormat, OutputKind, Precision


@one_line_errors
def export(
    weights: Annotated[Path, typer.Argument(help="Checkpoint of the HRNet-OCR reference "
                                            "(.pth, .pth.tar, .pt, .safetensors).")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output .onnx path "
                                             "[default: beside the checkpoint].")] = None,
    dataset: Annotated[Dataset | None, typer.Option(help="Class names, palette and test policy "
                                                    "[default: inferred from K].")] = None,
    output: Annotated[OutputKind, typer.Option(help="What the graph returns.")] = OutputKind.labels,
    input_format: Annotated[InputFormat, typer.Option(
        "--input", help="raw: uint8 BGR HWC frames, normalised inside the graph; normalized: "
                        "float32 NCHW for other toolchains.")] = InputFormat.raw,
    height: Annotated[int | None, typer.Option(help="Static input height (with --width).")] = None,
    width: Annotated[int | None, typer.Option(help="Static input width (with --height).")] = None,
    batch: Annotated[int | None, typer.Option(help="Static batch size [default: dynamic].")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    config: Annotated[Path | None, typer.Option(help="Reference experiment YAML, cross-checked "
                                                "against the weights.")] = None,
    align_corners: Annotated[bool | None, typer.Option(
        "--align-corners/--no-align-corners",
        help="Resize mode of the model [default: from --config, else True].")] = None,
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
