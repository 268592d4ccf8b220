"""`ocr-deploy explain`: what the object-context block saw on one frame (soft object regions,
pixel-region relations, OCNet attention maps) as PNG figures and explain.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import one_line_errors


@one_line_errors
def explain(
    weights: Annotated[Path, typer.Argument(help="Checkpoint of an OCR or OCNet family.")],
    image: Annotated[Path, typer.Argument(help="The frame to explain (an image file).")],
    pixel: Annotated[list[str] | None, typer.Option(
        "--pixel", metavar="X,Y", help="X,Y of a pixel to explain, in the frame's coordinates; repeat for more.",
        show_default="a few chosen automatically")] = None,
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="Folder for the figures and explain.json.",
        show_default="explain_<IMAGE name> in the current folder")] = None,
    size: Annotated[str | None, typer.Option(
        metavar="HxW", help="HEIGHTxWIDTH to run the network at, e.g. 512x1024.",
        show_default="the frame's own size")] = None,
    overwrite: Annotated[bool, typer.Option(help="Also replace files of the outputs' names that "
                                            "ocr-deploy did not write.")] = False,
) -> None:
    """Show the object context behind a segmentation (OCR's object regions, OCNet's attention).

    OCR: its soft object regions and each pixel's relation to them; OCNet: each pixel's attention map."""
    from exporters.explain import ExplainRequest, run_explain
    from exporters.explain.pixels import parse_pixel
    from ocr_deploy.preprocess import parse_size

    request = ExplainRequest(
        weights=weights, image=image, output=out or Path(f"explain_{image.stem}"),
        pixels=tuple(parse_pixel(text) for text in pixel or ()),
        size=parse_size(size) if size else None, overwrite=overwrite)
    for line in run_explain(request).lines():
        typer.echo(line)
