"""The one interface every inference backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.meta import ModelMeta


class BackendUnavailable(OcrDeployError):
    """A backend whose library, device or model file cannot be used here."""


class Backend(Protocol):
    """Runs a model made by ocr-deploy: graph input in, the graph's primary output out.

    `run` must be safe to call from several threads at once; a backend whose engine is not
    thread-safe serialises calls with a lock.
    """

    name: str
    meta: ModelMeta

    def run(self, graph_input: np.ndarray) -> np.ndarray:
        """Batch in the graph's input format -> the output named by meta.output."""
        ...

    def describe(self) -> str:
        """One line: backend, device and providers actually in use."""
        ...

    def close(self) -> None:
        """Release device memory and handles now rather than at garbage collection."""
        ...
