"""What every command shares: one-line errors, row printing, progress lines, choice enums."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer

from exporters.artifacts import ARTIFACT_TABLE
from exporters.builds import BUILDERS
from ocr_deploy.backends import Backend
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.pipeline import InferOptions
from ocr_deploy.presets import preset_names

Command = TypeVar("Command", bound=Callable[..., Any])
Dataset = Enum("Dataset", {name: name for name in preset_names()}, type=str)  # type: ignore[misc]

# Every backend that can open an artifact: the runtime's table plus PyTorch for checkpoints.
BackendName = Enum("BackendName", {spec.name: spec.name for spec in ARTIFACT_TABLE},  # type: ignore[misc]
                   type=str)

# Backends with a build step (exporters.builds.BUILDERS).
BuildBackend = Enum("BuildBackend", {row.backend: row.backend for row in BUILDERS},  # type: ignore[misc]
                    type=str)


def echo_rows(rows: list[tuple[str, str]]) -> None:
    """Print label/text pairs as an aligned, indented table."""
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
            typer.echo(f"error: {one_line(error)}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as error:  # a bug: still one line, with a way to see the traceback
            # typer's Exit/Abort/usage errors (click's, in older typer) are its own to handle.
            if os.environ.get("OCR_DEPLOY_TRACEBACK") or \
                    type(error).__module__.split(".")[0] in ("typer", "click"):
                raise
            typer.echo(f"error: unexpected {type(error).__name__}: {one_line(error)} (set "
                       "OCR_DEPLOY_TRACEBACK=1 to see the traceback, and please report it)",
                       err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def one_line(error: BaseException) -> str:
    """OpenCV's and ONNX Runtime's messages hold newlines; an error stays one line."""
    return " ".join(str(error).split())


def progress_line(message: str) -> None:
    typer.echo(f"... {message}", err=True)


def save_kinds(save: str | None) -> tuple[str, ...] | None:
    """None: the defaults for the source's kind; () for 'none'."""
    if save is None:
        return None
    if save.strip().lower() == "none":
        return ()
    return tuple(part.strip().lower() for part in save.split(",") if part.strip())


def segment(source: str, model: Path | Callable[[], Backend], options: InferOptions) -> list[Path]:
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
