"""`ocr-deploy eval`: mIoU and accuracies on a labelled dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    BackendName,
    Dataset,
    check_output_file,
    one_line_errors,
    write_output,
)
from ocr_deploy.vocabulary import Device
from ocr_deploy.vocabulary import SizePolicy as Policy


@one_line_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="An .onnx, .engine, or a checkpoint (run by "
                                          "PyTorch).")],
    data: Annotated[Path, typer.Option(help="Dataset folder: Cityscapes layout, or "
                                       "images/ + labels/ pairs.")],
    dataset: Annotated[Dataset | None, typer.Option(help="Expected preset; must match the "
                                                    "model's.", show_default="the model's")] = None,
    split: Annotated[str, typer.Option(help="Split folder (Cityscapes: val, train, test).")] = "val",
    layout: Annotated[str, typer.Option(help="auto, cityscapes or pairs.")] = "auto",
    flip: Annotated[bool, typer.Option(help="Average with the mirrored image "
                                       "(needs a logits or probs export).")] = False,
    scales: Annotated[str, typer.Option(help="Comma list of scales, e.g. 0.75,1,1.25; scales "
                                        "> 1 run in windows of the scale-1 input, as the "
                                        "reference (needs a logits or probs export).")] = "1",
    policy: Annotated[Policy, typer.Option(help="Test-size policy.")] = Policy.reference,
    tile: Annotated[str | None, typer.Option(help="--policy sliding: tile HxW.",
                                             show_default="a fixed model's input")] = None,
    overlap: Annotated[float | None, typer.Option(help="--policy sliding: share of a tile "
                                                  "that neighbours overlap.",
                                                  show_default="0.33")] = None,
    device: Annotated[Device, typer.Option(help="Where ONNX Runtime runs.")] = Device.auto,
    backend: Annotated[BackendName | None, typer.Option(
        help="Backend; pytorch runs a checkpoint eagerly, a runtime runs its cached export.",
        show_default="from the file; pytorch for a checkpoint")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the report as JSON to this file; - prints only the JSON.",
        show_default="none")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """mIoU, per-class IoU, pixel and mean accuracy on a labelled dataset."""
    from exporters.artifacts import artifact_spec
    from exporters.eval_job import EvalRequest, parse_scales, run_eval
    from ocr_deploy.preprocess import parse_size

    check_output_file(json_out, "--json", stdout_ok=True)
    if backend is not None:
        artifact_spec(model, backend.value)

    report = run_eval(EvalRequest(model=model, data=data,
                                  dataset=dataset.value if dataset else None, split=split,
                                  layout=layout, flip=flip, scales=parse_scales(scales),
                                  policy=policy.value, device=device.value,
                                  tile=parse_size(tile, "--tile") if tile else None,
                                  overlap=overlap, backend=backend.value if backend else None,
                                  show_progress=progress))
    if json_out is None or str(json_out) != "-":
        typer.echo("\n".join(report.lines()))
    if json_out is not None:
        write_output(json_out, report.to_json().encode())
