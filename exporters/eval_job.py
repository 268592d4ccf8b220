"""`ocr-deploy eval`: open any artifact of a model, check the dataset fits it, score it.

A checkpoint runs on PyTorch (the reference the exported artifacts are measured against); an
ONNX or engine on its runtime backend. The scoring itself (ocr_deploy.evaluation) is the
torch-free runtime's and knows nothing of where the model came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exporters.artifacts import open_artifact
from ocr_deploy.errors import ConfigError
from ocr_deploy.evaluation import EvalReport
from ocr_deploy.meta import ModelMeta
from ocr_deploy.vocabulary import Device, SizePolicy


@dataclass(frozen=True, kw_only=True)
class EvalRequest:
    model: Path  # .onnx, .engine or a checkpoint
    data: Path  # dataset folder
    dataset: str | None = None  # expected preset; must be the model's
    split: str = "val"
    layout: str = "auto"
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    policy: str = SizePolicy.reference
    tile: tuple[int, int] | None = None  # --policy sliding
    overlap: float | None = None  # --policy sliding [default: tiling.DEFAULT_OVERLAP]
    device: str = Device.auto
    backend: str | None = None  # default: from the file (PyTorch for a checkpoint)
    show_progress: bool = True


def parse_scales(text: str) -> tuple[float, ...]:
    """'0.75,1,1.25' -> (0.75, 1.0, 1.25)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--scales {text!r} is not a comma list of numbers") from None


def check_dataset(meta: ModelMeta, dataset: str | None) -> None:
    """A dataset preset named by the user must be the one the model was exported for."""
    if dataset is not None and dataset != meta.dataset.name:
        raise ConfigError(f"the model was exported for {meta.dataset.name} "
                          f"({meta.num_classes} classes), not {dataset}")


def run_eval(request: EvalRequest) -> EvalReport:
    from ocr_deploy.datasets import scan_dataset
    from ocr_deploy.evaluation import evaluate_dataset
    from ocr_deploy.segmenter import Segmenter

    backend = open_artifact(request.model, backend=request.backend, device=request.device)
    try:
        segmenter = Segmenter(backend, policy=request.policy, tile=request.tile,
                              overlap=request.overlap)
        check_dataset(segmenter.meta, request.dataset)
        scan = scan_dataset(request.data, layout=request.layout, split=request.split)
        return evaluate_dataset(segmenter, scan, scales=request.scales, flip=request.flip,
                                show_progress=request.show_progress)
    finally:
        backend.close()
