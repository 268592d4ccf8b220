"""`ocr-deploy info`: what a model computes, where it came from, which backends run here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    echo_rows,
    one_line_errors,
)


@one_line_errors
def info(model: Annotated[Path | None, typer.Argument(
        help="An .onnx or .engine made by ocr-deploy, or a checkpoint (what exporting it would "
             "give).", show_default="none: only list the backends")] = None
         ) -> None:
    """Print what a model computes and where it came from, and which backends run here."""
    from exporters.artifacts import artifact_info

    info = artifact_info(model)
    if info.heading is not None:
        typer.echo(info.heading)
        echo_rows(info.rows)
    typer.echo("backends:")
    echo_rows(info.backends)
