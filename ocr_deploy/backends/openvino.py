"""OpenVINO backend: ocr-deploy .onnx files through OpenVINO's ONNX front end, and the IR files
(.xml + .bin) that `ocr-deploy build --backend openvino` writes, on the CPU.

The artifact's precision chooses the inference hint (PRECISION_HINTS): an fp32 or bf16 IR keeps
FP32 weights and bf16 is a hint to the CPU plugin, refused on a CPU without BF16; an int8 IR is a
quantized graph whose float layers run in bf16 where the CPU has it (OpenVINO's own default
there: as accurate on the demo model as f32, and 1.4x faster), else in f32.

The CPU plugin runs a static shape faster than a dynamic one (~15 %), so each new input shape
gets its own compiled model (a few are kept, later shapes share one dynamic model); compiled
models are cached on disk (CACHE_DIR) so a second start is fast.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import numpy as np

from ocr_deploy.backends.base import BackendUnavailable
from ocr_deploy.errors import ModelFileError
from ocr_deploy.meta import META_KEY, ModelMeta, meta_from_custom_map
from ocr_deploy.meta_checks import TensorSig, check_graph, openvino_sigs
from ocr_deploy.preprocess import FrameError
from ocr_deploy.vocabulary import Device, PerformanceMode, Precision, parse_choice

if TYPE_CHECKING:
    import openvino as ov

INSTALL_HINT = 'pip install "ocr-deploy[openvino]"'
REBUILD_HINT = "build it again with `ocr-deploy build MODEL.onnx --backend openvino`"
# INFERENCE_PRECISION_HINT per precision: the first the device computes natively, else the last.
PRECISION_HINTS = {Precision.fp32: ("f32",), Precision.fp16: ("f32",), Precision.bf16: ("bf16",),
                   Precision.int8: ("bf16", "f32")}
_CAPABILITY = {"f32": "FP32", "bf16": "BF16"}  # hint -> OPTIMIZATION_CAPABILITIES entry
_DEVICES = {Device.auto: "CPU", Device.cpu: "CPU"}
_STATIC_SHAPES = 4  # input shapes compiled statically; further shapes share one dynamic model


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as error:
        raise BackendUnavailable(f"OpenVINO is not installed ({error}); {INSTALL_HINT}") from None
    return openvino


def inference_hint(precision: str, capabilities: tuple[str, ...] | None = None) -> str:
    """INFERENCE_PRECISION_HINT for an artifact of this precision on a device with these
    capabilities [default: this machine's CPU]."""
    hints = PRECISION_HINTS[parse_choice(Precision, precision, "precision")]
    if len(hints) > 1 and capabilities is None:
        capabilities = device_capabilities(import_openvino().Core())
    return next((hint for hint in hints if _CAPABILITY[hint] in (capabilities or ())), hints[-1])


def describe_hint(precision: str) -> str:
    """The hint rule in words, for a file's description (no device asked)."""
    hints = PRECISION_HINTS[parse_choice(Precision, precision, "precision")]
    return hints[0] if len(hints) == 1 else f"{hints[0]} where the CPU has it, else {hints[-1]}"


def device_capabilities(core: ov.Core, device: str = "CPU") -> tuple[str, ...]:
    """What the device computes natively (BF16, INT8, FP32, ...)."""
    return tuple(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))


def require_bf16(core: ov.Core, *, what: str, device: str = "CPU") -> None:
    if "BF16" not in device_capabilities(core, device):
        name = core.get_property(device, "FULL_DEVICE_NAME")
        raise BackendUnavailable(
            f"{what} computes in bf16 and this {device} ({name}) has no BF16 (it needs AMX or "
            "AVX-512 BF16); use the fp32 IR (`ocr-deploy build MODEL.onnx --backend openvino "
            "--precision fp32`) or run it on a CPU that has BF16")


def default_cache_dir() -> Path:
    """$OCR_DEPLOY_CACHE/openvino, else ~/.cache/ocr-deploy/openvino (XDG_CACHE_HOME honoured)."""
    configured = os.environ.get("OCR_DEPLOY_CACHE")
    base = (Path(configured) if configured
            else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ocr-deploy")
    return base / "openvino"


def compile_config(precision: str, *, capabilities: tuple[str, ...] | None = None,
                   mode: str = PerformanceMode.latency, threads: int | None = None,
                   cache_dir: Path | None = None) -> dict[str, str]:
    """The CPU plugin's settings for an artifact of this precision (shared with the build side,
    which proves a build with exactly what the backend will run)."""
    config = {"INFERENCE_PRECISION_HINT": inference_hint(precision, capabilities),
              "PERFORMANCE_HINT": parse_choice(PerformanceMode, mode, "--mode").value.upper()}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


@dataclass(frozen=True)
class IrFile:
    """What an IR's .xml says without OpenVINO: our metadata and how many weight bytes it reads."""

    xml: Path
    meta_text: str | None
    weights_needed: int
    inputs: tuple[TensorSig, ...] = ()
    outputs: tuple[TensorSig, ...] = ()

    @property
    def weights(self) -> Path:
        return self.xml.with_suffix(".bin")

    def meta(self) -> ModelMeta:
        if self.meta_text is None:
            raise ModelFileError(f"{self.xml} has no ocr-deploy metadata (an IR made by another "
                                 f"tool?); {REBUILD_HINT} from an ocr-deploy ONNX")
        meta = ModelMeta.from_json(self.meta_text, source=str(self.xml))
        return check_graph(meta, self.inputs, self.outputs, source=str(self.xml))

    def check_weights(self) -> None:
        """One clear line for a missing or truncated .bin (OpenVINO's own is a C++ check)."""
        if not self.weights.is_file():
            raise ModelFileError(f"{self.xml.name} needs its weights file {self.weights.name} "
                                 f"beside it and it is missing; copy it with the .xml or "
                                 f"{REBUILD_HINT}")
        size = self.weights.stat().st_size
        if size < self.weights_needed:
            raise ModelFileError(f"{self.weights.name} has {size} bytes but {self.xml.name} reads "
                                 f"{self.weights_needed}: the weights file is truncated or from "
                                 f"another build; copy it again or {REBUILD_HINT}")


def read_ir(path: Path) -> IrFile:
    if not path.is_file():
        raise ModelFileError(f"model not found: {path}")
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise ModelFileError(f"{path} is not an OpenVINO IR .xml ({error})") from None
    if root.tag != "net":
        raise ModelFileError(f"{path} is not an OpenVINO IR .xml (its root is <{root.tag}>)")
    needed = 0
    for layer in root.iter("layer"):
        data = layer.find("data")
        if layer.get("type") == "Const" and data is not None and "offset" in data.attrib:
            needed = max(needed, int(data.get("offset", 0)) + int(data.get("size", 0)))
    node = root.find(f"rt_info/{META_KEY}")
    inputs, outputs = _ir_signature(root)
    return IrFile(path, None if node is None else node.get("value"), needed, inputs, outputs)


_IR_PRECISIONS = {"U8": "uint8", "U16": "uint16", "I32": "int32", "I64": "int64",
                  "FP32": "float32", "FP16": "float16", "BF16": "bfloat16"}


def _ir_port_sig(names: str, port: Any) -> list[TensorSig]:
    dtype = _IR_PRECISIONS.get(port.get("precision", ""), port.get("precision", "?").lower())
    shape = tuple(None if int(dim.text or -1) < 0 else int(dim.text or 0)
                  for dim in port.iter("dim"))
    return [TensorSig(name.strip(), dtype, shape) for name in names.split(",") if name.strip()]


def _ir_signature(root: Any) -> tuple[tuple[TensorSig, ...], tuple[TensorSig, ...]]:
    """The IR's inputs (Parameter layers) and outputs (Result layers) as the .xml declares them:
    an output's names are on its Result (IR v11) or on the port that feeds it."""
    layers = {layer.get("id"): layer for layer in root.iter("layer")}
    feeds = {edge.get("to-layer"): (edge.get("from-layer"), edge.get("from-port"))
             for edge in root.iter("edge")}
    inputs: list[TensorSig] = []
    outputs: list[TensorSig] = []
    for layer_id, layer in layers.items():
        if layer.get("type") == "Parameter":
            port = layer.find("output/port")
            if port is not None:
                inputs += _ir_port_sig(port.get("names", layer.get("name", "")), port)
        elif layer.get("type") == "Result":
            port = layer.find("input/port")
            names = layer.get("output_names")
            if names is None and layer_id in feeds:
                producer, port_id = feeds[layer_id]
                source = layers.get(producer)
                fed = None if source is None else source.find(f"output/port[@id='{port_id}']")
                names = "" if fed is None else fed.get("names", "")
            if port is not None:
                outputs += _ir_port_sig(names or "", port)
    return tuple(inputs), tuple(outputs)


def _is_ir(path: Path) -> bool:
    return path.suffix.lower() == ".xml"


def _read_model(core: ov.Core, path: Path) -> tuple[ov.Model, ModelMeta]:
    """The model and its metadata: an IR's from its rt_info, an ONNX file's from the
    metadata_props that OpenVINO's ONNX front end keeps under rt_info 'framework'."""
    if _is_ir(path):
        ir = read_ir(path)
        meta = ir.meta()
        ir.check_weights()
    elif not path.is_file():
        raise ModelFileError(f"model not found: {path}")
    try:
        model = core.read_model(str(path))
    except RuntimeError as error:
        raise ModelFileError(f"OpenVINO cannot read {path} ({_reason(error)})") from None
    if not _is_ir(path):
        key = ["framework", META_KEY]
        custom = {META_KEY: model.get_rt_info(key).astype(str)} if model.has_rt_info(key) else {}
        meta = meta_from_custom_map(custom, source=str(path))
    check_graph(meta, openvino_sigs(model.inputs), openvino_sigs(model.outputs), source=str(path))
    return model, meta


def _reason(error: BaseException) -> str:
    """The last informative line of an OpenVINO error (the first ones name C++ files)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    text = (useful or lines or [type(error).__name__])[-1]
    return text if len(text) <= 160 else text[:157] + "..."


def _port_name(port: Any, preferred: tuple[str, ...]) -> str:
    names = port.get_names()
    return next((name for name in preferred if name in names), port.get_any_name())


@dataclass
class _Compiled:
    """One compiled model and its idle infer requests (a request runs one call at a time)."""

    model: Any
    idle: list[Any] = field(default_factory=list)


class OpenVinoBackend:
    """An IR or an ONNX file compiled for the CPU; `run` is thread-safe (a request per call)."""

    name = "openvino"

    def __init__(self, path: Path, *, device: str = "auto", threads: int | None = None,
                 mode: str = PerformanceMode.latency, cache: bool = True,
                 cache_dir: Path | None = None):
        """mode: latency (one stream, every core on each frame) or throughput (streams for
        frames run from several threads at once). cache_dir: where compiled models are kept
        [default: default_cache_dir()]; cache=False compiles every time."""
        ov = import_openvino()
        self._version = ov.__version__.split("-")[0]
        choice = parse_choice(Device, device, "--device")
        if choice not in _DEVICES:
            raise BackendUnavailable(f"the OpenVINO backend runs on the CPU (--device auto or "
                                     f"cpu), not {choice}; use onnxruntime or tensorrt there")
        self._device = _DEVICES[choice]
        self._core = ov.Core()
        self.path = path
        self._model, self.meta = _read_model(self._core, path)
        precision = self.meta.provenance.precision
        capabilities = device_capabilities(self._core, self._device)
        if precision == Precision.bf16:
            require_bf16(self._core, what=str(path), device=self._device)
        self.hint = inference_hint(precision, capabilities)
        self.mode = parse_choice(PerformanceMode, mode, "--mode")
        self.cache_dir = self._usable(cache_dir or default_cache_dir()) if cache else None
        self._threads = threads
        self._config = compile_config(precision, capabilities=capabilities, mode=self.mode,
                                      threads=threads, cache_dir=self.cache_dir)
        self._input = self.meta.input.name
        inputs = [name for port in self._model.inputs for name in port.get_names()]
        if self._input not in inputs:
            raise ModelFileError(f"{path} has no input {self._input!r} that its metadata names "
                                 f"(it has {', '.join(inputs)}); {REBUILD_HINT}")
        preferred = (self.meta.output.name, "logits")
        self.output_names = [_port_name(port, preferred) for port in self._model.outputs]
        self._lock = threading.Lock()
        self._static: OrderedDict[tuple[int, ...], _Compiled] = OrderedDict()
        self._dynamic: _Compiled | None = None
        self.compiled_from_cache: list[bool] = []  # one entry per compilation, in order
        self._closed = False

    @staticmethod
    def _usable(folder: Path) -> Path | None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # describe() says the cache is off
        return folder if os.access(folder, os.W_OK) else None

    def _compile(self, shape: tuple[int, ...] | None) -> _Compiled:
        model = self._model
        if shape is not None and not model.is_dynamic() and tuple(
                model.input(self._input).get_shape()) == shape:
            shape = None  # already this static shape
        if shape is not None:
            model = model.clone()
            model.reshape({self._input: list(shape)})
        try:
            compiled = self._core.compile_model(model, self._device, self._config)
        except RuntimeError as error:
            raise FrameError(f"OpenVINO cannot compile {self.path.name} for input {shape} "
                             f"({_reason(error)})") from None
        self.compiled_from_cache.append(bool(compiled.get_property("LOADED_FROM_CACHE")))
        return _Compiled(compiled)

    def _take(self, shape: tuple[int, ...]) -> tuple[_Compiled, Any]:
        with self._lock:
            if self._closed:
                raise BackendUnavailable(f"the OpenVINO backend of {self.path.name} is closed")
            if shape in self._static:
                compiled = self._static[shape]
            elif len(self._static) < _STATIC_SHAPES:
                compiled = self._static[shape] = self._compile(shape)
            else:
                if self._dynamic is None:
                    self._dynamic = self._compile(None)
                compiled = self._dynamic
            if compiled.idle:
                return compiled, compiled.idle.pop()
            return compiled, compiled.model.create_infer_request()

    def run(self, graph_input: np.ndarray) -> dict[str, np.ndarray]:
        if graph_input.dtype != np.dtype(self.meta.input.dtype):
            raise FrameError(f"{self.path.name} takes {self.meta.input.dtype} input "
                             f"({self.meta.input.layout}), got {graph_input.dtype}")
        compiled, request = self._take(tuple(graph_input.shape))
        try:
            # share_outputs=False: the request goes back to the pool, so outputs are copies.
            results = request.infer({self._input: graph_input}, share_outputs=False)
        except RuntimeError as error:
            raise FrameError(f"OpenVINO rejected input {graph_input.shape} "
                             f"({_reason(error)})") from None
        finally:
            with self._lock:
                compiled.idle.append(request)
        return dict(zip(self.output_names, results.to_tuple(), strict=True))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._static.clear()
            self._dynamic = None

    def describe(self) -> str:
        threads = f"{self._threads} threads" if self._threads else "OpenVINO's threads"
        cache = f"cache {self.cache_dir}" if self.cache_dir else "no compiled-model cache"
        return (f"openvino {self._version} [{self._device}], hint {self.hint}, "
                f"{self.mode.value} mode, {threads}, {cache}")


def unavailable_reason() -> str | None:
    try:
        import openvino as ov
    except ImportError as error:
        return f"not installed ({error}): {INSTALL_HINT}"
    if "CPU" not in ov.Core().available_devices:
        return "OpenVINO finds no CPU device here"
    return None


def status_detail() -> str:
    ov = import_openvino()
    core = ov.Core()
    devices = []
    for device in core.available_devices:
        capabilities = device_capabilities(core, device)
        flags = ", ".join(f"{kind} {'yes' if kind in capabilities else 'no'}"
                          for kind in ("BF16", "INT8"))
        devices.append(f"{device} ({core.get_property(device, 'FULL_DEVICE_NAME')}; {flags})")
    return f"openvino {ov.__version__.split('-')[0]}: {'; '.join(devices)}"


def read_meta(path: Path) -> ModelMeta:
    """An IR's metadata from its .xml alone (no OpenVINO, no weights read); an ONNX file's
    through ONNX Runtime, as for the onnxruntime backend."""
    if _is_ir(path):
        return read_ir(path).meta()
    from ocr_deploy.backends.onnxrt import read_meta as onnx_meta

    return onnx_meta(path)


def artifact_rows(path: Path) -> list[tuple[str, str]]:
    """An IR's precision, the inference hint it runs with, and its weights file."""
    if not _is_ir(path):
        return []
    ir = read_ir(path)
    precision = ir.meta().provenance.precision
    weights = (f"{ir.weights.name}, {ir.weights.stat().st_size / 1e6:.1f} MB"
               if ir.weights.is_file() else f"{ir.weights.name} MISSING")
    return [("openvino IR", f"{precision}, inference hint {describe_hint(precision)}"),
            ("weights", weights)]
