"""Shared test fixtures: the reference fixtures, and tiny real networks exported for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE_FIXTURES = Path(os.environ.get(
    "OCR_DEPLOY_FIXTURES", REPO.parent / "shared" / "fixtures" / "hrnet_ocr_official"))
FAMILY_FIXTURES = Path(os.environ.get(
    "OCR_DEPLOY_FAMILY_FIXTURES", REPO.parent / "shared" / "fixtures" / "model_families"))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Iterator[Path]:
    """Checkpoint exports and compiled OpenVINO models go to a cache of the test session's own,
    never to the user's ~/.cache/ocr-deploy."""
    folder = tmp_path_factory.mktemp("ocr_deploy_cache")
    before = os.environ.get("OCR_DEPLOY_CACHE")
    os.environ["OCR_DEPLOY_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("OCR_DEPLOY_CACHE", None)
    else:
        os.environ["OCR_DEPLOY_CACHE"] = before


@pytest.fixture(scope="session")
def reference_fixtures() -> Path:
    if not REFERENCE_FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"reference fixtures missing at {REFERENCE_FIXTURES}")
        pytest.skip(f"reference fixtures not found at {REFERENCE_FIXTURES}")
    return REFERENCE_FIXTURES


@pytest.fixture(scope="session")
def family_fixtures() -> Path:
    """The other frameworks' fixtures (openseg.pytorch, OCNet.pytorch, mmsegmentation)."""
    if not FAMILY_FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"model-family fixtures missing at {FAMILY_FIXTURES}")
        pytest.skip(f"model-family fixtures not found at {FAMILY_FIXTURES}")
    return FAMILY_FIXTURES


@pytest.fixture(scope="session")
def family_checkpoint(family_fixtures, tmp_path_factory) -> Callable[..., Path]:
    """make(NAME, layout=None): the fixture NAME rebuilt in its framework's own container by the
    fixture's make_checkpoint.py (once per test session and layout)."""
    made: dict[tuple[str, str | None], Path] = {}
    folder = tmp_path_factory.mktemp("family_checkpoints")

    def make(name: str, layout: str | None = None) -> Path:
        if (name, layout) not in made:
            out = folder / f"{name}_{layout or 'default'}.pth"
            command = [sys.executable, str(family_fixtures / "make_checkpoint.py"), name, str(out)]
            subprocess.run(command + (["--layout", layout] if layout else []), check=True)
            made[name, layout] = out
        return made[name, layout]

    return make


@pytest.fixture(scope="session")
def tiny_config():
    from exporters.variants import OcrConfig

    return OcrConfig.from_variant("tiny", num_classes=19, mid_channels=32, key_channels=16)


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    from exporters.synthetic import synthetic_model

    return synthetic_model(tiny_config, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    from exporters.synthetic import save_release

    folder = tmp_path_factory.mktemp("tiny")
    return save_release(tiny_model, folder / "tiny_release.pth")


@pytest.fixture(scope="session")
def export_tiny(tiny_checkpoint, tmp_path_factory):
    """Export the tiny network with ExportRequest options, once per distinct set of options."""
    from exporters.export_job import ExportRequest, run_export

    cache: dict[tuple, Path] = {}

    def export(**options) -> Path:
        key = tuple(sorted(options.items()))
        if key not in cache:
            output = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
            run_export(ExportRequest(weights=tiny_checkpoint, output=output, **options))
            cache[key] = output
        return cache[key]

    return export


@pytest.fixture(scope="session")
def tiny_onnx(export_tiny) -> Path:
    """A real exported (and verified) ONNX file of the tiny network: labels, raw input."""
    return export_tiny()


@pytest.fixture()
def foreign_onnx(tmp_path) -> Path:
    """A valid ONNX model that ocr-deploy did not make (no metadata): one Relu."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "foreign.onnx"
    onnx.save(model, path)
    return path
