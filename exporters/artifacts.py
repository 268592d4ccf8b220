"""Build side: any artifact of a model (checkpoint, ONNX, engine) opened as one Backend.

A checkpoint runs on PyTorch (exporters.torch_backend, the reference); every other file goes to
the runtime's backend table, which this module extends by one row. compare, eval, bench and
info all open and read models through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.checkpoint_files import CHECKPOINT_SUFFIXES
from ocr_deploy.backends import (
    BACKEND_TABLE,
    Backend,
    BackendSpec,
    BackendUnavailable,
    backend_status,
    spec_for,
)
from ocr_deploy.meta import ModelMeta
from ocr_deploy.vocabulary import Device

PYTORCH = BackendSpec(name="pytorch", module="exporters.torch_backend",
                      backend_class="TorchBackend", suffixes=CHECKPOINT_SUFFIXES,
                      devices=(Device.auto, Device.cpu, Device.cuda))
ARTIFACT_TABLE: tuple[BackendSpec, ...] = (*BACKEND_TABLE, PYTORCH)


def artifact_spec(path: Path, backend: str | None = None) -> BackendSpec:
    """The backend named, else PyTorch for a checkpoint, else the runtime's choice by suffix.
    A backend named for a file it cannot run is refused with what to do instead; a checkpoint
    named for a runtime that runs ONNX is exported once into the checkpoint cache (open_artifact)."""
    spec = spec_for(path, backend, table=ARTIFACT_TABLE)
    if backend is None or spec.opens(path):
        return spec
    if PYTORCH.opens(path) and spec.opens(Path("model.onnx")):
        return spec  # run through the checkpoint cache
    if any(other.opens(path) for other in ARTIFACT_TABLE):  # a file of another backend's kind
        raise BackendUnavailable(cannot_run(path, spec))
    return spec


def cannot_run(path: Path, spec: BackendSpec) -> str:
    """Why --backend `spec` cannot run `path`, and the step that makes a file it can run."""
    kinds = " or ".join(spec.suffixes)
    what = f"--backend {spec.name} runs {kinds} files, not {path.name}"
    if spec.name == "tensorrt":
        onnx = path if path.suffix.lower() == ".onnx" else path.with_suffix(".onnx")
        first = "" if path.suffix.lower() == ".onnx" else f"ocr-deploy export {path} -o {onnx}, then "
        return f"{what}: build an engine first: {first}ocr-deploy build {onnx} (then pass the .engine)"
    if spec is PYTORCH:
        return (f"{what}: {path.name} is not a PyTorch checkpoint; pass the checkpoint it was "
                "exported from, or leave --backend out")
    usable = [other.name for other in ARTIFACT_TABLE if other.opens(path)]
    return f"{what}; for {path.name} use --backend {' or '.join(usable)}"


def open_artifact(path: Path, *, backend: str | None = None, device: str = "auto",
                  threads: int | None = None, logits: bool = False, **options: Any) -> Backend:
    """Open any artifact as a Backend. logits=True: an ONNX graph that computes its upsampled
    logits only internally (labels and probs exports) also returns them, under "logits".
    Other options go to the backend's class (e.g. OpenVINO's mode="throughput")."""
    spec = artifact_spec(path, backend)
    if spec is not PYTORCH and PYTORCH.opens(path):  # a checkpoint for a runtime: the cache's export
        from exporters.model_cache import resolve_model

        path = resolve_model(path)
    if logits and spec.name == "onnxruntime":
        return _onnx_with_logits(path, device=device, threads=threads)
    return spec.open(path, device=device, threads=threads, **options)


def _onnx_with_logits(path: Path, *, device: str, threads: int | None) -> Backend:
    from exporters.graph_compare import with_logits_output
    from exporters.onnx_files import load_model
    from ocr_deploy.backends.onnxrt import OnnxRuntimeBackend

    model, _ = load_model(path)
    return OnnxRuntimeBackend(with_logits_output(model).SerializeToString(), device=device,
                              threads=threads, source=str(path))


def read_artifact_meta(path: Path) -> ModelMeta:
    """The metadata of any artifact: embedded (ONNX), beside it (engine) or from its weights."""
    return artifact_spec(path).load().read_meta(path)


@dataclass(frozen=True)
class ArtifactInfo:
    """What `ocr-deploy info` prints: the model (when given) and the backends usable here."""

    heading: str | None
    rows: list[tuple[str, str]]
    backends: list[tuple[str, str]]


def artifact_info(path: Path | None) -> ArtifactInfo:
    from ocr_deploy.describe import describe_meta

    backends = [(name, ("available: " if ok else "unavailable: ") + detail)
                for name, ok, detail in backend_status()]
    if path is None:
        return ArtifactInfo(None, [], backends)
    spec = artifact_spec(path)
    if spec is PYTORCH:  # a checkpoint: what it is and what exporting it would give
        from exporters.checkpoint_info import checkpoint_rows

        rows = checkpoint_rows(path)
    else:
        module = spec.load()
        meta = module.read_meta(path)
        rows = (class_rows(describe_meta(meta), meta.dataset.classes) + module.artifact_rows(path)
                + [("note", note) for note in meta.provenance.notes])
    return ArtifactInfo(f"{path} ({path.stat().st_size / 1e6:.1f} MB)", rows, backends)


def class_rows(rows: list[tuple[str, str]], classes: tuple[str, ...],
               width: int = 88) -> list[tuple[str, str]]:
    """The 'dataset' row with every class name, wrapped onto continuation rows."""
    import textwrap

    out = []
    for label, text in rows:
        if label != "dataset":
            out.append((label, text))
            continue
        name = text.split(":", 1)[0]
        # A class's number and name stay on one line (no-break spaces while wrapping).
        listed = ", ".join(f"{index} {cls}".replace(" ", "\xa0") for index, cls in enumerate(classes))
        lines = [line.replace("\xa0", " ") for line in
                 textwrap.wrap(f"{name}, {len(classes)} classes: {listed}", width=width)]
        out += [(label, lines[0])] + [("", line) for line in lines[1:]]
    return out
