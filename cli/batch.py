"""`ocr-deploy batch`: folders, globs, videos or manifests segmented on Ray, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import RuntimeBackend, one_line_errors, progress_line, save_kinds
from ocr_deploy.sinks import IMAGE_DEFAULT, SINKS, VIDEO_DEFAULT
from ocr_deploy.sources.headers import DEFAULT_MAX_PIXELS
from ocr_deploy.vocabulary import Device
from ocr_deploy.vocabulary import SizePolicy as Policy


@one_line_errors
def batch(
    inputs: Annotated[list[str], typer.Argument(
        help="Folders, globs, image or video files, or manifests (.csv or .parquet with a 'path' "
             "column; relative paths are relative to the manifest).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder: new, empty, or an earlier "
                                      "batch's (then finished inputs are skipped).")],
    model: Annotated[Path | None, typer.Option(
        help="Exported .onnx, TensorRT .engine, OpenVINO .xml, or a checkpoint (exported once into "
             "the cache). On a cluster every worker must see it at the same path.",
        show_default="the shipped demo model")] = None,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join: auto, host:port or ray://host:port.",
        show_default="start a local Ray on this machine")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Model-holding actors (one model load each).",
        show_default="as many as the cluster's CPUs, or GPUs, allow")] = None,
    cpus_per_worker: Annotated[float, typer.Option(help="CPUs each worker reserves; also its "
                                                   "backend's thread count.")] = 1.0,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs each worker reserves (use with "
                                                   "--device cuda).")] = 0.0,
    batch: Annotated[int, typer.Option(help="Frames per inference call (equal sizes batched).")] = 1,
    device: Annotated[Device, typer.Option(help="Where the workers run the model.")] = Device.auto,
    backend: Annotated[RuntimeBackend | None, typer.Option(
        help="Runtime backend.", show_default="from the model's file type")] = None,
    save: Annotated[str | None, typer.Option(
        help=f"Comma list of {', '.join(map(str, SINKS))}, or none; video-only kinds apply to videos.",
        show_default=f"{','.join(IMAGE_DEFAULT)} for images, {','.join(VIDEO_DEFAULT)} for videos")] = None,
    size: Annotated[str | None, typer.Option(help="Network input size HxW, e.g. 512x1024.",
                                             show_default="the model's own")] = None,
    policy: Annotated[Policy, typer.Option(help="How frames meet the network input (as for infer).")
                      ] = Policy.auto,
    alpha: Annotated[float, typer.Option(help="Overlay opacity of the colours.")] = 0.5,
    recursive: Annotated[bool, typer.Option(help="Search folders recursively; outputs mirror the "
                                            "sub-folders.")] = True,
    retries: Annotated[int, typer.Option(help="Further attempts of a video that failed, and of "
                                         "work whose worker crashed (restarted by Ray Data); then "
                                         "the input is recorded as failed.")] = 1,
    fail_on_error: Annotated[bool, typer.Option(
        help="Exit with status 1 when any input failed; without it failures are only recorded "
             "in OUT/errors.parquet and the exit status is 0.")] = False,
    progress: Annotated[bool, typer.Option(help="Show Ray Data's progress.")] = True,
    max_pixels: Annotated[float, typer.Option(
        help="Refuse frames with more pixels (read from the file header); 0 for no limit.")
                          ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Segment many images and videos on Ray (this machine or a cluster), resumably.

    Outputs as for infer under OUT; one row per frame in OUT/results.parquet, failures in OUT/errors.parquet.

    A rerun skips inputs whose outputs are complete. See docs/cluster.md."""
    import os

    from exporters.model_cache import resolve_model
    from ocr_deploy.assets import demo_model
    from ocr_deploy.batch import CRASH_ON_ENV, STOP_AFTER_ENV, BatchOptions, WorkerConfig, model_digest, run_batch
    from ocr_deploy.batch.cluster import require_ray
    from ocr_deploy.errors import OcrDeployError
    from ocr_deploy.preprocess import parse_size
    from ocr_deploy.sinks import sink_types

    require_ray()  # before any export or hashing: a missing Ray is the one thing to say
    if batch < 1:
        raise OcrDeployError(f"--batch must be at least 1 (got {batch})")
    kinds = save_kinds(save)
    video_save = VIDEO_DEFAULT if kinds is None else kinds
    sink_types(video_save, is_video=True)  # unknown kinds: one line now, not on every worker
    image_save = IMAGE_DEFAULT if kinds is None else tuple(k for k in kinds if not SINKS[k].video_only)
    path = resolve_model((model or demo_model()).expanduser(), log=progress_line)
    if not path.is_file():
        raise OcrDeployError(f"model not found: {path}")
    stop = os.environ.get(STOP_AFTER_ENV, "").strip()
    if stop and not stop.isdigit():
        raise OcrDeployError(f"{STOP_AFTER_ENV} must be a whole number of inputs, not {stop!r}")
    config = WorkerConfig(
        model=str(path.resolve()), model_sha256=model_digest(path), out=str(out.expanduser().absolute()),
        image_save=tuple(map(str, image_save)), video_save=tuple(map(str, video_save)),
        device=str(device.value), backend=backend.value if backend else None,
        threads=max(1, round(cpus_per_worker)), size=parse_size(size) if size else None,
        policy=str(policy.value), alpha=alpha, batch=batch, max_pixels=int(max_pixels) or None,
        retries=retries, crash_on=os.environ.get(CRASH_ON_ENV) or None)
    options = BatchOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                           gpus_per_worker=gpus_per_worker, recursive=recursive,
                           progress=progress, stop_after=int(stop) if stop else None)
    summary = run_batch(inputs, config, options, log=progress_line)
    for line in summary.lines():
        typer.echo(line)
    if summary.stopped:
        raise typer.Exit(130)
    if summary.failures and fail_on_error:
        raise typer.Exit(1)
