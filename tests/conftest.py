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
def run_folder(tmp_path_factory) -> Path:
    """A folder every xdist worker of this test run shares: artifacts that cost tens of seconds
    (exports, framework checkpoints) are built once per run, not once per worker."""
    root = tmp_path_factory.getbasetemp()
    folder = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "built_once"
    folder.mkdir(exist_ok=True)
    return folder


def built_once(path: Path, build: Callable[[Path], object]) -> Path:
    """`path`, built by `build(temporary path)` by whichever worker comes first; the others wait
    for it. The temporary name keeps a crashed build from passing as a finished one."""
    from filelock import FileLock

    with FileLock(f"{path}.lock"):
        if not path.exists():
            partial = path.with_name(f"partial-{path.name}")
            build(partial)
            partial.replace(path)
    return path


@pytest.fixture(scope="session")
def family_checkpoint(family_fixtures, run_folder) -> Callable[..., Path]:
    """make(NAME, layout=None): the fixture NAME rebuilt in its framework's own container by the
    fixture's make_checkpoint.py (once per test run and layout)."""

    def make(name: str, layout: str | None = None) -> Path:
        command = [sys.executable, str(family_fixtures / "make_checkpoint.py"), name]
        layout_args = ["--layout", layout] if layout else []
        return built_once(run_folder / f"{name}_{layout or 'default'}.pth", lambda out: subprocess.run(
            [*command, str(out), *layout_args], check=True))

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
def tiny_checkpoint(tiny_model, run_folder) -> Path:
    from exporters.synthetic import save_release

    return built_once(run_folder / "tiny_release.pth", lambda out: save_release(tiny_model, out))


@pytest.fixture(scope="session")
def export_tiny(tiny_checkpoint, run_folder):
    """Export the tiny network with ExportRequest options, once per distinct set of options."""
    import hashlib

    from exporters.export_job import ExportRequest, run_export

    def export(**options) -> Path:
        key = hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()[:16]
        folder = run_folder / f"tiny_onnx_{key}"
        folder.mkdir(exist_ok=True)
        return built_once(folder / "tiny.onnx", lambda out: run_export(
            ExportRequest(weights=tiny_checkpoint, output=out, **options)))

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
