"""`ocr-deploy bench`: latency, throughput, per-stage ms and memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    SIZE_HELP,
    BackendName,
    check_output_file,
    one_line_errors,
    one_size,
    progress_line,
    write_output,
)
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.vocabulary import Device


@one_line_errors
def bench(
    model: Annotated[Path, typer.Argument(help="An .onnx, .engine or checkpoint.")],
    backend: Annotated[BackendName | None, typer.Option(
        help="Backend; pytorch runs a checkpoint eagerly, a runtime runs its cached export.",
        show_default="from the file; pytorch for a checkpoint")] = None,
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    size: Annotated[str | None, typer.Option(help=SIZE_HELP, show_default="512x1024")] = None,
    shape: Annotated[str | None, typer.Option(hidden=True, help="Old name of --size.")] = None,
    batch: Annotated[int, typer.Option(help="Frames per call.")] = 1,
    iters: Annotated[int, typer.Option(help="Timed iterations.")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed iterations first.")] = 5,
    all_backends: Annotated[bool, typer.Option("--all", help="Every backend and precision "
                                               "available here, plus PyTorch eager.")] = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads.",
                                                show_default="all cores")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the results as JSON to this file; - prints only the JSON.",
        show_default="none")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG of the latency distributions.",
                                              show_default="none")] = None,
) -> None:
    """Latency (mean/p50/p95/p99), throughput, per-stage ms and peak memory."""
    import importlib.util

    from exporters.artifacts import artifact_spec
    from exporters.bench import BenchRequest, run_bench

    check_output_file(json_out, "--json", stdout_ok=True)
    check_output_file(plot, "--plot")
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise OcrDeployError("--plot needs matplotlib: pip install matplotlib")
    if backend is not None:
        artifact_spec(model, backend.value)
    report = run_bench(BenchRequest(model=model, backend=backend.value if backend else None,
                                    device=device.value, shape=one_size("--size", size, **{"--shape": shape}),
                                    batch=batch, iters=iters, warmup=warmup,
                                    all_backends=all_backends, threads=threads),
                       log=progress_line)
    to_stdout = json_out is not None and str(json_out) == "-"
    if not to_stdout:
        for line in report.lines():
            typer.echo(line)
    if json_out is not None:
        write_output(json_out, report.to_json().encode())
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        report.plot(plot)
