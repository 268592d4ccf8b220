"""`ocr-deploy bench`: latency, throughput, per-stage ms and memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    BackendName,
    one_line_errors,
    progress_line,
)
from ocr_deploy.vocabulary import Device


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
                       log=progress_line)
    for line in report.lines():
        typer.echo(line)
    if json_out is not None:
        atomic_write_bytes(json_out, report.to_json().encode())
    if plot is not None:
        report.plot(plot)
