"""`ocr-deploy presets`: the dataset presets, their classes, colours and test-size policies."""

from __future__ import annotations

import sys
import textwrap
from typing import Annotated

import typer

from cli.common import (
    Dataset,
    one_line_errors,
)
from ocr_deploy.presets import RGB, DatasetPreset, load_preset, preset_names


def swatch(rgb: RGB, *, color: bool) -> str:
    """Two cells of the colour (ANSI truecolor) on a terminal; the hex code elsewhere."""
    r, g, b = rgb
    code = f"#{r:02x}{g:02x}{b:02x}"
    return f"\x1b[48;2;{r};{g};{b}m  \x1b[0m {code}" if color else code


def preset_lines(preset: DatasetPreset, *, color: bool, classes: bool = True) -> list[str]:
    lines = [f"{preset.name}: {preset.num_classes} classes; test size: "
             f"{preset.test_policy.describe()}"]
    if not classes:
        names = ", ".join(preset.classes)
        return lines + textwrap.wrap(names, width=96, initial_indent="  ", subsequent_indent="  ")
    width = max(len(name) for name in preset.classes)
    for index, (name, rgb) in enumerate(zip(preset.classes, preset.palette, strict=False)):
        lines.append(f"  {index:>3}  {name:<{width}}  {swatch(rgb, color=color)}")
    return lines


@one_line_errors
def presets(
    name: Annotated[Dataset | None, typer.Argument(help="One preset to show.",
                                                   show_default="every preset")] = None,
    colors: Annotated[bool, typer.Option(help="One line per class with its colour (a swatch on "
                                         "a terminal, the hex code elsewhere).",
                                         show_default="with a preset named; names only for "
                                                      "all")] = False,
) -> None:
    """List the dataset presets: class names, colours and the reference test-size policy."""
    color = sys.stdout.isatty()
    names = [name.value] if name is not None else list(preset_names())
    for position, preset_name in enumerate(names):
        if position:
            typer.echo("")
        for line in preset_lines(load_preset(preset_name), color=color,
                                 classes=colors or name is not None):
            typer.echo(line)
