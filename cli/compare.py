"""`ocr-deploy compare`: do two artifacts of one model segment frames the same way?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    check_output_folder,
    one_line_errors,
)
from ocr_deploy.vocabulary import Device


@one_line_errors
def compare(
    a: Annotated[Path, typer.Argument(help="Reference artifact: checkpoint, .onnx or .engine.")],
    b: Annotated[Path, typer.Argument(help="Artifact to check against A.")],
    sources: Annotated[list[str] | None, typer.Argument(
        help="Images, folders, globs or videos.", show_default="built-in frames")] = None,
    min_agreement: Annotated[float, typer.Option(help="Exit 1 below this pixel agreement, "
                                                 "in %.")] = 99.5,
    heatmaps: Annotated[Path | None, typer.Option(help="Folder for one disagreement image "
                                                  "per frame.", show_default="none")] = None,
    max_frames: Annotated[int, typer.Option(help="Frames per video source.")] = 10,
    device: Annotated[Device, typer.Option(help="Device for engines.")] = Device.auto,
) -> None:
    """Do two artifacts of one model segment the same frames the same way?"""
    from exporters.compare import CompareRequest, run_compare

    check_output_folder(heatmaps, "--heatmaps")

    result = run_compare(CompareRequest(a=a, b=b, sources=tuple(sources or ()),
                                        max_frames=max_frames, heatmaps=heatmaps,
                                        device=device.value))
    for line in result.lines():
        typer.echo(line)
    shortfall = result.shortfall(min_agreement)
    if shortfall is not None:
        typer.echo(f"error: {shortfall}", err=True)
        raise typer.Exit(1)
