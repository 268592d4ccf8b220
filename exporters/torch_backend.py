"""A checkpoint run eagerly by PyTorch behind the runtime's Backend protocol (name "pytorch").

The reference backend for compare, eval and bench: the same DeployGraph (pre-processing,
network, upsampling, output head) that export verifies its ONNX graph against. Like a runtime
backend module it also says whether it runs here and reads its artifact's metadata; torch and
the exporter load only when a checkpoint is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ocr_deploy.meta import ModelMeta

if TYPE_CHECKING:
    from exporters.checkpoints import Checkpoint

INSTALL_HINT = "pip install 'ocr-deploy[export]'"


def _checkpoint_and_meta(path: Path) -> tuple[Checkpoint, ModelMeta]:
    """The checkpoint and the metadata its default export (labels, raw input) would carry."""
    from exporters.checkpoints import load_checkpoint
    from exporters.export_job import ExportRequest, build_meta

    checkpoint = load_checkpoint(path)
    return checkpoint, build_meta(checkpoint, ExportRequest(weights=path), None, [])


class TorchBackend:
    name = "pytorch"

    def __init__(self, path: Path, *, device: str = "cpu", threads: int | None = None):
        import torch

        from exporters.onnx_export import DeployGraph
        from exporters.onnx_files import LOGITS

        if threads:
            torch.set_num_threads(threads)
        checkpoint, self.meta = _checkpoint_and_meta(path)
        self._torch = torch
        self._device = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self.graph = DeployGraph(checkpoint.build_model(), self.meta).eval().to(self._device)
        # The graph returns (primary, upsampled logits); a logits export's primary *is* them.
        self._names = list(dict.fromkeys([self.meta.output.name, LOGITS]))

    def run(self, graph_input: np.ndarray) -> dict[str, np.ndarray]:
        """The primary output and the upsampled logits, by name, for a batch."""
        with self._torch.no_grad():
            outputs = self.graph(self._torch.from_numpy(graph_input).to(self._device))
        pairs = zip(self._names, outputs, strict=True)
        return {name: output.cpu().numpy() for name, output in pairs}

    def describe(self) -> str:
        return (f"pytorch {self._torch.__version__} eager on {self._device}, "
                f"{self._torch.get_num_threads()} CPU threads")

    def close(self) -> None:
        """Nothing to release beyond what garbage collection frees."""


def unavailable_reason() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return f"torch is not installed ({INSTALL_HINT})"
    return None


def status_detail() -> str:
    import torch

    return f"torch {torch.__version__}" + (", CUDA" if torch.cuda.is_available() else ", CPU")


def read_meta(path: Path) -> ModelMeta:
    """What a checkpoint computes once exported with the defaults (labels, raw input)."""
    return _checkpoint_and_meta(path)[1]


def artifact_rows(path: Path) -> list[tuple[str, str]]:
    """A checkpoint carries nothing beyond the metadata read from its weights."""
    return []
