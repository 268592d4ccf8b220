"""The GPU path up to what a CPU can truly run: ONNX Runtime provider selection and refusal
(stubbed provider lists around real CPU sessions), CUDA version reporting, sidecar and runtime
rules, builder flag choices, runtime and logger selection, close order, the cuda-python stub,
and benchmarks/gpu_check's pure parts."""

from __future__ import annotations

import gc
import importlib.util
import inspect
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from typer.testing import CliRunner

from benchmarks import gpu_check
from cli import app
from exporters.tensorrt_build import BuildRequest, builder_flags
from ocr_deploy.backends import nvidia, read_meta
from ocr_deploy.backends.base import BackendUnavailable
from ocr_deploy.backends.onnxrt import OnnxRuntimeBackend
from ocr_deploy.backends.ort_gpu import CPU, CUDA, TENSORRT, GpuSettings
from ocr_deploy.backends.trt import TensorRTBackend, numpy_dtype
from ocr_deploy.engine_sidecar import EngineSidecar, ProfileShapes, read_sidecar, sidecar_path
from ocr_deploy.errors import ConfigError
from ocr_deploy.fileio import sha256_of
from ocr_deploy.testframes import synthetic_frame

RUNNER = CliRunner()
REPO = Path(__file__).resolve().parents[1]
REAL_SESSION = onnxruntime.InferenceSession


class StubSessions:
    """onnxruntime.InferenceSession as onnxruntime-gpu behaves without cuDNN/TensorRT libraries:
    it accepts the GPU providers, runs on a real CPU session, and reports only those in `takes`."""

    def __init__(self, takes: set[str]):
        self.takes = takes
        self.asked: list[list] = []

    def __call__(self, model, options=None, providers=None):
        self.asked.append(list(providers or []))
        session = REAL_SESSION(model, options, providers=[CPU])
        names = [p if isinstance(p, str) else p[0] for p in providers or [CPU]]
        used = [name for name in names if name in self.takes]
        return types.SimpleNamespace(get_providers=lambda: used, run=session.run,
                                     get_outputs=session.get_outputs, get_inputs=session.get_inputs,
                                     get_modelmeta=session.get_modelmeta)


@pytest.fixture()
def gpu_onnxruntime(monkeypatch):
    """onnxruntime-gpu's provider list; returns a setter for which providers really load."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])

    def install(takes: set[str]) -> StubSessions:
        sessions = StubSessions(takes)
        monkeypatch.setattr(onnxruntime, "InferenceSession", sessions)
        return sessions

    return install


@pytest.mark.parametrize("device,takes,missing", [
    ("cuda", {CPU}, "its CUDA provider did not load"),
    ("tensorrt", {CUDA, CPU}, "its TensorRT provider did not load"),
    ("tensorrt", {CPU}, "its TensorRT provider did not load"),
])
def test_explicit_gpu_device_that_did_not_take_is_refused(tiny_onnx, gpu_onnxruntime, device, takes,
                                                          missing):
    gpu_onnxruntime(takes)
    with pytest.raises(BackendUnavailable, match=missing) as error:
        OnnxRuntimeBackend(tiny_onnx, device=device)
    text = str(error.value)
    assert text.startswith(f"--device {device}: onnxruntime-gpu ") and "\n" not in text
    assert ("onnxruntime-gpu[cuda,cudnn]" in text) == (device == "cuda")
    assert ("ocr-deploy[tensorrt-cu12]" in text) == (device == "tensorrt")


def test_auto_may_fall_back_and_says_where_it_runs(tiny_onnx, gpu_onnxruntime):
    sessions = gpu_onnxruntime({CPU})
    backend = OnnxRuntimeBackend(tiny_onnx, device="auto")
    assert backend.providers == (CPU,) and "[CPU]" in backend.describe()
    assert [p[0] if isinstance(p, tuple) else p for p in sessions.asked[-1]] == [CUDA, CPU]


def test_provider_options_are_deliberate(tiny_onnx, gpu_onnxruntime, private_cache):
    sessions = gpu_onnxruntime({TENSORRT, CUDA, CPU})
    backend = OnnxRuntimeBackend(tiny_onnx, device="tensorrt", fp16=True)
    assert backend.providers == (TENSORRT, CUDA, CPU)
    asked = dict(p for p in sessions.asked[-1] if isinstance(p, tuple))
    cache = private_cache / "onnxruntime-tensorrt"
    assert asked[TENSORRT] == {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                               "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
                               "trt_fp16_enable": True}
    assert cache.is_dir()
    assert asked[CUDA] == {"cudnn_conv_algo_search": "HEURISTIC"}  # a dynamic model
    assert asked[CPU] == {}
    frame = synthetic_frame(64, 96, seed=2)[None]  # still computes (on the real CPU session)
    reference = REAL_SESSION(str(tiny_onnx), providers=[CPU]).run(None, {"image": frame})[0]
    assert np.array_equal(backend.run(frame)["labels"], reference)


def test_gpu_settings_follow_the_model():
    fp16_model = GpuSettings(cache_dir=Path("/c"), fp16=True, model_precision="fp16", static_size=True)
    assert fp16_model.options(TENSORRT)["trt_fp16_enable"] is False  # an FP16 graph has its types
    assert fp16_model.options(CUDA) == {"cudnn_conv_algo_search": "EXHAUSTIVE"}
    assert GpuSettings(cache_dir=Path("/c")).options(TENSORRT)["trt_fp16_enable"] is False


def test_fp16_needs_the_tensorrt_provider(tiny_onnx, gpu_onnxruntime):
    gpu_onnxruntime({CUDA, CPU})
    with pytest.raises(ConfigError, match="pass --device tensorrt"):
        OnnxRuntimeBackend(tiny_onnx, device="cuda", fp16=True)


def test_infer_with_a_device_that_did_not_take_is_one_line(tiny_onnx, gpu_onnxruntime, tmp_path):
    gpu_onnxruntime({CPU})
    import cv2

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), synthetic_frame(64, 96))
    result = RUNNER.invoke(app, ["infer", str(image), "--model", str(tiny_onnx), "--device", "cuda",
                                 "-o", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --device cuda: onnxruntime-gpu") and "cuDNN" in lines[-1]


SILENT_SESSION = """
import sys, numpy as np
from onnx import TensorProto, helper, numpy_helper
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    initializer=[numpy_helper.from_array(np.zeros(3, np.float32), "unused")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
if sys.argv[1] == "plain":
    import onnxruntime
    onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
else:
    from ocr_deploy.backends.onnxrt import cpu_session
    cpu_session(model)
"""


def test_onnx_runtime_log_lines_are_silenced():
    """An unused initializer makes ONNX Runtime warn on stderr; our sessions print nothing."""
    def stderr_of(mode: str) -> str:
        return subprocess.run([sys.executable, "-c", SILENT_SESSION, mode], cwd=REPO, check=True,
                              capture_output=True, text=True).stderr

    assert "Removing initializer 'unused'" in stderr_of("plain")
    assert stderr_of("ours") == ""


@pytest.mark.parametrize("driver,runtime,expected", [
    ((12, 4), (13, 0), 'driver supports CUDA 12.4, cuda-python\'s CUDA runtime 13.0 (newer than the '
                       'driver: install the extra that fits); pip install "ocr-deploy[tensorrt-cu12]"'),
    ((13, 1), (13, 0), 'pip install "ocr-deploy[tensorrt-cu13]" fits it'),
    ((14, 0), (13, 0), 'pip install "ocr-deploy[tensorrt-cu13]" fits it'),
    ((11, 8), None, "cuda-python not installed; too old for TensorRT 10"),
    (None, (12, 9), "CUDA: no NVIDIA driver found; cuda-python's CUDA runtime 12.9"),
])
def test_cuda_versions_say_which_extra_fits(driver, runtime, expected):
    assert expected in nvidia.CudaVersions(driver, runtime).describe()


def test_info_says_there_is_no_driver_here():
    versions = nvidia.cuda_versions()
    if versions.driver is not None:
        pytest.skip("an NVIDIA driver is present here")
    result = RUNNER.invoke(app, ["info"])
    row = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["tensorrt"])
    assert "CUDA: no NVIDIA driver found" in row
    if importlib.util.find_spec("cuda.bindings") is not None:
        assert versions.runtime is not None and "cuda-python's CUDA runtime" in row


def _sidecar(meta, plan: Path, onnx: Path, **fields) -> EngineSidecar:
    profile = ProfileShapes("image", (1, 64, 96, 3), (1, 64, 96, 3), (1, 64, 96, 3))
    return EngineSidecar(meta, "10.13.3.9", "NVIDIA L4", (8, 9), str(onnx), sha256_of(onnx),
                         sha256_of(plan), "fp32", "strong", profile, "0.1.0", **fields)


def test_sidecar_records_tf32_and_the_runtime(tiny_onnx, tmp_path):
    plan = tmp_path / "m.engine"
    plan.write_bytes(b"plan")
    sidecar = _sidecar(read_meta(tiny_onnx), plan, tiny_onnx, tf32=False, version_compatible=True)
    sidecar_path(plan).write_text(sidecar.to_json())
    assert read_sidecar(plan) == sidecar
    rows = dict(sidecar.rows())
    assert "TF32 off" in rows["engine"]
    assert rows["runtime"] == "needs TensorRT 10.x >= 10.13.3.9, lean (tensorrt-lean) or full"
    info = RUNNER.invoke(app, ["info", str(plan)])
    assert "needs TensorRT 10.x >= 10.13.3.9, lean (tensorrt-lean) or full" in info.stdout
    old = json.loads(sidecar.to_json())  # a schema-1 sidecar, from before these fields
    for key in ("tf32", "version_compatible", "exclude_lean_runtime"):
        old.pop(key)
    old["schema"] = 1
    sidecar_path(plan).write_text(json.dumps(old))
    legacy = read_sidecar(plan)
    assert legacy.tf32 is None and not legacy.version_compatible and "TF32" not in legacy.rows()[0][1]


@pytest.mark.parametrize("fields,version,runtime,problem", [
    ({}, "10.13.3.9", "tensorrt", None),
    ({}, "10.13.3.9", "tensorrt_lean", "built without --version-compatible"),
    ({}, "10.14.1.48", "tensorrt", "plans only load in the version that built them"),
    ({"version_compatible": True}, "10.16.1.11", "tensorrt_lean", None),
    ({"version_compatible": True}, "10.12.0.36", "tensorrt", "it loads in TensorRT 10.x >= 10.13.3.9"),
    ({"version_compatible": True}, "11.0.0.114", "tensorrt_lean", "it loads in TensorRT 10.x"),
    ({"version_compatible": True, "exclude_lean_runtime": True}, "10.13.3.9", "tensorrt_lean", None),
    ({"version_compatible": True, "exclude_lean_runtime": True}, "10.16.1.11", "tensorrt_lean",
     "plans only load in the version that built them"),
])
def test_which_runtime_loads_a_plan(tiny_onnx, tmp_path, fields, version, runtime, problem):
    plan = tmp_path / "m.engine"
    plan.write_bytes(b"plan")
    found = _sidecar(read_meta(tiny_onnx), plan, tiny_onnx, **fields).runtime_problem(
        version=version, runtime=runtime)
    assert found is None if problem is None else problem in found


@pytest.mark.parametrize("request_fields,typing,flags_set,cleared", [
    ({}, "strong", (), ("TF32",)),
    ({"tf32": True}, "strong", (), ()),
    ({}, "weak-fp16", ("FP16", "OBEY_PRECISION_CONSTRAINTS"), ("TF32",)),
    ({"version_compatible": True}, "strong", ("VERSION_COMPATIBLE",), ("TF32",)),
    ({"version_compatible": True, "exclude_lean_runtime": True}, "strong",
     ("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"), ("TF32",)),
])
def test_builder_flags(request_fields, typing, flags_set, cleared):
    choice = builder_flags(BuildRequest(onnx=Path("m.onnx"), **request_fields), typing)
    assert (choice.set, choice.cleared) == (flags_set, cleared)


def test_build_flag_misuse_is_one_line(tiny_onnx, tmp_path):
    out = tmp_path / "x.engine"
    result = RUNNER.invoke(app, ["build", str(tiny_onnx), "-o", str(out), "--shape", "64x96",
                                 "--exclude-lean-runtime"])
    assert result.exit_code == 1 and list(tmp_path.iterdir()) == []
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --exclude-lean-runtime applies to --version-compatible plans; add it")
    other = RUNNER.invoke(app, ["build", str(tiny_onnx), "--backend", "openvino", "-o",
                                str(tmp_path / "x.xml"), "--version-compatible"])
    assert other.exit_code == 1
    assert other.stderr.strip().splitlines()[-1] == "error: --version-compatible does not apply to --backend openvino"


def _runtime_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__version__ = "10.13.3.9"
    module.Runtime = object

    class Logger:
        WARNING = 2

        def __init__(self, severity: int):
            self.severity = severity

    module.Logger = Logger
    return module


def test_lean_runtime_is_used_when_the_full_package_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # stubs only
    lean = _runtime_module("tensorrt_lean")
    monkeypatch.setitem(sys.modules, "tensorrt_lean", lean)
    monkeypatch.setattr(nvidia, "gpu_info", lambda device=0: nvidia.GpuInfo("NVIDIA L4", (8, 9)))
    assert nvidia.tensorrt_runtime() == (lean, "tensorrt_lean")
    with pytest.raises(BackendUnavailable, match="tensorrt_lean 10.13.3.9 runs version-compatible plans "
                       "but cannot build them: install it with"):
        nvidia.tensorrt()  # the builder needs the full package
    full = _runtime_module("tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", full)
    assert nvidia.tensorrt_runtime() == (full, "tensorrt")


def test_one_logger_per_tensorrt_library():
    full, lean = _runtime_module("tensorrt"), _runtime_module("tensorrt_lean")
    assert nvidia.tensorrt_logger(full) is nvidia.tensorrt_logger(full)
    assert nvidia.tensorrt_logger(lean) is not nvidia.tensorrt_logger(full)
    assert nvidia.tensorrt_logger(full).severity == full.Logger.WARNING


def test_engine_dtypes_map_by_name():
    dtype = types.SimpleNamespace(name="UINT8")
    assert numpy_dtype(dtype) == np.uint8 and numpy_dtype(types.SimpleNamespace(name="HALF")) == np.float16
    with pytest.raises(Exception, match="FP8 tensor"):
        numpy_dtype(types.SimpleNamespace(name="FP8"))


def test_close_releases_context_then_engine_then_runtime():
    released: list[str] = []

    class Held:
        def __init__(self, name: str):
            self.name = name

        def __del__(self):
            released.append(self.name)

    import threading

    backend = TensorRTBackend.__new__(TensorRTBackend)
    backend._lock, backend._buffers, backend._stream = threading.Lock(), {}, None
    backend._runtime, backend._engine, backend._context = Held("runtime"), Held("engine"), Held("context")
    backend.close()
    gc.collect()
    assert released == ["context", "engine", "runtime"]
    backend.close()  # twice is fine
    with pytest.raises(Exception, match="closed"):
        backend._live_context()


def test_cuda_stub_matches_cuda_bindings():
    """typings/cuda/bindings/runtime.pyi is what mypy checks our CUDA calls against: each of its
    functions and enum members must exist in the installed cuda-bindings, with its parameters."""
    runtime = pytest.importorskip("cuda.bindings.runtime")
    import ast

    stub = ast.parse((REPO / "typings/cuda/bindings/runtime.pyi").read_text())
    functions = [node for node in stub.body if isinstance(node, ast.FunctionDef)]
    assert len(functions) >= 14
    for node in functions:
        real = getattr(runtime, node.name)
        assert [arg.arg for arg in node.args.args] == list(inspect.signature(real).parameters), node.name
    for node in (node for node in stub.body if isinstance(node, ast.ClassDef)):
        members = [item.targets[0].id for item in node.body if isinstance(item, ast.Assign)]
        for member in members:
            assert int(getattr(getattr(runtime, node.name), member)) == int(
                ast.literal_eval(next(item.value for item in node.body if isinstance(item, ast.Assign)
                                      and item.targets[0].id == member)))
    assert isinstance(runtime.cudaStreamNonBlocking, int)


def test_gpu_check_plans_every_case_and_gates_the_trained_model():
    cases = gpu_check.plan_cases(["demo", "w48"], gpu_check.RUNNERS, gpu_check.PROFILES,
                                 gpu_check.PRECISIONS)
    assert len(cases) == 16 and len({case.label for case in cases}) == 16
    assert {case.gate for case in cases if case.model.name == "w48"} == {None}
    assert {(case.precision, case.gate) for case in cases if case.model.name == "demo"} == {
        ("fp32", 0.999), ("fp16", 0.995)}
    dynamic = next(case for case in cases if case.profile == "dynamic")
    assert len(dynamic.check_sizes()) == 2 and dynamic.check_sizes()[0] != dynamic.check_sizes()[1]
    with pytest.raises(SystemExit, match="--runners: choose from"):
        gpu_check.plan_cases(["demo"], ["tensorrt", "openvino"], ["static"], ["fp32"])


def test_gpu_check_table_and_failures():
    demo = gpu_check.MODELS["demo"]
    rows = [gpu_check.Row(gpu_check.Case(demo, "tensorrt", "static", "fp16"), agreement=0.9991,
                          p50_ms=1.234, p95_ms=2.5, engine_bytes=12_300_000, build_s=41.26),
            gpu_check.Row(gpu_check.Case(demo, "ort-trt", "dynamic", "fp32"), agreement=0.99,
                          p50_ms=3.0, p95_ms=4.0),
            gpu_check.Row(gpu_check.Case(gpu_check.MODELS["w48"], "tensorrt", "static", "fp16"),
                          agreement=0.5, p50_ms=9.0, p95_ms=9.5),
            gpu_check.Row(gpu_check.Case(demo, "tensorrt", "dynamic", "fp32"), error="ExportError: x")]
    table = gpu_check.format_table(rows)
    assert table[0].split()[:3] == ["case", "agreement", "p50"]
    assert "99.910 %" in table[1] and "1.23" in table[1] and "12.3" in table[1] and "41.3" in table[1]
    assert table[1].endswith("pass") and table[3].endswith("speed only")
    assert gpu_check.failures(rows) == ["demo ort-trt dynamic fp32: FAIL (< 99.9 %)",
                                        "demo tensorrt dynamic fp32: ERROR"]
    assert gpu_check.percentiles([1.0, 2.0, 3.0, 4.0, 100.0]) == (3.0, pytest.approx(80.8))


def test_gpu_check_without_a_gpu_says_why():
    if nvidia.tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are present here")
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--models", "demo"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("cannot run the GPU check: ") and "CUDA:" in result.stderr
