"""The typer app: one row per command in COMMANDS, each command one module of this package."""

from __future__ import annotations

import importlib
import os
import signal
from dataclasses import dataclass

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
    CommandRow("convert", "cli.convert", "convert"),
    CommandRow("build", "cli.build", "build"),
    CommandRow("infer", "cli.infer", "infer"),
    CommandRow("demo", "cli.demo", "demo"),
    CommandRow("compare", "cli.compare", "compare"),
    CommandRow("eval", "cli.evaluate", "evaluate"),
    CommandRow("bench", "cli.bench", "bench"),
)


def make_app() -> typer.Typer:
    """The `ocr-deploy` app with every row of COMMANDS registered."""
    app = typer.Typer(name="ocr-deploy", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, help=HELP)
    for row in COMMANDS:
        function = getattr(importlib.import_module(row.module), row.function)
        app.command(name=row.name)(function)
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
    app(prog_name="ocr-deploy")
