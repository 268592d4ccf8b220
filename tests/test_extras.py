"""Honest extras: what each extra promises to make usable is covered by what it installs.

A table names, per extra, the entry points it promises (a function or class of a module). From
each, the imports are followed through the source: a module's module-level imports (outside
`if TYPE_CHECKING:`), and the imports inside the functions and classes that are reachable by
name from the entry point, through first-party modules. Every third-party top-level module found
must be provided by a requirement of the extra or of the base install. Installing each extra into
a fresh environment would say the same in minutes; this says it in a second.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import tomllib

from ocr_deploy.backends import nvidia

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"ocr_deploy", "exporters", "cli", "benchmarks", "training"}
TRT_ENTRY = [("exporters.tensorrt_build", "build_from_options"), ("ocr_deploy.backends.trt", "TensorRTBackend")]
LEAN_ENTRY = [("ocr_deploy.backends.trt", "TensorRTBackend")]
# Extra (None: the base install) -> the entry points it promises.
PROMISES: dict[str | None, list[tuple[str, str]]] = {
    None: [("ocr_deploy.segmenter", "Segmenter"), ("ocr_deploy.backends.onnxrt", "OnnxRuntimeBackend"),
           ("ocr_deploy.pipeline", "segment_source")],
    "export": [("exporters.export_job", "run_export"), ("exporters.fp16_job", "run_convert")],
    "tensorrt": TRT_ENTRY, "tensorrt-cu12": TRT_ENTRY, "tensorrt-cu13": TRT_ENTRY,
    "tensorrt-lean-cu12": LEAN_ENTRY, "tensorrt-lean-cu13": LEAN_ENTRY,
    "openvino": [("ocr_deploy.backends.openvino", "OpenVinoBackend")],
    "explain": [("exporters.explain.job", "run_explain")],
    "serve": [("ocr_deploy.serving.server", "serve"), ("ocr_deploy.remote", "RemoteSegmenter")],
    "cluster": [("ocr_deploy.batch.runner", "run_batch")],
}
# Top-level import name -> the distributions that provide it (any one will do).
PROVIDERS = {
    "numpy": {"numpy"}, "cv2": {"opencv-python", "opencv-python-headless"},
    "onnxruntime": {"onnxruntime", "onnxruntime-gpu"}, "typer": {"typer"}, "tqdm": {"tqdm"},
    "onnx": {"onnx"}, "onnxscript": {"onnxscript"}, "onnxslim": {"onnxslim"},
    "onnxconverter_common": {"onnxconverter-common"}, "torch": {"torch"},
    "safetensors": {"safetensors"}, "yaml": {"pyyaml"}, "openvino": {"openvino"}, "nncf": {"nncf"},
    "matplotlib": {"matplotlib"}, "cuda": {"cuda-python", "cuda-bindings"},
    "tensorrt": {"tensorrt", "tensorrt-cu12", "tensorrt-cu13"},
    "tensorrt_lean": {"tensorrt-lean", "tensorrt-lean-cu12", "tensorrt-lean-cu13"},
    "pytriton": {"nvidia-pytriton"}, "tritonclient": {"tritonclient"}, "ray": {"ray"},
    "pyarrow": {"pyarrow"},
}
# Imports made by name at run time, which no AST shows: (module, function) -> any-of groups.
DYNAMIC = {("ocr_deploy.backends.nvidia", "tensorrt"): [("tensorrt",)],
           ("ocr_deploy.backends.nvidia", "tensorrt_runtime"): [nvidia.RUNTIMES]}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def requirements() -> dict[str | None, set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {None: project["dependencies"], **project["optional-dependencies"]}

    def expand(reqs: list[str]) -> set[str]:  # "ocr-deploy[export]" stands for that extra's list
        found: set[str] = set()
        for req in reqs:
            own = re.fullmatch(r"ocr-deploy\[([a-z0-9,-]+)\]", req)
            if own:
                found |= set().union(*(expand(names[extra]) for extra in own.group(1).split(",")))
            else:
                found.add(_normalise(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req).group()))
        return found

    return {extra: expand(reqs) for extra, reqs in names.items()}


@dataclass
class Unit:
    """A module-level function or class: the imports inside it and the names it refers to."""

    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias -> (module, attr)
    names: set[str] = field(default_factory=set)
    attributes: set[tuple[str, str]] = field(default_factory=set)  # (alias, attr)


@dataclass
class Module:
    imports: dict[str, tuple[str, str | None]]  # module-level, outside TYPE_CHECKING
    units: dict[str, Unit]
    top: Unit  # module-level statements other than definitions


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _scan(nodes: list[ast.stmt], unit: Unit) -> None:
    for node in nodes:
        for child in ast.walk(node):
            if _is_type_checking(child):
                child.body = []  # noqa: B909 - drop what only the type checker imports
    for node in nodes:
        for child in ast.walk(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    unit.imports[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0], None)
            elif isinstance(child, ast.ImportFrom) and child.module:
                for alias in child.names:
                    unit.imports[alias.asname or alias.name] = (child.module, alias.name)
            elif isinstance(child, ast.Name):
                unit.names.add(child.id)
            elif isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
                unit.attributes.add((child.value.id, child.attr))


@cache
def parse(module: str) -> Module | None:
    base = REPO / module.replace(".", "/")
    path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    if not path.is_file():
        return None
    tree = ast.parse(path.read_text())
    units, top = {}, Unit()
    statements = [node for node in tree.body if not _is_type_checking(node)]
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            units[node.name] = Unit()
            _scan([node], units[node.name])
        else:
            _scan([node], top)
    return Module(dict(top.imports), units, top)


def needs(entries: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    """Third-party needs as any-of groups of top-level module names."""
    found: set[tuple[str, ...]] = set()
    seen_modules: set[str] = set()
    seen_units: set[tuple[str, str]] = set()

    def target(module: str, imports: dict, alias: str, attr: str | None = None) -> None:
        source, name = imports[alias]
        root = source.split(".")[0]
        if root not in FIRST_PARTY:
            if root not in sys.stdlib_module_names:
                found.add((root,))
            return
        if name is None:  # `import package.module [as alias]`: alias.attr
            reach_module(source)
            if attr is not None:
                reach_unit(source, attr)
        elif parse(f"{source}.{name}") is not None:  # a submodule
            reach_module(f"{source}.{name}")
            if attr is not None:
                reach_unit(f"{source}.{name}", attr)
        else:
            reach_module(source)
            reach_unit(source, name)

    def follow(module: str, unit: Unit, scope: dict) -> None:
        for alias in unit.imports:
            target(module, scope, alias)
        parsed = parse(module)
        for name in unit.names:
            if name in parsed.units:
                reach_unit(module, name)
            elif name in scope:
                target(module, scope, name)
        for alias, attr in unit.attributes:
            if alias in scope and scope[alias][1] is None:
                target(module, scope, alias, attr)

    def reach_module(module: str) -> None:
        if module in seen_modules or parse(module) is None:
            return
        seen_modules.add(module)
        parsed = parse(module)
        follow(module, parsed.top, parsed.imports)

    def reach_unit(module: str, name: str) -> None:
        parsed = parse(module)
        if (module, name) in seen_units or parsed is None or name not in parsed.units:
            return
        seen_units.add((module, name))
        found.update(DYNAMIC.get((module, name), []))
        unit = parsed.units[name]
        follow(module, unit, {**parsed.imports, **unit.imports})

    for module, name in entries:
        assert parse(module) is not None and name in parse(module).units, f"{module}.{name} is gone"
        reach_module(module)
        reach_unit(module, name)
    return sorted(found)


def uncovered(extra: str | None, entries: list[tuple[str, str]], installed: set[str]) -> list[str]:
    missing = []
    for group in needs(entries):
        unknown = [name for name in group if name not in PROVIDERS]
        assert not unknown, f"add {unknown} to PROVIDERS (which distribution provides it?)"
        if not any(PROVIDERS[name] & installed for name in group):
            missing.append(" or ".join(group))
    return missing


@pytest.mark.parametrize("extra", list(PROMISES), ids=str)
def test_every_extra_installs_what_it_promises(extra):
    installed = requirements()[None] | (requirements()[extra] if extra else set())
    assert uncovered(extra, PROMISES[extra], installed) == [], (
        f"[{extra}] promises {PROMISES[extra]} but installs nothing that provides these")


def test_the_old_tensorrt_extra_is_caught():
    """Before this test, [tensorrt] was tensorrt + cuda-python: `build` could not import onnx and
    FP16 conversion needed onnxconverter-common."""
    old = requirements()[None] | {"tensorrt", "cuda-python"}
    assert uncovered("tensorrt", TRT_ENTRY, old) == ["onnx", "onnxconverter_common"]
    assert uncovered("tensorrt-lean-cu12", LEAN_ENTRY, requirements()[None]) == ["cuda", "tensorrt or tensorrt_lean"]


def test_lean_extras_carry_no_builder_and_cuda_extras_match():
    reqs = requirements()
    for cuda in ("cu12", "cu13"):
        assert {f"tensorrt-{cuda}", "cuda-python"} <= reqs[f"tensorrt-{cuda}"]
        assert reqs[f"tensorrt-lean-{cuda}"] == {f"tensorrt-lean-{cuda}", "cuda-python"}
    assert not {"onnx", "torch"} & (reqs["tensorrt-lean-cu12"] | reqs[None])
