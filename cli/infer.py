"""`ocr-deploy infer`: segment images, folders, videos, cameras or streams."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    SIZE_HELP,
    BackendName,
    check_output_folder,
    one_line_errors,
    one_size,
    progress_line,
    save_kinds,
    segment,
)
from ocr_deploy.backends import Backend
from ocr_deploy.pipeline import InferOptions
from ocr_deploy.sinks import IMAGE_DEFAULT, SINKS, VIDEO_DEFAULT
from ocr_deploy.sources.headers import DEFAULT_MAX_PIXELS
from ocr_deploy.vocabulary import Device
from ocr_deploy.vocabulary import SizePolicy as Policy


@one_line_errors
def infer(
    source: Annotated[list[str], typer.Argument(
        help="Images, folders, globs, video files (several: one run, in order), or one camera "
             "index (0) or stream URL (rtsp://, http://).")],
    model: Annotated[Path | None, typer.Option(
        help="Exported .onnx, TensorRT .engine, or a checkpoint (exported once into a cache).",
        show_default="the shipped demo model")] = None,
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    backend: Annotated[BackendName | None, typer.Option(
        help="Backend; pytorch runs a checkpoint eagerly, without exporting it.",
        show_default="from the model's file type")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("ocr-deploy-out"),
    save: Annotated[str | None, typer.Option(
        help=f"Comma list of {', '.join(map(str, SINKS))}, or none.",
        show_default=f"{','.join(IMAGE_DEFAULT)} for images; {','.join(VIDEO_DEFAULT)} for "
                     "videos and cameras")] = None,
    alpha: Annotated[float, typer.Option(help="Overlay opacity of the colours.")] = 0.5,
    size: Annotated[str | None, typer.Option(help=SIZE_HELP, show_default="from --policy")] = None,
    max_side: Annotated[int | None, typer.Option(
        help="Frames segmented at native size: scale a longer side down to N px, segment, scale "
             "the labels back.", show_default="no limit")] = None,
    policy: Annotated[Policy, typer.Option(
        help="auto: native size for dynamic models, letterbox for fixed ones; reference: the "
             "dataset's reference test-size policy; sliding: overlapping --tile windows, scores "
             "averaged (needs a logits or probs export).")] = Policy.auto,
    tile: Annotated[str | None, typer.Option(help="--policy sliding: tile HxW, e.g. 512x512.",
                                             show_default="a fixed model's input")] = None,
    overlap: Annotated[float | None, typer.Option(help="--policy sliding: share of a tile that "
                                                  "neighbours overlap, 0..<1.",
                                                  show_default="0.33")] = None,
    stride: Annotated[int, typer.Option(help="Process every N-th video frame.")] = 1,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.",
                                                   show_default="all")] = None,
    recursive: Annotated[bool, typer.Option(help="Search folders recursively.")] = False,
    batch: Annotated[int, typer.Option(help="Frames per inference call.")] = 1,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Also replace files of the outputs' names that "
                                            "ocr-deploy did not write, or that changed since "
                                            "(without it they are refused; its own earlier "
                                            "outputs are replaced).")] = False,
    legend: Annotated[bool, typer.Option(help="Draw a legend of the classes present on colour "
                                         "and overlay outputs (images and video).")] = False,
    max_pixels: Annotated[float, typer.Option(
        help="Refuse frames with more pixels (read from the file header, before decoding); "
             "0 for no limit.")] = DEFAULT_MAX_PIXELS,
    server: Annotated[str | None, typer.Option(
        help="Segment on a Triton server started by `ocr-deploy serve`: http://HOST:8000 or "
             "grpc://HOST:8001 (--model, --device and --backend then do not apply).",
        show_default="segment here")] = None,
    server_model: Annotated[str | None, typer.Option(
        help="--server: the served model's name (the server's start-up line says it).",
        show_default="the server's only model")] = None,
) -> None:
    """Segment images, folders, videos, cameras or streams; write labels, colours, overlays."""
    from exporters.artifacts import artifact_spec
    from exporters.model_cache import model_opener
    from ocr_deploy.assets import demo_model
    from ocr_deploy.preprocess import parse_size

    if save_kinds(save) != ():
        check_output_folder(out, "-o")
    if server:  # the network runs on the server; sizing, outputs and summary stay here
        from ocr_deploy.remote import RemoteOpener

        opener: Callable[[], Backend] | Path = RemoteOpener(server, server_model)
    else:
        model = model or demo_model()
        artifact_spec(model, backend.value if backend else None)  # a backend that cannot run it: now
        opener = model_opener(model, backend=backend.value if backend else None,
                              device=device, log=progress_line)
    segment(source if len(source) > 1 else source[0], opener, InferOptions(
        out=out, save=save_kinds(save), alpha=alpha, size=one_size("--size", size),
        max_side=max_side, legend=legend,
        policy=policy, tile=parse_size(tile, "--tile") if tile else None, overlap=overlap,
        stride=stride, max_frames=max_frames, recursive=recursive, batch=batch,
        progress=progress, overwrite=overwrite, max_pixels=int(max_pixels) or None))
