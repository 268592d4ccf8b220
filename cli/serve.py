"""`ocr-deploy serve`: an artifact behind Triton Inference Server (PyTriton), HTTP and gRPC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import RuntimeBackend, one_line_errors
from ocr_deploy.sources.headers import DEFAULT_MAX_PIXELS
from ocr_deploy.vocabulary import Device


@one_line_errors
def serve(
    model: Annotated[Path, typer.Argument(help="Exported .onnx, TensorRT .engine or OpenVINO .xml.")],
    name: Annotated[str | None, typer.Option(
        help="Triton model name.", show_default="the checkpoint's name, from the metadata")] = None,
    backend: Annotated[RuntimeBackend | None, typer.Option(
        help="Runtime backend.", show_default="from the model's file type")] = None,
    device: Annotated[Device, typer.Option(help="Where the backend runs.")] = Device.auto,
    size: Annotated[str | None, typer.Option(
        help="Network input size HxW; frames are resized to it and labels returned at their own size.",
        show_default="each frame's own size; a fixed model's own size")] = None,
    instances: Annotated[int, typer.Option(help="Model instances (each its own backend session).")] = 1,
    max_batch: Annotated[int, typer.Option(help="Largest batch Triton's dynamic batcher forms "
                                           "(equal-size frames batch together); 1: no batching.")] = 4,
    max_queue_delay_us: Annotated[int, typer.Option(
        help="How long a request may wait for others to batch with, in microseconds.")] = 0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    http_port: Annotated[int, typer.Option(help="HTTP/REST (KServe v2) port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port.")] = 8002,
    max_pixels: Annotated[float, typer.Option(
        help="Refuse frames with more pixels (encoded ones from their header); 0 for no limit.")
    ] = DEFAULT_MAX_PIXELS,
    exit_timeout: Annotated[int, typer.Option(
        help="Seconds in-flight requests get to finish at shutdown.")] = 10,
) -> None:
    """Serve a model on Triton Inference Server (HTTP, gRPC, metrics) until Ctrl-C or SIGTERM."""
    from ocr_deploy.preprocess import parse_size
    from ocr_deploy.serving import ServeOptions
    from ocr_deploy.serving import serve as run_server

    run_server(ServeOptions(
        model=model, name=name, backend=backend.value if backend else None, device=device.value,
        size=parse_size(size) if size else None, instances=instances, max_batch=max_batch,
        max_queue_delay_us=max_queue_delay_us, host=host, http_port=http_port, grpc_port=grpc_port,
        metrics_port=metrics_port, max_pixels=int(max_pixels) or None, exit_timeout_s=exit_timeout),
        log=lambda line: typer.echo(line, err=False))
