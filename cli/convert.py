"""`ocr-deploy convert`: an FP32 ONNX to mixed FP16, proved against FP32."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    check_output_file,
    echo_rows,
    one_line_errors,
)
from ocr_deploy.vocabulary import Precision


@one_line_errors
def convert(
    model: Annotated[Path, typer.Argument(help="An FP32 .onnx made by ocr-deploy export.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output .onnx.",
                                             show_default="<model>_fp16.onnx")] = None,
    # FP16 is the one conversion there is (INT8 and BF16 are build steps: ocr-deploy build); the
    # option stays, hidden, so that scripts passing `--precision fp16` keep working.
    precision: Annotated[Precision, typer.Option(hidden=True, help="Only fp16.")] = Precision.fp16,
    fp32_islands: Annotated[bool, typer.Option(help="Keep the OCR softmaxes and their MatMuls "
                                               "in FP32.")] = True,
    frames: Annotated[str | None, typer.Option(help="Images (file, folder or glob) to prove "
                                               "the FP16 graph on.", show_default="synthetic")] = None,
    min_agreement: Annotated[float, typer.Option(help="Least share of pixels whose labels must "
                                                 "match FP32, in %.")] = 99.9,
) -> None:
    """Convert an FP32 ONNX to mixed FP16 for strongly typed TensorRT, proved against FP32."""
    from exporters.fp16_job import ConvertRequest, run_convert

    check_output_file(out, "-o")

    result = run_convert(ConvertRequest(model=model, output=out, precision=precision,
                                        fp32_islands=fp32_islands, frames=frames,
                                        min_agreement=min_agreement / 100))
    typer.echo(f"converted {result.output} ({result.file_bytes / 1e6:.1f} MB in "
               f"{result.seconds:.1f} s)")
    echo_rows([("before", result.check.before.describe())] + result.check.rows())
