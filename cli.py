"""The `ocr-deploy` command: parse options, call one library function, print the outcome."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from exporters.checkpoints import BatchNormMode
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.presets import preset_names

if TYPE_CHECKING:
    from exporters.export_job import ExportResult

app = typer.Typer(
    name="ocr-deploy", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
    help="Deploy HRNet-OCR semantic segmentation (Object-Contextual Representations, not text "
         "recognition): export checkpoints to verified ONNX, build TensorRT engines, segment "
         "images and videos.")

Command = TypeVar("Command", bound=Callable[..., Any])
Dataset = Enum("Dataset", {name: name for name in preset_names()}, type=str)  # type: ignore[misc]


class OutputKind(str, Enum):
    labels = "labels"
    logits = "logits"
    probs = "probs"


class InputFormat(str, Enum):
    raw = "raw"
    normalized = "normalized"


def _echo_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, text in rows:
        typer.echo(f"  {label:<{width}}  {text}")


def one_line_errors(command: Command) -> Command:
    """User errors become one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OcrDeployError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as error:  # a bug: still one line, with a way to see the traceback
            # typer's Exit/Abort/usage errors (click's, in older typer) are its own to handle.
            if os.environ.get("OCR_DEPLOY_TRACEBACK") or \
                    type(error).__module__.split(".")[0] in ("typer", "click"):
                raise
            typer.echo(f"error: unexpected {type(error).__name__}: {error} (set "
                       "OCR_DEPLOY_TRACEBACK=1 to see the traceback, and please report it)",
                       err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
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
) -> None:
    """Export a checkpoint to one ONNX file with upsampling folded in, verified against PyTorch."""
    from exporters.export_job import ExportRequest, run_export

    request = ExportRequest(
        weights=weights, output=out, dataset=dataset.value if dataset else None,
        output_kind=output.value, input_format=input_format.value, height=height, width=width,
        batch=batch, opset=opset, config_yaml=config, align_corners=align_corners,
        batch_norm=batch_norm, verify=verify, simplify=simplify)
    result = run_export(request, log=lambda message: typer.echo(f"... {message}", err=True))
    typer.echo(f"exported {result.output} ({result.file_bytes / 1e6:.1f} MB in "
               f"{result.seconds:.1f} s)")
    _echo_rows(export_rows(result))


def export_rows(result: ExportResult) -> list[tuple[str, str]]:
    from ocr_deploy.describe import describe_meta

    rows = describe_meta(result.meta)
    rows.insert(1, ("parameters", f"{result.parameters / 1e6:.2f} M"))
    rows.insert(2, ("checkpoint", result.checkpoint_layout))
    if result.verification is None:
        rows.append(("verified", "skipped (--no-verify)"))
    else:
        for check in result.verification.checks:
            rows.append(("verified", check.describe()))
    rows += [("note", note) for note in result.notes]
    return rows


@app.command()
@one_line_errors
def info(model: Annotated[Path, typer.Argument(help="An ONNX file made by ocr-deploy export.")]
         ) -> None:
    """Print the metadata embedded in a model file."""
    from ocr_deploy.describe import describe_meta
    from ocr_deploy.meta import read_onnx_meta

    meta = read_onnx_meta(model)
    typer.echo(f"{model} ({model.stat().st_size / 1e6:.1f} MB)")
    _echo_rows(describe_meta(meta) + [("note", note) for note in meta.provenance.notes])


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Policy(str, Enum):
    auto = "auto"
    native = "native"
    resize = "resize"
    letterbox = "letterbox"
    reference = "reference"


def _save_kinds(save: str | None, is_video: bool) -> tuple[str, ...]:
    from ocr_deploy.sinks import IMAGE_DEFAULT, VIDEO_DEFAULT

    if save is None:
        return VIDEO_DEFAULT if is_video else IMAGE_DEFAULT
    if save.strip().lower() == "none":
        return ()
    return tuple(part.strip().lower() for part in save.split(",") if part.strip())


@app.command()
@one_line_errors
def infer(
    source: Annotated[str, typer.Argument(help="Image, folder, glob, video file, camera index "
                                          "(0) or stream URL (rtsp://, http://).")],
    model: Annotated[Path, typer.Option(help="Exported .onnx, or a checkpoint (exported once "
                                        "into a cache).")],
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    backend: Annotated[str | None, typer.Option(help="Backend [default: from the model's "
                                                "file type].")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("ocr-deploy-out"),
    save: Annotated[str | None, typer.Option(
        help="Comma list of labels, color, overlay, video, csv, or none [default: labels,overlay "
             "for images; video,csv for videos and cameras].")] = None,
    alpha: Annotated[float, typer.Option(help="Overlay opacity of the colours.")] = 0.5,
    size: Annotated[str | None, typer.Option(help="Network input size HxW, e.g. 512x1024.")] = None,
    policy: Annotated[Policy, typer.Option(
        help="auto: native size for dynamic models, letterbox for fixed ones; reference: the "
             "dataset's reference test-size policy.")] = Policy.auto,
    stride: Annotated[int, typer.Option(help="Process every N-th video frame.")] = 1,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    recursive: Annotated[bool, typer.Option(help="Search folders recursively.")] = False,
    batch: Annotated[int, typer.Option(help="Frames per inference call.")] = 1,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Segment images, folders, videos, cameras or streams; write labels, colours, overlays."""
    from exporters.model_cache import resolve_model
    from ocr_deploy.fileio import ensure_output_folder
    from ocr_deploy.pipeline import run_pipeline
    from ocr_deploy.preprocess import parse_size
    from ocr_deploy.segmenter import Segmenter
    from ocr_deploy.sinks import make_outputs
    from ocr_deploy.sources import open_source

    if batch < 1:
        raise OcrDeployError(f"--batch must be at least 1 (got {batch})")
    model_path = resolve_model(model, log=lambda message: typer.echo(f"... {message}", err=True))
    input_size = parse_size(size) if size else None
    source_handle = open_source(source, recursive=recursive, stride=stride, max_frames=max_frames)
    kinds = _save_kinds(save, source_handle.is_video)
    segmenter = Segmenter.open(model_path, device=device.value, backend=backend, size=input_size,
                               policy=policy.value, alpha=alpha,
                               render=[k for k in ("color", "overlay") if k in kinds
                                       or (k == "overlay" and "video" in kinds)])
    if kinds:
        ensure_output_folder(out)
    outputs = make_outputs(out, kinds, meta=segmenter.meta, is_video=source_handle.is_video,
                           stem=source_handle.name,
                           fps=(source_handle.fps or 30.0) / max(1, stride))
    typer.echo(f"model: {model_path.name} on {segmenter.describe()}", err=True)
    summary = run_pipeline(segmenter, source_handle, outputs, batch_size=batch,
                           show_progress=progress)
    for line in summary.lines():
        typer.echo(line)
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.error or summary.frames == 0:
        raise typer.Exit(1)


def main() -> None:
    # OpenCV and FFmpeg print their own warnings (missing cameras, refused streams) before our
    # one-line error; the command line keeps them quiet unless the user asks otherwise.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    app(prog_name="ocr-deploy")


if __name__ == "__main__":
    sys.exit(main())
