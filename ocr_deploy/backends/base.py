"""The one interface every inference backend implements, and what each backend module provides."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.meta import ModelMeta


class BackendUnavailable(OcrDeployError):
    """A backend whose library, device or model file cannot be used here."""


class Backend(Protocol):
    """Runs a model made by ocr-deploy: graph input in, every graph output out, by name.

    `run` must be safe to call from several threads at once; a backend whose engine is not
    thread-safe serialises calls with a lock.
    """

    name: str
    meta: ModelMeta

    def run(self, graph_input: np.ndarray) -> dict[str, np.ndarray]:
        """Batch in the graph's input format -> every output, by name, in graph order. The
        primary output is `outputs[meta.output.name]`; upsampled logits, where the artifact has
        them, are under "logits"."""
        ...

    def describe(self) -> str:
        """One line: backend, device and providers actually in use."""
        ...

    def close(self) -> None:
        """Release device memory and handles now rather than at garbage collection; safe to
        call more than once."""
        ...


class BackendModule(Protocol):
    """What a backend's module provides besides its Backend class (named in its table row).

    Each function imports its heavy library only when called, so the table can ask every
    backend whether it runs here without loading any of them up front.
    """

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here (what to install or use instead), None if it can."""
        ...

    def status_detail(self) -> str:
        """One line on what it runs on here, for `ocr-deploy info`; only asked when available."""
        ...

    def read_meta(self, path: Path) -> ModelMeta:
        """The ocr-deploy metadata that travels with an artifact of this backend."""
        ...

    def artifact_rows(self, path: Path) -> list[tuple[str, str]]:
        """(label, text) rows about the artifact beyond its ModelMeta (build target, profile)."""
        ...
