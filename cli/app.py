"""The typer app: one row per command in COMMANDS, each command one module of this package."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from dataclasses import dataclass
from typing import Annotated

import typer

HELP = ("Deploy HRNet-OCR and OCNet semantic segmentation (Object-Contextual Representations, "
        "not text recognition): export checkpoints of the reference, openseg.pytorch, "
        "OCNet.pytorch or mmsegmentation to verified ONNX, build TensorRT engines or OpenVINO "
        "IRs, segment images and videos.")


@dataclass(frozen=True)
class CommandRow:
    """A command: its name on the command line, and the module and function that implement it."""

    name: str
    module: str
    function: str


# A new command is one module in cli/ and one row here, in the order `--help` lists them.
COMMANDS: tuple[CommandRow, ...] = (
    CommandRow("export", "cli.export", "export"),
    CommandRow("info", "cli.info", "info"),
    CommandRow("presets", "cli.presets", "presets"),
    CommandRow("convert", "cli.convert", "convert"),
    CommandRow("build", "cli.build", "build"),
    CommandRow("infer", "cli.infer", "infer"),
    CommandRow("batch", "cli.batch", "batch"),
    CommandRow("serve", "cli.serve", "serve"),
    CommandRow("demo", "cli.demo", "demo"),
    CommandRow("compare", "cli.compare", "compare"),
    CommandRow("eval", "cli.evaluate", "evaluate"),
    CommandRow("bench", "cli.bench", "bench"),
    CommandRow("explain", "cli.explain", "explain"),
)


CONTEXT = {"help_option_names": ["-h", "--help"]}


def _version(value: bool) -> None:
    if value:
        from ocr_deploy import __version__

        typer.echo(f"ocr-deploy {__version__}")
        raise typer.Exit()


def _options(version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=_version,
        is_eager=True)] = False) -> None:
    """Options of `ocr-deploy` itself, before the command."""


def make_app() -> typer.Typer:
    """The `ocr-deploy` app with every row of COMMANDS registered."""
    from cli.common import UsageCommand

    app = typer.Typer(name="ocr-deploy", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, help=HELP, context_settings=CONTEXT)
    app.callback()(_options)
    for row in COMMANDS:
        function = getattr(importlib.import_module(row.module), row.function)
        app.command(name=row.name, cls=UsageCommand, context_settings=CONTEXT)(function)
    return app


app = make_app()


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
    try:
        app(prog_name="ocr-deploy")
    except BrokenPipeError:  # the reader went away while typer printed (help piped into head)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        sys.exit(141)
