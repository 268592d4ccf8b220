"""What every command shares: one-line errors, row printing, progress lines, choice enums, the
usage line, output paths checked before work, sizes under one name."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand

from exporters.artifacts import ARTIFACT_TABLE
from exporters.builds import BUILDERS
from ocr_deploy.backends import BACKEND_TABLE, Backend
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.pipeline import InferOptions
from ocr_deploy.presets import preset_names

Command = TypeVar("Command", bound=Callable[..., Any])
Dataset = Enum("Dataset", {name: name for name in preset_names()}, type=str)  # type: ignore[misc]

# Every backend that can open an artifact: the runtime's table plus PyTorch for checkpoints.
BackendName = Enum("BackendName", {spec.name: spec.name for spec in ARTIFACT_TABLE},  # type: ignore[misc]
                   type=str)

# The runtime's backends only: what opens an exported model (batch workers, serve).
RuntimeBackend = Enum("RuntimeBackend", {spec.name: spec.name for spec in BACKEND_TABLE},  # type: ignore[misc]
                      type=str)

# Backends with a build step (exporters.builds.BUILDERS).
BuildBackend = Enum("BuildBackend", {row.backend: row.backend for row in BUILDERS},  # type: ignore[misc]
                    type=str)


def echo_rows(rows: list[tuple[str, str]]) -> None:
    """Print label/text pairs as an aligned, indented table."""
    width = max(len(label) for label, _ in rows)
    for label, text in rows:
        typer.echo(f"  {label:<{width}}  {text}")


class UsageCommand(TyperCommand):
    """A command whose usage line names its arguments as click does (`SOURCE...`, `[MODEL]`),
    not typer's `{source}`, which reads as a placeholder to fill with braces."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


def quiet_broken_pipe() -> None:
    """The reader of stdout went away (`ocr-deploy info | head`): leave quietly, as `cat` does.
    Python would otherwise complain again when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a test runner's captured stdout has no fd
        pass
    raise typer.Exit(141)  # 128 + SIGPIPE, what a shell reports for a writer whose pipe closed


def one_line_errors(command: Command) -> Command:
    """User errors become one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            quiet_broken_pipe()
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
    typer.echo(message if message.startswith("warning:") else f"... {message}", err=True)


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


SIZE_HELP = "Network input size HxW, e.g. 512x1024."
STDOUT = "-"  # --json - : the JSON on stdout


def check_output_file(path: Path | None, option: str, *, stdout_ok: bool = False) -> None:
    """Fail before any work if `path` cannot be written: a folder in its place, or the nearest
    existing folder above it a file or read-only. Missing folders are made when it is written
    (write_output), so a run that fails leaves none behind."""
    if path is None or (stdout_ok and str(path) == STDOUT):
        return
    if path.is_dir():
        raise OcrDeployError(f"{option} {path} is a folder; give a file name, e.g. "
                             f"{path / ('out' + _suffix_hint(option))}")
    _check_folder(path.parent, option, path)


def check_output_folder(path: Path | None, option: str) -> None:
    """Fail before any work if files cannot be made in the folder `path` (made when written)."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise OcrDeployError(f"{option} {path} is a file, not a folder; choose a folder")
    _check_folder(path, option, path)


def _check_folder(folder: Path, option: str, given: Path) -> None:
    from ocr_deploy.fileio import ensure_writable_dir

    existing = next((parent for parent in (folder, *folder.parents) if parent.exists()), Path("."))
    if not existing.is_dir():
        raise OcrDeployError(f"{option} {given}: {existing} is a file, not a folder; choose "
                             "another path")
    ensure_writable_dir(existing, what=f"{option} {given}:")


def write_output(path: Path, data: bytes) -> None:
    """Write a file checked by check_output_file: missing folders made, never half-written;
    '-' writes to stdout."""
    from ocr_deploy.fileio import atomic_write_bytes

    if str(path) == STDOUT:
        typer.echo(data.decode().rstrip("\n"))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _suffix_hint(option: str) -> str:
    return {"--json": ".json", "--plot": ".png"}.get(option, "")


def one_size(option: str, size: str | None, **aliases: str | None) -> tuple[int, int] | None:
    """--size HxW, or one of its older names (hidden aliases kept for one release)."""
    from ocr_deploy.preprocess import parse_size

    given = {name: text for name, text in aliases.items() if text is not None}
    if size is not None and given:
        raise OcrDeployError(f"{option} and {', '.join(given)} name the same size; give {option}")
    if size is not None:
        return parse_size(size, option)
    if given:
        name, text = next(iter(given.items()))
        return parse_size(text, name)
    return None


def save_kinds(save: str | None) -> tuple[str, ...] | None:
    """None: the defaults for the source's kind; () for 'none'."""
    if save is None:
        return None
    if save.strip().lower() == "none":
        return ()
    return tuple(part.strip().lower() for part in save.split(",") if part.strip())


def segment(source: str | list[str], model: Path | Callable[[], Backend], options: InferOptions) -> list[Path]:
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
