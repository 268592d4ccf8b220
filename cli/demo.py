"""`ocr-deploy demo`: export the shipped checkpoint and segment the sample video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    BackendName,
    check_output_folder,
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
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.",
                                                   show_default="all")] = None,
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    backend: Annotated[BackendName | None, typer.Option(
        help="Backend that runs the exported ONNX.", show_default="onnxruntime")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Also replace files of the demo's output names "
                                            "that ocr-deploy did not write, or that changed since "
                                            "(without it they are refused; an earlier demo's "
                                            "files are replaced).")] = False,
    legend: Annotated[bool, typer.Option(help="Draw a legend of the classes present on the "
                                         "overlay video.")] = False,
    reexport: Annotated[bool, typer.Option(help="Export again even when the earlier demo's "
                                           "export was made from the same checkpoint.")] = False,
) -> None:
    """Export the shipped demo checkpoint, segment the sample video, write the overlay video."""
    from exporters.export_job import ExportRequest, run_export
    from exporters.model_cache import ModelOpener
    from ocr_deploy.assets import DEMO_MODEL, demo_checkpoint, demo_video
    from ocr_deploy.fileio import ensure_output_folder, remove_empty_folders
    from ocr_deploy.sinks import OutputClaims

    check_output_folder(out, "-o")
    created = ensure_output_folder(out)
    claims = OutputClaims(out, overwrite=overwrite)  # an earlier demo's own export is replaced
    try:
        target = claims.claim(DEMO_MODEL)
        reused = None if reexport else reusable_export(target, demo_checkpoint())
        if reused is None:
            result = run_export(ExportRequest(weights=demo_checkpoint(), output=target,
                                              dataset="cityscapes"), log=progress_line)
    except BaseException:
        remove_empty_folders(created)
        raise
    if reused is not None:
        typer.echo(f"reusing the demo export {target} ({reused}; --reexport exports again)")
    else:
        claims.record([result.output])
        typer.echo(f"exported the demo checkpoint to {result.output} "
                   f"({result.file_bytes / 1e6:.1f} MB in {result.seconds:.1f} s)")
        echo_rows(result.rows())
    opener = ModelOpener(target, backend.value if backend else None, device)
    written = segment(str(demo_video()), opener, InferOptions(
        out=out, max_frames=max_frames, progress=progress, overwrite=overwrite, legend=legend))
    videos = [path for path in written if path.suffix == ".mp4"]
    if videos:
        typer.echo(f"overlay video: {videos[0].resolve()}")


def reusable_export(onnx: Path, checkpoint: Path) -> str | None:
    """Why an earlier demo's export can be used again (it exists, ocr-deploy wrote it and nobody
    changed it, its metadata names this checkpoint's sha256 and this ocr-deploy version), or None."""
    from exporters.artifacts import read_artifact_meta
    from ocr_deploy import __version__
    from ocr_deploy.errors import OcrDeployError
    from ocr_deploy.fileio import sha256_of
    from ocr_deploy.sinks import OutputManifest

    if not onnx.is_file() or not OutputManifest.load(onnx.parent).owns(onnx):
        return None
    try:
        source = read_artifact_meta(onnx).provenance
    except OcrDeployError:
        return None
    digest = sha256_of(checkpoint)
    if source.checkpoint_sha256 != digest or source.toolkit_version != __version__:
        return None
    return f"made from the same checkpoint, sha256 {digest[:16]}..., by ocr-deploy {__version__}"
