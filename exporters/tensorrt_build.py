"""`ocr-deploy build MODEL.onnx`: a TensorRT plan (TensorRT >= 10, Python API) and its sidecar.

TensorRT >= 10.12 (and 11, which has no FP16 builder flag) builds a strongly typed network: the
precision of every layer comes from the ONNX graph, so an FP16 engine is built from the proved
mixed-precision graph (FP32 OCR islands). Older 10.x builds the FP32 graph with the FP16 flag and
the OCR softmax/MatMul layers constrained to FP32.

TF32 is off unless asked (`--tf32`): TensorRT allows it by default, which rounds every FP32 layer,
the FP16 graph's FP32 islands included, to 10-bit mantissas on Ampere and newer. TensorRT has no
per-layer TF32 switch, so the builder flag is the one place. `--version-compatible` plans run on
the lean runtime (tensorrt-lean) and on later TensorRT of the same major version.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from exporters.builds import BuildOptions, BuiltArtifact, refuse_unused
from exporters.graph_rewrites import uint8_casts_via_float, uint8_input_feeds_cast_only
from exporters.onnx_files import load_model
from ocr_deploy import __version__
from ocr_deploy.backends.nvidia import gpu_info, tensorrt, tensorrt_logger, tensorrt_version
from ocr_deploy.engine_sidecar import EngineSidecar, ProfileShapes, sidecar_path
from ocr_deploy.errors import ConfigError, ExportError
from ocr_deploy.fileio import atomic_write_bytes, ensure_writable_dir, sha256_of
from ocr_deploy.meta import InputSpec, ModelMeta
from ocr_deploy.vocabulary import Precision, parse_choice

if TYPE_CHECKING:  # checked against tensorrt-stubs by `make test`
    import tensorrt as trt_api

STRONG_TYPING_FROM = (10, 12)
ENGINE_PRECISIONS = (Precision.fp16, Precision.fp32)
Size = tuple[int, int]


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    onnx: Path
    output: Path | None = None
    precision: Precision = Precision.fp16
    shape: Size | None = None  # static profile (the default)
    min_shape: Size | None = None  # dynamic profile: all three
    opt_shape: Size | None = None
    max_shape: Size | None = None
    batch: int | None = None
    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    opt_level: int = 3
    frames: str | None = None  # images that prove the FP16 graph (default: synthetic frames)
    tf32: bool = False  # allow TF32 in FP32 layers (TensorRT's default; off here, see above)
    version_compatible: bool = False  # a plan the lean runtime and later TensorRT 10.x/11.x run
    exclude_lean_runtime: bool = False  # version-compatible, without the lean runtime inside


@dataclass(frozen=True)
class BuildResult:
    plan: Path
    sidecar: EngineSidecar
    plan_bytes: int
    seconds: float
    notes: tuple[str, ...]


def _layout(meta: ModelMeta, batch: int, size: Size) -> tuple[int, ...]:
    height, width = size
    return (batch, height, width, 3) if meta.input.format == "raw" else (batch, 3, height, width)


def select_profile(meta: ModelMeta, request: BuildRequest) -> ProfileShapes:
    """One optimisation profile: static by default, a range when min/opt/max are given."""
    fixed_batch = meta.input.batch
    if request.batch is not None and fixed_batch is not None and request.batch != fixed_batch:
        raise ConfigError(f"--batch {request.batch} differs from the model's fixed batch {fixed_batch}")
    batch = request.batch or fixed_batch or 1
    ranged = (request.min_shape, request.opt_shape, request.max_shape)
    if any(ranged):
        if not all(ranged) or request.shape:
            raise ConfigError("give --min-size, --opt-size and --max-size together, "
                              "or --size alone")
        if meta.input.fixed_size:
            raise ConfigError("this ONNX has a fixed input size; a shape range needs a dynamic export")
        sizes = [size for size in ranged if size is not None]
    else:
        size = request.shape or meta.deployment_size()
        if size is None:
            raise ConfigError("pass --size HxW (the input size the engine will run at)")
        sizes = [size] * 3
    if meta.input.fixed_size and sizes[0] != meta.input.fixed_size:
        raise ConfigError(f"--size must be the model's fixed size {meta.input.fixed_size}")
    for axis in (0, 1):
        values = [size[axis] for size in sizes]
        if min(values) < meta.input.min_side or values != sorted(values):
            raise ConfigError("shapes must be at least 32 px and ordered min <= opt <= max")
    return ProfileShapes(meta.input.name, *(_layout(meta, batch, size) for size in sizes))


def _engine_input(meta: ModelMeta, profile: ProfileShapes) -> InputSpec:
    """The engine's input as the runtime must feed it: a static profile fixes batch and size, so
    Segmenter letterboxes every frame into it; a range keeps the sides dynamic."""
    batch = profile.min[0] if profile.min[0] == profile.max[0] else None
    if profile.min != profile.max:
        return dataclasses.replace(meta.input, batch=batch)
    height, width = profile.min[1:3] if meta.input.format == "raw" else profile.min[2:4]
    return dataclasses.replace(meta.input, batch=batch, height=height, width=width)


def _graph_for(model: onnx.ModelProto, meta: ModelMeta, request: BuildRequest, strong: bool,
               notes: list[str]) -> tuple[bytes, str, str]:
    """(ONNX bytes to parse, typing, precision) for the requested precision."""
    source = meta.provenance.precision
    if request.precision == "fp32":
        if source != "fp32":
            raise ConfigError(f"{request.onnx} is {source}; build FP32 engines from the FP32 export")
        return model.SerializeToString(), "strong", "fp32"
    if source == Precision.fp16:
        return model.SerializeToString(), "strong", source
    if not strong:
        notes.append("TensorRT < 10.12: FP16 flag, OCR softmax/MatMul layers constrained to FP32")
        return model.SerializeToString(), "weak-fp16", "fp16"
    from exporters.fp16_job import make_fp16, verification_frames

    fp16, check = make_fp16(model, meta, verification_frames(meta, request.frames))
    notes.append(f"FP16 graph proved on ONNX Runtime CPU: {check.agreement.describe()}")
    return fp16.SerializeToString(), "strong", "fp16"


def _constrain_ocr_layers(trt: Any, network: trt_api.INetworkDefinition) -> int:
    """TensorRT < 10.12 only: keep softmaxes, MatMuls and the scale between them in FP32."""
    producers: dict[str, trt_api.ILayer] = {}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        for output in range(layer.num_outputs):
            producers[layer.get_output(output).name] = layer
    kept = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        fed_by_matmul = layer.type == trt.LayerType.ELEMENTWISE and any(
            getattr(producers.get(layer.get_input(i).name), "type", None)
            == trt.LayerType.MATRIX_MULTIPLY for i in range(layer.num_inputs))
        if layer.type in (trt.LayerType.SOFTMAX, trt.LayerType.MATRIX_MULTIPLY) or fed_by_matmul:
            layer.precision = trt.float32
            for output in range(layer.num_outputs):
                layer.set_output_type(output, trt.float32)
            kept += 1
    return kept


@dataclass(frozen=True)
class FlagChoice:
    """The builder flags a request sets or clears, by TensorRT BuilderFlag name."""

    set: tuple[str, ...]
    cleared: tuple[str, ...]


def builder_flags(request: BuildRequest, typing: str) -> FlagChoice:
    """Which BuilderFlags a build sets and clears (pure: what the sidecar then records)."""
    chosen = ["FP16", "OBEY_PRECISION_CONSTRAINTS"] if typing == "weak-fp16" else []
    if request.version_compatible:
        chosen.append("VERSION_COMPATIBLE")
        if request.exclude_lean_runtime:
            chosen.append("EXCLUDE_LEAN_RUNTIME")
    return FlagChoice(tuple(chosen), () if request.tf32 else ("TF32",))


def _apply_flags(trt: Any, config: trt_api.IBuilderConfig, flags: FlagChoice) -> bool | None:
    """Set and clear the flags; returns whether TF32 stays allowed (None: no such flag here)."""
    for name in flags.set:
        config.set_flag(getattr(trt.BuilderFlag, name))
    tf32_flag = getattr(trt.BuilderFlag, "TF32", None)
    if tf32_flag is None:
        return None
    if "TF32" in flags.cleared:
        config.clear_flag(tf32_flag)
    return config.get_flag(tf32_flag)


def _build_plan(trt: Any, graph: bytes, typing: str, profile: ProfileShapes,
                request: BuildRequest) -> tuple[bytes, bool | None]:
    logger = tensorrt_logger(trt)
    builder: trt_api.Builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typing == "strong" else 0
    network = builder.create_network(flags)
    parser: trt_api.OnnxParser = trt.OnnxParser(network, logger)
    if not parser.parse(graph):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse the ONNX graph: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(request.workspace_gib * (1 << 30)))
    config.builder_optimization_level = request.opt_level
    tf32 = _apply_flags(trt, config, builder_flags(request, typing))
    if typing == "weak-fp16":
        kept = _constrain_ocr_layers(trt, network)
        if not kept:
            raise ExportError("found no softmax/MatMul layers to keep in FP32; please report it")
    optimisation = builder.create_optimization_profile()
    # pybind11 converts the tuples to Dims (the stubs only name Dims)
    optimisation.set_shape(profile.input, profile.min, profile.opt, profile.max)  # pyright: ignore[reportArgumentType]
    if config.add_optimization_profile(optimisation) < 0:
        raise ExportError(f"TensorRT refused the profile {profile.min}..{profile.max}")
    cache_file = request.timing_cache
    cached = cache_file.read_bytes() if cache_file and cache_file.is_file() else b""
    if not config.set_timing_cache(config.create_timing_cache(cached), False):
        raise ConfigError(f"{cache_file} is a timing cache of another GPU or TensorRT version; "
                          "pass a new --timing-cache path")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError("TensorRT failed to build the engine (its log above says why)")
    if cache_file is not None:
        atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    return bytes(plan), tf32


def build_engine(request: BuildRequest, *, log: Callable[[str], None] = lambda _: None) -> BuildResult:
    started = time.perf_counter()
    if parse_choice(Precision, request.precision, "--precision") not in ENGINE_PRECISIONS:
        raise ConfigError(f"TensorRT engines are built in {' or '.join(ENGINE_PRECISIONS)}, not "
                          f"{request.precision}")
    if not 0 <= request.opt_level <= 5:
        raise ConfigError(f"--opt-level must be 0..5 (got {request.opt_level})")
    if request.workspace_gib <= 0:
        raise ConfigError("--workspace must be positive (GiB)")
    if request.exclude_lean_runtime and not request.version_compatible:
        raise ConfigError("--exclude-lean-runtime applies to --version-compatible plans; add it")
    model, meta = load_model(request.onnx)
    profile = select_profile(meta, request)
    output = request.output or request.onnx.with_suffix(".engine")
    ensure_writable_dir(output.parent.resolve())
    trt = tensorrt()  # one clear line, with how to install, when TensorRT or a GPU is missing
    gpu = gpu_info()
    notes: list[str] = []
    rewritten = uint8_input_feeds_cast_only(model).count + uint8_casts_via_float(model)
    if rewritten:
        notes.append(f"rewrote {rewritten} uint8 boundary node(s) for TensorRT (an older export); "
                     "re-export to keep the file and the engine alike")
    strong = tensorrt_version(trt) >= STRONG_TYPING_FROM
    graph, typing, precision = _graph_for(model, meta, request, strong, notes)
    log(f"building a {precision} engine with TensorRT {trt.__version__} on {gpu.name}")
    plan, tf32 = _build_plan(trt, graph, typing, profile, request)
    if tf32 is None:
        notes.append(f"TensorRT {trt.__version__} has no TF32 builder flag; its own default applies")
    meta = dataclasses.replace(meta.with_precision(precision), input=_engine_input(meta, profile))
    sidecar = EngineSidecar(meta, trt.__version__, gpu.name, gpu.compute_capability,
                            str(request.onnx.resolve()), sha256_of(request.onnx),
                            _sha256_bytes(plan), precision, typing, profile, __version__,
                            tf32=tf32, version_compatible=request.version_compatible,
                            exclude_lean_runtime=request.exclude_lean_runtime)
    atomic_write_bytes(output, plan)
    atomic_write_bytes(sidecar_path(output), sidecar.to_json().encode())
    return BuildResult(output, sidecar, len(plan), time.perf_counter() - started, tuple(notes))


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def build_from_options(options: BuildOptions, *, log: Callable[[str], None] = lambda _: None
                       ) -> BuiltArtifact:
    """The `build --backend tensorrt` row of exporters.builds."""
    refuse_unused(options, "tensorrt", calibration=None, format=None, min_agreement=None)
    result = build_engine(BuildRequest(
        onnx=options.model, output=options.output, precision=options.precision or Precision.fp16,
        shape=options.shape, min_shape=options.min_shape, opt_shape=options.opt_shape,
        max_shape=options.max_shape, batch=options.batch, workspace_gib=options.workspace_gib,
        timing_cache=options.timing_cache, opt_level=options.opt_level, frames=options.frames,
        tf32=options.tf32, version_compatible=options.version_compatible,
        exclude_lean_runtime=options.exclude_lean_runtime), log=log)
    rows = (result.sidecar.rows() + [("sidecar", f"{result.plan}.json")]
            + [("note", note) for note in result.notes])
    return BuiltArtifact(result.plan, result.plan_bytes, result.seconds, rows)
