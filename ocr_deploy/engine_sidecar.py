"""The JSON sidecar beside a TensorRT plan: what the plan computes and what it was built for.

The plan itself stays a plain TensorRT plan (trtexec and Polygraphy open it); gluing metadata in
front of it would break every TensorRT tool. A plan is refused when the sidecar says it was
built by another TensorRT, for another GPU, or from an ONNX file that has changed since.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ocr_deploy.errors import ModelFileError
from ocr_deploy.fileio import sha256_of
from ocr_deploy.meta import ModelMeta

SIDECAR_SCHEMA = 2  # 2: tf32, version_compatible, exclude_lean_runtime


def sidecar_path(plan: Path) -> Path:
    return plan.with_name(plan.name + ".json")


@dataclass(frozen=True)
class ProfileShapes:
    """One optimisation profile of the single graph input, in the graph's own layout."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(
            low <= side <= high for low, side, high in zip(self.min, shape, self.max, strict=True))


@dataclass(frozen=True)
class EngineSidecar:
    meta: ModelMeta
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    onnx_path: str
    onnx_sha256: str
    plan_sha256: str
    precision: str  # fp16 (mixed, FP32 islands) or fp32
    typing: str  # "strong" (precision from the ONNX graph) or "weak-fp16" (TensorRT < 10.12)
    profile: ProfileShapes
    toolkit_version: str
    schema: int = SIDECAR_SCHEMA
    # TF32 allowed for FP32 layers? TensorRT's default is on; ocr-deploy builds clear it so FP32
    # (and the FP16 graph's FP32 islands) keep 23-bit mantissas. None: a schema-1 sidecar (on).
    tf32: bool | None = None
    version_compatible: bool = False  # built with --version-compatible: lean runtimes run it
    exclude_lean_runtime: bool = False  # ... and without the lean runtime inside the plan

    def runtime_needed(self) -> str:
        """Which TensorRT runtime loads this plan (for `info` and for refusing one that can't)."""
        version = self.tensorrt_version
        if not self.version_compatible:
            return f"the full TensorRT {version} (tensorrt package) exactly"
        if self.exclude_lean_runtime:
            return f"TensorRT {version} exactly, lean (tensorrt-lean) or full; the plan carries no runtime"
        major = version.split(".")[0]
        return f"TensorRT {major}.x >= {version}, lean (tensorrt-lean) or full"

    def runtime_problem(self, *, version: str, runtime: str) -> str | None:
        """Why `runtime` ("tensorrt" or "tensorrt_lean") at `version` cannot load this plan."""
        built = _version_tuple(self.tensorrt_version)
        here = _version_tuple(version)
        if not self.version_compatible and runtime != "tensorrt":
            return (f"it was built without --version-compatible, which the lean runtime "
                    f"({runtime} {version}) needs")
        if self.version_compatible and not self.exclude_lean_runtime:
            if here[:1] == built[:1] and here >= built:
                return None
            return (f"it was built by TensorRT {self.tensorrt_version} (version-compatible), this "
                    f"is TensorRT {version}; it loads in {self.runtime_needed()}")
        if here != built:
            return (f"it was built by TensorRT {self.tensorrt_version}, this is TensorRT {version}; "
                    "plans only load in the version that built them")
        return None

    def to_json(self) -> str:
        data = asdict(self)
        data["meta"] = json.loads(self.meta.to_json())
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str, *, source: str) -> EngineSidecar:
        try:
            data = json.loads(text)
            if int(data.get("schema", 0)) > SIDECAR_SCHEMA:
                raise ModelFileError(f"{source} was written by a newer ocr-deploy; upgrade it")
            data["meta"] = ModelMeta.from_json(json.dumps(data["meta"]), source=source)
            profile = data["profile"]
            data["profile"] = ProfileShapes(profile["input"], *(tuple(profile[k]) for k in
                                                                ("min", "opt", "max")))
            data["compute_capability"] = tuple(data["compute_capability"])
            return cls(**data)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelFileError(f"{source} is not a valid engine sidecar ({error}); rebuild the "
                                 "engine with `ocr-deploy build MODEL.onnx`") from None

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) lines describing the engine, for `info` and `build`."""
        major, minor = self.compute_capability
        tf32 = {None: "", True: ", TF32 allowed", False: ", TF32 off"}[self.tf32]
        return [("engine", f"{self.precision}, {self.typing} typing{tf32}, TensorRT "
                           f"{self.tensorrt_version}, {self.gpu_name} (sm_{major}{minor})"),
                ("runtime", f"needs {self.runtime_needed()}"),
                ("profile", f"{self.profile.input}: {self.profile.min} .. {self.profile.max}"),
                ("built from", f"{self.onnx_path} (sha256 {self.onnx_sha256[:16]}...)")]

    def rebuild_hint(self) -> str:
        return f"rebuild it here: ocr-deploy build {self.onnx_path}"


def read_sidecar(plan: Path) -> EngineSidecar:
    path = sidecar_path(plan)
    if not plan.is_file():
        raise ModelFileError(f"engine not found: {plan}")
    if not path.is_file():
        raise ModelFileError(f"{plan} has no sidecar {path.name} (ocr-deploy keeps the model's "
                             "metadata there); build engines with `ocr-deploy build MODEL.onnx`")
    return EngineSidecar.from_json(path.read_text(encoding="utf-8"), source=str(path))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def check_compatible(sidecar: EngineSidecar, *, plan: Path, tensorrt_version: str, gpu_name: str,
                     compute_capability: tuple[int, int], runtime: str = "tensorrt") -> None:
    """Raise ModelFileError, with how to rebuild, when this plan cannot be trusted here.
    `runtime`: the TensorRT Python module that would load it (tensorrt or tensorrt_lean)."""
    hint = sidecar.rebuild_hint()
    if sha256_of(plan) != sidecar.plan_sha256:
        raise ModelFileError(f"{plan.name} does not match its sidecar (the plan was replaced or "
                             f"damaged); {hint}")
    problem = sidecar.runtime_problem(version=tensorrt_version, runtime=runtime)
    if problem:
        raise ModelFileError(f"{plan.name} cannot load here: {problem}: {hint}")
    if (sidecar.gpu_name, tuple(sidecar.compute_capability)) != (gpu_name, tuple(compute_capability)):
        built = f"{sidecar.gpu_name} (sm_{sidecar.compute_capability[0]}{sidecar.compute_capability[1]})"
        here = f"{gpu_name} (sm_{compute_capability[0]}{compute_capability[1]})"
        raise ModelFileError(f"{plan.name} was built for {built}, this GPU is {here}; {hint}")
    onnx = Path(sidecar.onnx_path)
    if onnx.is_file() and sha256_of(onnx) != sidecar.onnx_sha256:
        raise ModelFileError(f"{onnx} has changed since {plan.name} was built from it; {hint}")
