"""The `ocr-deploy` command: parse options, call one library function, print the outcome."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from exporters.artifacts import ARTIFACT_TABLE
from exporters.builds import BUILDERS
from exporters.checkpoints import BatchNormMode
from ocr_deploy.backends import Backend
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.pipeline import InferOptions
from ocr_deploy.presets import preset_names
from ocr_deploy.sinks import IMAGE_DEFAULT, SINKS, VIDEO_DEFAULT
from ocr_deploy.sources.headers import DEFAULT_MAX_PIXELS
from ocr_deploy.vocabulary import ArtifactFormat, Device, InputFormat, OutputKind, Precision
from ocr_deploy.vocabulary import SizePolicy as Policy

app = typer.Typer(
    name="ocr-deploy", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
    help="Deploy HRNet-OCR and OCNet semantic segmentation (Object-Contextual Representations, "
         "not text recognition): export checkpoints of the reference, openseg.pytorch, "
         "OCNet.pytorch or mmsegmentation to verified ONNX, build TensorRT engines or OpenVINO "
         "IRs, segment images and videos.")

Command = TypeVar("Command", bound=Callable[..., Any])
Dataset = Enum("Dataset", {name: name for name in preset_names()}, type=str)  # type: ignore[misc]


# Every backend that can open an artifact: the runtime's table plus PyTorch for checkpoints.
BackendName = Enum("BackendName", {spec.name: spec.name for spec in ARTIFACT_TABLE},  # type: ignore[misc]
                   type=str)


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
            typer.echo(f"error: {_one_line(error)}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as error:  # a bug: still one line, with a way to see the traceback
            # typer's Exit/Abort/usage errors (click's, in older typer) are its own to handle.
            if os.environ.get("OCR_DEPLOY_TRACEBACK") or \
                    type(error).__module__.split(".")[0] in ("typer", "click"):
                raise
            typer.echo(f"error: unexpected {type(error).__name__}: {_one_line(error)} (set "
                       "OCR_DEPLOY_TRACEBACK=1 to see the traceback, and please report it)",
                       err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _one_line(error: BaseException) -> str:
    """OpenCV's and ONNX Runtime's messages hold newlines; an error stays one line."""
    return " ".join(str(error).split())


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
    result = run_export(request, log=_progress_line)
    typer.echo(f"exported {result.output} ({result.file_bytes / 1e6:.1f} MB in "
               f"{result.seconds:.1f} s)")
    from ocr_deploy.attention import attention_rows

    _echo_rows(result.rows() + attention_rows(result.meta))


@app.command()
@one_line_errors
def info(model: Annotated[Path | None, typer.Argument(
        help="An .onnx or .engine made by ocr-deploy, or a checkpoint (what exporting it would "
             "give) [default: only list the backends].")] = None
         ) -> None:
    """Print what a model computes and where it came from, and which backends run here."""
    from exporters.artifacts import artifact_info

    info = artifact_info(model)
    if info.heading is not None:
        typer.echo(info.heading)
        _echo_rows(info.rows)
    typer.echo("backends:")
    _echo_rows(info.backends)


@app.command()
@one_line_errors
def convert(
    model: Annotated[Path, typer.Argument(help="An FP32 .onnx made by ocr-deploy export.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output .onnx "
                                             "[default: <model>_fp16.onnx].")] = None,
    precision: Annotated[Precision, typer.Option(help="Target precision.")] = Precision.fp16,
    fp32_islands: Annotated[bool, typer.Option(help="Keep the OCR softmaxes and their MatMuls "
                                               "in FP32.")] = True,
    frames: Annotated[str | None, typer.Option(help="Images (file, folder or glob) to prove "
                                               "the FP16 graph on [default: synthetic].")] = None,
    min_agreement: Annotated[float, typer.Option(help="Least share of pixels whose labels must "
                                                 "match FP32, in %.")] = 99.9,
) -> None:
    """Convert an FP32 ONNX to mixed FP16 for strongly typed TensorRT, proved against FP32."""
    from exporters.fp16_job import ConvertRequest, run_convert

    result = run_convert(ConvertRequest(model=model, output=out, precision=precision,
                                        fp32_islands=fp32_islands, frames=frames,
                                        min_agreement=min_agreement / 100))
    typer.echo(f"converted {result.output} ({result.file_bytes / 1e6:.1f} MB in "
               f"{result.seconds:.1f} s)")
    _echo_rows([("before", result.check.before.describe())] + result.check.rows())


# Backends with a build step (exporters.builds.BUILDERS).
BuildBackend = Enum("BuildBackend", {row.backend: row.backend for row in BUILDERS},  # type: ignore[misc]
                    type=str)
DEFAULT_BUILD = BuildBackend("tensorrt")


@app.command()
@one_line_errors
def build(
    model: Annotated[Path, typer.Argument(help="An .onnx made by ocr-deploy export "
                                          "(FP32, or FP16 from convert).")],
    backend: Annotated[BuildBackend, typer.Option(help="What to build for.")] = DEFAULT_BUILD,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output file "
                                             "[default: beside the model].")] = None,
    precision: Annotated[Precision | None, typer.Option(
        help="Precision [default: fp16 for tensorrt, fp32 for openvino].")] = None,
    shape: Annotated[str | None, typer.Option(help="Static input size HxW [default: the "
                                              "model's or its dataset's test size].")] = None,
    min_shape: Annotated[str | None, typer.Option(help="Dynamic profile: smallest HxW.")] = None,
    opt_shape: Annotated[str | None, typer.Option(help="Dynamic profile: tuned HxW.")] = None,
    max_shape: Annotated[str | None, typer.Option(help="Dynamic profile: largest HxW.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size [default: 1].")] = None,
    workspace: Annotated[float, typer.Option(help="Builder workspace, GiB.")] = 4.0,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file, read and "
                                                      "updated.")] = None,
    opt_level: Annotated[int, typer.Option(help="Builder optimisation level 0..5.")] = 3,
    tf32: Annotated[bool, typer.Option(help="tensorrt: allow TF32 in FP32 layers (faster on "
                                       "Ampere+, 10-bit mantissas) [default: off].")] = False,
    version_compatible: Annotated[bool, typer.Option(
        help="tensorrt: a plan the lean runtime (tensorrt-lean) and later TensorRT of the same "
             "major version run.")] = False,
    exclude_lean_runtime: Annotated[bool, typer.Option(
        help="tensorrt, with --version-compatible: leave the lean runtime out of the plan "
             "(smaller; run it with tensorrt-lean of the same version).")] = False,
    frames: Annotated[str | None, typer.Option(help="Images to prove a reduced-precision "
                                               "artifact on.")] = None,
    calib: Annotated[str | None, typer.Option(help="Images, folder or video to calibrate INT8 "
                                              "on [default: built-in frames].")] = None,
    artifact_format: Annotated[ArtifactFormat | None, typer.Option(
        "--format", help="openvino: ir (default) or onnx (QDQ, int8 only).")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="openvino: least share of pixels whose labels must match FP32, in % [default: 99.9 "
             "fp32, 99.5 bf16, 99.0 int8].")] = None,
) -> None:
    """Build a TensorRT engine (plan + JSON sidecar) or an OpenVINO IR from an ocr-deploy ONNX."""
    from exporters.builds import BuildOptions, run_build
    from ocr_deploy.preprocess import parse_size

    def size(text: str | None, option: str) -> tuple[int, int] | None:
        return parse_size(text, option) if text else None

    options = BuildOptions(
        model=model, output=out, precision=precision, shape=size(shape, "--shape"),
        min_shape=size(min_shape, "--min-shape"), opt_shape=size(opt_shape, "--opt-shape"),
        max_shape=size(max_shape, "--max-shape"), batch=batch, workspace_gib=workspace,
        timing_cache=timing_cache, opt_level=opt_level, frames=frames, calibration=calib,
        format=artifact_format, min_agreement=None if min_agreement is None else min_agreement / 100,
        tf32=tf32, version_compatible=version_compatible, exclude_lean_runtime=exclude_lean_runtime)
    built = run_build(options, backend=backend.value, log=_progress_line)
    typer.echo(f"built {built.path} ({built.file_bytes / 1e6:.1f} MB in {built.seconds:.1f} s)")
    _echo_rows(built.rows)


def _save_kinds(save: str | None) -> tuple[str, ...] | None:
    """None: the defaults for the source's kind; () for 'none'."""
    if save is None:
        return None
    if save.strip().lower() == "none":
        return ()
    return tuple(part.strip().lower() for part in save.split(",") if part.strip())


@app.command()
@one_line_errors
def infer(
    source: Annotated[str, typer.Argument(help="Image, folder, glob, video file, camera index "
                                          "(0) or stream URL (rtsp://, http://).")],
    model: Annotated[Path | None, typer.Option(
        help="Exported .onnx, TensorRT .engine, or a checkpoint (exported once into a cache) "
             "[default: the shipped demo model].")] = None,
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    backend: Annotated[BackendName | None, typer.Option(
        help="Backend [default: from the model's file type; pytorch runs a checkpoint eagerly, "
             "without exporting it].")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("ocr-deploy-out"),
    save: Annotated[str | None, typer.Option(
        help=f"Comma list of {', '.join(map(str, SINKS))}, or none [default: "
             f"{','.join(IMAGE_DEFAULT)} for images; {','.join(VIDEO_DEFAULT)} for videos and "
             "cameras].")] = None,
    alpha: Annotated[float, typer.Option(help="Overlay opacity of the colours.")] = 0.5,
    size: Annotated[str | None, typer.Option(help="Network input size HxW, e.g. 512x1024.")] = None,
    policy: Annotated[Policy, typer.Option(
        help="auto: native size for dynamic models, letterbox for fixed ones; reference: the "
             "dataset's reference test-size policy; sliding: overlapping --tile windows, scores "
             "averaged (needs a logits or probs export).")] = Policy.auto,
    tile: Annotated[str | None, typer.Option(help="--policy sliding: tile HxW, e.g. 512x512 "
                                             "[default: a fixed model's input].")] = None,
    overlap: Annotated[float | None, typer.Option(help="--policy sliding: share of a tile that "
                                                  "neighbours overlap, 0..<1 [default: 0.33].")] = None,
    stride: Annotated[int, typer.Option(help="Process every N-th video frame.")] = 1,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    recursive: Annotated[bool, typer.Option(help="Search folders recursively.")] = False,
    batch: Annotated[int, typer.Option(help="Frames per inference call.")] = 1,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Also replace files of the outputs' names that "
                                            "ocr-deploy did not write, or that changed since "
                                            "[default: refuse; its own earlier outputs are "
                                            "replaced].")] = False,
    max_pixels: Annotated[float, typer.Option(
        help="Refuse frames with more pixels (read from the file header, before decoding); "
             "0 for no limit.")] = DEFAULT_MAX_PIXELS,
) -> None:
    """Segment images, folders, videos, cameras or streams; write labels, colours, overlays."""
    from exporters.model_cache import model_opener
    from ocr_deploy.assets import demo_model
    from ocr_deploy.preprocess import parse_size

    opener = model_opener(model or demo_model(), backend=backend.value if backend else None,
                          device=device, log=_progress_line)
    _segment(source, opener, InferOptions(
        out=out, save=_save_kinds(save), alpha=alpha, size=parse_size(size) if size else None,
        policy=policy, tile=parse_size(tile, "--tile") if tile else None, overlap=overlap,
        stride=stride, max_frames=max_frames, recursive=recursive, batch=batch,
        progress=progress, overwrite=overwrite, max_pixels=int(max_pixels) or None))


def _progress_line(message: str) -> None:
    typer.echo(f"... {message}", err=True)


def _segment(source: str, model: Path | Callable[[], Backend], options: InferOptions) -> list[Path]:
    """Run one source through a model, print the summary, exit non-zero as documented."""
    from ocr_deploy.pipeline import segment_source

    summary = segment_source(source, model, options,
                             log=lambda line: typer.echo(line, err=True))
    for line in summary.lines():
        typer.echo(line)
    if summary.abandoned:  # a second signal: stage threads still run native code; leave now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.error or summary.frames == 0:
        raise typer.Exit(1)
    return summary.written


@app.command()
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
                                          dataset="cityscapes"), log=_progress_line)
    except BaseException:
        remove_empty_folders(created)
        raise
    claims.record([result.output])
    typer.echo(f"exported the demo checkpoint to {result.output} ({result.file_bytes / 1e6:.1f} MB "
               f"in {result.seconds:.1f} s)")
    _echo_rows(result.rows())
    opener = ModelOpener(result.output, backend.value if backend else None, device)
    written = _segment(str(demo_video()), opener, InferOptions(
        out=out, max_frames=max_frames, progress=progress, overwrite=overwrite))
    videos = [path for path in written if path.suffix == ".mp4"]
    if videos:
        typer.echo(f"overlay video: {videos[0].resolve()}")


@app.command()
@one_line_errors
def compare(
    a: Annotated[Path, typer.Argument(help="Reference artifact: checkpoint, .onnx or .engine.")],
    b: Annotated[Path, typer.Argument(help="Artifact to check against A.")],
    sources: Annotated[list[str] | None, typer.Argument(
        help="Images, folders, globs or videos [default: built-in frames].")] = None,
    min_agreement: Annotated[float, typer.Option(help="Exit 1 below this pixel agreement, "
                                                 "in %.")] = 99.5,
    heatmaps: Annotated[Path | None, typer.Option(help="Folder for one disagreement image "
                                                  "per frame.")] = None,
    max_frames: Annotated[int, typer.Option(help="Frames per video source.")] = 10,
    device: Annotated[Device, typer.Option(help="Device for engines.")] = Device.auto,
) -> None:
    """Do two artifacts of one model segment the same frames the same way?"""
    from exporters.compare import CompareRequest, run_compare

    result = run_compare(CompareRequest(a=a, b=b, sources=tuple(sources or ()),
                                        max_frames=max_frames, heatmaps=heatmaps,
                                        device=device.value))
    for line in result.lines():
        typer.echo(line)
    shortfall = result.shortfall(min_agreement)
    if shortfall is not None:
        typer.echo(f"error: {shortfall}", err=True)
        raise typer.Exit(1)


@app.command(name="eval")
@one_line_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="An .onnx, .engine, or a checkpoint (run by "
                                          "PyTorch).")],
    data: Annotated[Path, typer.Option(help="Dataset folder: Cityscapes layout, or "
                                       "images/ + labels/ pairs.")],
    dataset: Annotated[Dataset | None, typer.Option(help="Expected preset; must match the "
                                                    "model's.")] = None,
    split: Annotated[str, typer.Option(help="Split folder (Cityscapes: val, train, test).")] = "val",
    layout: Annotated[str, typer.Option(help="auto, cityscapes or pairs.")] = "auto",
    flip: Annotated[bool, typer.Option(help="Average with the mirrored image "
                                       "(needs a logits or probs export).")] = False,
    scales: Annotated[str, typer.Option(help="Comma list of scales, e.g. 0.75,1,1.25; scales "
                                        "> 1 run in windows of the scale-1 input, as the "
                                        "reference (needs a logits or probs export).")] = "1",
    policy: Annotated[Policy, typer.Option(help="Test-size policy.")] = Policy.reference,
    tile: Annotated[str | None, typer.Option(help="--policy sliding: tile HxW.")] = None,
    overlap: Annotated[float | None, typer.Option(help="--policy sliding: share of a tile "
                                                  "that neighbours overlap [default: 0.33].")] = None,
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    backend: Annotated[BackendName | None, typer.Option(
        help="Backend [default: from the file; pytorch for a checkpoint].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """mIoU, per-class IoU, pixel and mean accuracy on a labelled dataset."""
    from exporters.eval_job import EvalRequest, parse_scales, run_eval
    from ocr_deploy.preprocess import parse_size

    report = run_eval(EvalRequest(model=model, data=data,
                                  dataset=dataset.value if dataset else None, split=split,
                                  layout=layout, flip=flip, scales=parse_scales(scales),
                                  policy=policy.value, device=device.value,
                                  tile=parse_size(tile, "--tile") if tile else None,
                                  overlap=overlap, backend=backend.value if backend else None,
                                  show_progress=progress))
    typer.echo(report.to_json() if as_json else "\n".join(report.lines()))


@app.command()
@one_line_errors
def bench(
    model: Annotated[Path, typer.Argument(help="An .onnx, .engine or checkpoint.")],
    backend: Annotated[BackendName | None, typer.Option(
        help="Backend [default: from the file; pytorch for a checkpoint].")] = None,
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    shape: Annotated[str | None, typer.Option(help="Input size HxW [default: 512x1024].")] = None,
    batch: Annotated[int, typer.Option(help="Frames per call.")] = 1,
    iters: Annotated[int, typer.Option(help="Timed iterations.")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed iterations first.")] = 5,
    all_backends: Annotated[bool, typer.Option("--all", help="Every backend and precision "
                                               "available here, plus PyTorch eager.")] = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads [default: all cores].")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results "
                                                  "as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG of the latency distributions.")] = None,
) -> None:
    """Latency (mean/p50/p95/p99), throughput, per-stage ms and peak memory."""
    from exporters.bench import BenchRequest, run_bench
    from ocr_deploy.fileio import atomic_write_bytes
    from ocr_deploy.preprocess import parse_size

    report = run_bench(BenchRequest(model=model, backend=backend.value if backend else None,
                                    device=device.value,
                                    shape=parse_size(shape, "--shape") if shape else None,
                                    batch=batch, iters=iters, warmup=warmup,
                                    all_backends=all_backends, threads=threads),
                       log=_progress_line)
    for line in report.lines():
        typer.echo(line)
    if json_out is not None:
        atomic_write_bytes(json_out, report.to_json().encode())
    if plot is not None:
        report.plot(plot)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # OpenCV and FFmpeg print their own warnings (missing cameras, refused streams) before our
    # one-line error; the command line keeps them quiet unless the user asks otherwise.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    # SIGTERM (docker stop, systemd, timeout) stops like Ctrl-C: temporaries removed, outputs
    # finalised with the frames done.
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="ocr-deploy")


if __name__ == "__main__":
    sys.exit(main())
