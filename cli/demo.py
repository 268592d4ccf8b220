"""`ocr-deploy demo`: export the shipped checkpoint and segment the sample video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    BackendName,
    echo_rows,
    one_line_errors,
    progress_line,
    segment,
)
from ocr_deploy.pipeline import InferOptions
from ocr_deploy.vocabulary import Device


@one_line_errors
def demo(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("ocr-deploy-demo"),
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    backend: Annotated[BackendName | None, typer.Option(
        help="Backend that runs the exported ONNX [default: onnxruntime].")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Also replace files of the demo's output names "
                                            "that ocr-deploy did not write, or that changed since "
                                            "[default: refuse; an earlier demo's files are "
                                            "replaced].")] = False,
) -> None:
    """Export the shipped demo checkpoint, segment the sample video, write the overlay video."""
    from exporters.export_job import ExportRequest, run_export
    from exporters.model_cache import ModelOpener
    from ocr_deploy.assets import DEMO_MODEL, demo_checkpoint, demo_video
    from ocr_deploy.fileio import ensure_output_folder, remove_empty_folders
    from ocr_deploy.sinks import OutputClaims

    created = ensure_output_folder(out)
    claims = OutputClaims(out, overwrite=overwrite)  # an earlier demo's own export is replaced
    try:
        result = run_export(ExportRequest(weights=demo_checkpoint(), output=claims.claim(DEMO_MODEL),
                                          dataset="cityscapes"), log=progress_line)
    except BaseException:
        remove_empty_folders(created)
        raise
    claims.record([result.output])
    typer.echo(f"exported the demo checkpoint to {result.output} ({result.file_bytes / 1e6:.1f} MB "
               f"in {result.seconds:.1f} s)")
    echo_rows(result.rows())
    opener = ModelOpener(result.output, backend.value if backend else None, device)
    written = segment(str(demo_video()), opener, InferOptions(
        out=out, max_frames=max_frames, progress=progress, overwrite=overwrite))
    videos = [path for path in written if path.suffix == ".mp4"]
    if videos:
        typer.echo(f"overlay video: {videos[0].resolve()}")
