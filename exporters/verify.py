"""Proof at export time: the ONNX graph on ONNX Runtime computes what PyTorch computes.

The gate: labels agree on >= 99.9 % of pixels, and the upsampled logits differ by <= 1e-3.
Two correct float32 implementations differ by rounding, in opposite directions as often as not,
and a network can amplify rounding (sharp attention softmaxes, untrained weights). So when the
two differ by more than 1e-3, PyTorch also runs in float64, the exact answer, and the ONNX graph
passes if it is within max(1e-3, ONNX_EXACT_FACTOR x PyTorch's own float32 error) of it: as
accurate as the tolerance asks, or as PyTorch itself is. A wrong graph (another resize mode, a
missing layer) is 1e-1 or more away and fails. Every figure is reported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from exporters.onnx_files import LOGITS
from ocr_deploy.meta import InputSpec, ModelMeta
from ocr_deploy.preprocess import graph_input
from ocr_deploy.testframes import synthetic_frame

if TYPE_CHECKING:
    import onnx
    import torch

    from exporters.onnx_export import DeployGraph

MIN_AGREEMENT = 0.999
MAX_LOGIT_DELTA = 1e-3
ONNX_EXACT_FACTOR = 2.0
# Two sizes for dynamic graphs; the second is deliberately not a multiple of 32.
VERIFICATION_SIZES = ((256, 512), (250, 378))


@dataclass(frozen=True)
class ExactErrors:
    """Distance of each float32 result from PyTorch's float64 result."""

    torch_fp32: float
    onnx: float


@dataclass(frozen=True)
class SizeCheck:
    batch: int
    height: int
    width: int
    max_abs_logits: float  # ONNX Runtime vs PyTorch, both float32
    agreement: float  # share of pixels whose label equals PyTorch's
    exact: ExactErrors | None = None

    @property
    def passed(self) -> bool:
        if self.agreement < MIN_AGREEMENT:
            return False
        if self.max_abs_logits <= MAX_LOGIT_DELTA:
            return True
        return self.exact is not None and self.exact.onnx <= max(
            MAX_LOGIT_DELTA, ONNX_EXACT_FACTOR * self.exact.torch_fp32)

    def describe(self) -> str:
        text = (f"{self.batch}x{self.height}x{self.width}: max |dlogits| "
                f"{self.max_abs_logits:.2e}, labels agree {100 * self.agreement:.4f} %")
        if self.exact is not None:
            text += (f" (vs exact fp64: PyTorch fp32 {self.exact.torch_fp32:.2e}, ONNX "
                     f"{self.exact.onnx:.2e})")
        return text


@dataclass(frozen=True)
class Verification:
    checks: tuple[SizeCheck, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def worst_delta(self) -> float:
        return max(check.max_abs_logits for check in self.checks)


def verification_shapes(spec: InputSpec) -> list[tuple[int, int, int]]:
    batch = spec.batch or 1
    if spec.fixed_size is not None:
        return [(batch, *spec.fixed_size)]
    return [(batch, spec.height or height, spec.width or width) for height, width in VERIFICATION_SIZES]


def _torch_run(graph: DeployGraph, feed: np.ndarray, dtype: torch.dtype) -> list[np.ndarray]:
    import torch

    tensor = torch.from_numpy(feed)
    if tensor.is_floating_point():
        tensor = tensor.to(dtype)
    with torch.no_grad():
        return [output.numpy() for output in graph(tensor)]


def verify_export(graph: DeployGraph, model: onnx.ModelProto, meta: ModelMeta) -> Verification:
    """Run both on deterministic frames; compare upsampled logits and labels."""
    import torch

    from ocr_deploy.backends.onnxrt import cpu_session

    session = cpu_session(model.SerializeToString())
    output_names = [output.name for output in session.get_outputs()]
    exact_graph: DeployGraph | None = None
    checks = []
    for seed, (batch, height, width) in enumerate(verification_shapes(meta.input)):
        frames = np.stack([synthetic_frame(height, width, seed=seed * 16 + index)
                           for index in range(batch)])
        feed = graph_input(frames, meta.input)
        onnx_outputs = dict(zip(output_names, session.run(None, {meta.input.name: feed}), strict=True))
        torch_outputs = _torch_run(graph, feed, torch.float32)
        torch_logits = torch_outputs[-1]
        onnx_logits = onnx_outputs[LOGITS]
        if meta.output.kind == "labels":
            torch_labels, onnx_labels = torch_outputs[0], onnx_outputs[meta.output.name]
        else:
            torch_labels, onnx_labels = torch_logits.argmax(1), onnx_logits.argmax(1)
        check = SizeCheck(batch, height, width,
                          max_abs_logits=float(np.abs(onnx_logits - torch_logits).max()),
                          agreement=float((onnx_labels == torch_labels).mean()))
        if check.agreement >= MIN_AGREEMENT and check.max_abs_logits > MAX_LOGIT_DELTA:
            exact_graph = exact_graph or copy.deepcopy(graph).double()
            exact_logits = _torch_run(exact_graph, feed, torch.float64)[-1]
            check = SizeCheck(batch, height, width, check.max_abs_logits, check.agreement,
                              ExactErrors(float(np.abs(torch_logits - exact_logits).max()),
                                          float(np.abs(onnx_logits - exact_logits).max())))
        checks.append(check)
    return Verification(tuple(checks))
