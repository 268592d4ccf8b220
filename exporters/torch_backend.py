"""A checkpoint run eagerly by PyTorch behind the runtime's Backend protocol.

The reference backend for compare, eval and bench: the same DeployGraph (pre-processing,
network, upsampling, output head) that export verifies its ONNX graph against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exporters.checkpoints import load_checkpoint
from exporters.export_job import ExportRequest, build_meta
from exporters.onnx_export import DeployGraph


class TorchBackend:
    name = "pytorch"

    def __init__(self, path: Path, *, device: str = "cpu", threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        checkpoint = load_checkpoint(path)
        self.meta = build_meta(checkpoint, ExportRequest(weights=path), None, [])
        self._torch = torch
        self._device = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self.graph = DeployGraph(checkpoint.build_model(), self.meta).eval().to(self._device)

    def run_with_logits(self, graph_input: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, upsampled logits) for a batch in the graph's input format."""
        with self._torch.no_grad():
            labels, logits = self.graph(self._torch.from_numpy(graph_input).to(self._device))
        return labels.cpu().numpy(), logits.cpu().numpy()

    def run(self, graph_input: np.ndarray) -> np.ndarray:
        return self.run_with_logits(graph_input)[0]

    def describe(self) -> str:
        return (f"pytorch {self._torch.__version__} eager on {self._device}, "
                f"{self._torch.get_num_threads()} CPU threads")

    def close(self) -> None:
        """Nothing to release beyond what garbage collection frees."""
