"""One contract for every backend in the table, plus the build side's PyTorch backend.

Each backend that runs here opens an artifact of the same tiny network through the one entry
point, returns every output by name, and agrees with the others on the labels; a backend that
cannot run here is skipped with its own reason.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from exporters.artifacts import ARTIFACT_TABLE, open_artifact, read_artifact_meta
from exporters.checkpoint_files import CHECKPOINT_SUFFIXES
from ocr_deploy.backends import (
    BACKEND_TABLE,
    BackendUnavailable,
    backend_status,
    open_backend,
    read_meta,
)
from ocr_deploy.testframes import synthetic_frame
from ocr_deploy.vocabulary import Device

HEIGHT, WIDTH = 96, 160  # one size every artifact accepts (the engine is built for it)
MIN_AGREEMENT = 0.999
SPECS = {spec.name: spec for spec in ARTIFACT_TABLE}


def _engine(tiny_onnx: Path, folder: Path) -> Path:
    from exporters.tensorrt_build import BuildRequest, build_engine

    request = BuildRequest(onnx=tiny_onnx, output=folder / "tiny.engine", precision="fp32",
                           shape=(HEIGHT, WIDTH))
    return build_engine(request).plan


# file suffix -> how to make an artifact of the tiny network in it (onnx, checkpoint, folder).
# A new backend that opens one of these suffixes is tested without touching this file.
MAKERS: dict[str, Callable[[Path, Path, Path], Path]] = {
    ".onnx": lambda onnx, checkpoint, folder: onnx,
    ".engine": lambda onnx, checkpoint, folder: _engine(onnx, folder),
    **{suffix: (lambda onnx, checkpoint, folder: checkpoint) for suffix in CHECKPOINT_SUFFIXES},
}


def _maker(name: str) -> Callable[[Path, Path, Path], Path] | None:
    return next((MAKERS[suffix] for suffix in SPECS[name].suffixes if suffix in MAKERS), None)


def _batch() -> np.ndarray:
    return np.stack([synthetic_frame(HEIGHT, WIDTH, seed=seed) for seed in (3, 4)])


def _open(name: str, tiny_onnx: Path, tiny_checkpoint: Path, folder: Path):
    spec = SPECS[name]
    reason = spec.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{name} unavailable here: {reason}")
    path = _maker(name)(tiny_onnx, tiny_checkpoint, folder)
    device = Device.cpu if Device.cpu in spec.devices else Device.auto
    return path, open_artifact(path, backend=name, device=device)


@pytest.fixture(scope="module")
def reference_labels(tiny_onnx) -> np.ndarray:
    """Labels of ONNX Runtime on the CPU: what every other backend is held to."""
    backend = open_backend(tiny_onnx, device="cpu")
    return backend.run(_batch())[backend.meta.output.name]


def test_every_backend_has_a_maker_and_a_module():
    for name in SPECS:
        assert _maker(name) is not None, f"add a maker for a file {name} opens to MAKERS"
    for spec in ARTIFACT_TABLE:
        module = spec.load()
        for function in ("unavailable_reason", "status_detail", "read_meta", "artifact_rows"):
            assert callable(getattr(module, function)), (spec.name, function)
        assert isinstance(getattr(module, spec.backend_class), type)
        assert spec.devices and all(suffix.startswith(".") for suffix in spec.suffixes)


@pytest.mark.parametrize("name", list(SPECS))
def test_backend_contract(name, tiny_onnx, tiny_checkpoint, tmp_path, reference_labels):
    path, backend = _open(name, tiny_onnx, tiny_checkpoint, tmp_path)
    assert backend.name == name
    meta = backend.meta
    assert meta.num_classes == 19 and meta.network.variant == "tiny"
    assert read_artifact_meta(path) == meta
    if name in {spec.name for spec in BACKEND_TABLE}:
        assert read_meta(path) == meta  # the runtime reads it without the build side

    outputs = backend.run(_batch())
    assert isinstance(outputs, dict) and next(iter(outputs)) == meta.output.name
    labels = outputs[meta.output.name]
    assert labels.shape == (2, HEIGHT, WIDTH) and labels.dtype == np.dtype(meta.output.dtype)
    agreement = float((labels == reference_labels).mean())
    assert agreement >= MIN_AGREEMENT, f"{name} agrees on {100 * agreement:.3f} % of pixels"
    assert labels.max() > labels.min()  # a real segmentation, not one class everywhere

    line = backend.describe()
    assert line.strip() and "\n" not in line
    backend.close()
    backend.close()  # idempotent


def test_logits_by_name_agree_between_pytorch_and_onnx(tiny_onnx, tiny_checkpoint):
    """The reference run returns its logits by name, and an ONNX labels graph opened for
    comparison exposes its internal logits: the same numbers, argmax = labels."""
    for name in ("pytorch", "onnxruntime"):
        reason = SPECS[name].unavailable_reason()
        if reason is not None:
            pytest.skip(f"{name} unavailable here: {reason}")
    torch_backend = open_artifact(tiny_checkpoint, device="cpu")
    onnx_backend = open_artifact(tiny_onnx, device="cpu", logits=True)
    torch_out, onnx_out = (backend.run(_batch()) for backend in (torch_backend, onnx_backend))
    assert list(torch_out) == list(onnx_out) == ["labels", "logits"]
    assert torch_out["logits"].shape == (2, 19, HEIGHT, WIDTH)
    # Two float32 implementations differ by rounding, which an untrained network amplifies
    # (see exporters.verify); a wrong graph is 1e-1 or more away.
    delta = np.abs(torch_out["logits"] - onnx_out["logits"])
    assert delta.max() < 1e-2 and delta.mean() < 1e-4
    assert (onnx_out["logits"].argmax(1) == onnx_out["labels"]).mean() >= MIN_AGREEMENT
    plain = open_artifact(tiny_onnx, device="cpu").run(_batch())
    assert list(plain) == ["labels"]  # without the option: the graph's own outputs only


def test_status_is_one_row_per_table_row():
    status = backend_status()
    assert [name for name, _, _ in status] == [spec.name for spec in BACKEND_TABLE]
    for spec, (_, usable, detail) in zip(BACKEND_TABLE, status, strict=True):
        assert usable == (spec.unavailable_reason() is None) and detail


def test_devices_come_from_the_table(tmp_path):
    cpu_suffixes = dict.fromkeys(suffix for spec in BACKEND_TABLE if Device.cpu in spec.devices
                                 for suffix in spec.suffixes)
    with pytest.raises(BackendUnavailable, match=f"use a {' or '.join(cpu_suffixes)} model there"):
        open_backend(tmp_path / "model.engine", device="cpu")
    names = ", ".join(spec.name for spec in ARTIFACT_TABLE)
    with pytest.raises(BackendUnavailable, match=f"choose one of {names}$"):
        open_artifact(tmp_path / "model.onnx", backend="tflite")


def test_importing_the_runtime_loads_no_heavy_library():
    script = ("import sys, ocr_deploy, ocr_deploy.backends; "
              "print(sorted(m for m in ('onnxruntime', 'cv2', 'tensorrt', 'torch') "
              "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
