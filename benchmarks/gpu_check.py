"""One-command check of the whole GPU path, on a machine with an NVIDIA GPU and TensorRT.

    python -m benchmarks.gpu_check [--models demo,w48] [--runners tensorrt,ort-trt]
                                   [--profiles static,dynamic] [--precisions fp32,fp16] [--iters 30]

Models: the shipped, trained demo model (256x512; its label agreement with ONNX Runtime FP32 on
the CPU is a gate: FP32 engines >= 99.9 %, FP16 >= 99.5 %) and W48 HRNet-OCR with random weights
(1024x2048; speed only, its agreement is printed but random weights prove nothing). Each is run
with a static and a dynamic profile, as FP32 and FP16 engines, through ocr-deploy's TensorRT
backend and through ONNX Runtime's TensorRT provider. The dynamic cases are checked at two sizes
of their range. One table: agreement, p50/p95 ms, engine size, build time. Exit 1 when a gate
fails or a case errors; exit 2 when TensorRT or a GPU is missing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Size = tuple[int, int]
RUNNERS = ("tensorrt", "ort-trt")
PROFILES = ("static", "dynamic")
PRECISIONS = ("fp32", "fp16")
GATES = {"fp32": 0.999, "fp16": 0.995}  # least label agreement with ORT CPU FP32 (gated models)


@dataclass(frozen=True)
class ModelCase:
    """A model under test: its size, its dynamic range, and whether its agreement is a gate."""

    name: str
    size: Size  # static profile, and the dynamic profile's opt
    min_size: Size
    max_size: Size
    gated: bool


MODELS = {
    "demo": ModelCase("demo", (256, 512), (128, 256), (512, 1024), gated=True),
    "w48": ModelCase("w48", (1024, 2048), (512, 1024), (1024, 2048), gated=False),
}


@dataclass(frozen=True)
class Case:
    model: ModelCase
    runner: str  # tensorrt (ocr-deploy's backend) or ort-trt (ONNX Runtime's TensorRT provider)
    profile: str
    precision: str

    @property
    def gate(self) -> float | None:
        return GATES[self.precision] if self.model.gated else None

    def check_sizes(self) -> list[Size]:
        """Where agreement is measured: the static size, or two sizes of the dynamic range."""
        if self.profile == "static":
            return [self.model.size]
        return [self.model.size, self.model.min_size]

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.runner} {self.profile} {self.precision}"


@dataclass
class Row:
    case: Case
    agreement: float | None = None  # worst over frames and sizes
    p50_ms: float | None = None
    p95_ms: float | None = None
    engine_bytes: int | None = None
    build_s: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def verdict(self) -> str:
        if self.error:
            return "ERROR"
        gate = self.case.gate
        if gate is None or self.agreement is None:
            return "speed only"
        return "pass" if self.agreement >= gate else f"FAIL (< {100 * gate:.1f} %)"


def plan_cases(models: Sequence[str], runners: Sequence[str], profiles: Sequence[str],
               precisions: Sequence[str]) -> list[Case]:
    for name, choices, known in (("--models", models, MODELS), ("--runners", runners, RUNNERS),
                                 ("--profiles", profiles, PROFILES),
                                 ("--precisions", precisions, PRECISIONS)):
        unknown = [choice for choice in choices if choice not in known]
        if unknown or not choices:
            raise SystemExit(f"{name}: choose from {', '.join(known)} (got {', '.join(choices)})")
    return [Case(MODELS[model], runner, profile, precision) for model in models
            for profile in profiles for precision in precisions for runner in runners]


def percentiles(samples_ms: Sequence[float]) -> tuple[float, float]:
    return float(np.percentile(samples_ms, 50)), float(np.percentile(samples_ms, 95))


def format_table(rows: Sequence[Row]) -> list[str]:
    header = ("case", "agreement", "p50 ms", "p95 ms", "engine MB", "build s", "verdict")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        def number(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
            return "-" if value is None else f"{value * scale:.{digits}f}"

        agreement = "-" if row.agreement is None else f"{100 * row.agreement:.3f} %"
        verdict = row.verdict() + (f": {row.error}" if row.error else "")
        lines.append((row.case.label, agreement, number(row.p50_ms), number(row.p95_ms),
                      number(row.engine_bytes, 1e-6, 1), number(row.build_s, digits=1), verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
            + "  " + line[-1] for line in lines]


def failures(rows: Sequence[Row]) -> list[str]:
    return [f"{row.case.label}: {row.verdict()}" for row in rows
            if row.error or row.verdict().startswith("FAIL")]


def timed_runs(run: Callable[[], Any], *, iters: int, warmup: int = 5) -> tuple[float, float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


def _layout(size: Size, batch: int = 1) -> tuple[int, int, int, int]:
    return (batch, size[0], size[1], 3)  # raw-frame exports: NHWC uint8


def _frames(case: ModelCase, size: Size, count: int) -> np.ndarray:
    """The demo video's held-out street frames for the demo model, synthetic scenes for W48."""
    import cv2

    from ocr_deploy.testframes import synthetic_frame

    frames: list[np.ndarray] = []
    if case.name == "demo":
        from ocr_deploy.assets import demo_video

        capture = cv2.VideoCapture(str(demo_video()))
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            for _ in range(9):  # a second apart
                capture.grab()
            frames.append(cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA))
        capture.release()
    while len(frames) < count:
        frames.append(synthetic_frame(*size, seed=len(frames)))
    return np.stack(frames)


def _labels(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return outputs["labels"]


def _agreement(run: Callable[[np.ndarray], dict[str, np.ndarray]], reference: Any, case: Case,
               frames_per_size: int) -> float:
    worst = 1.0
    for size in case.check_sizes():
        for frame in _frames(case.model, size, frames_per_size):
            feed = frame[None]
            expected = _labels(reference.run(feed))
            worst = min(worst, float((_labels(run(feed)) == expected).mean()))
    return worst


@dataclass(frozen=True)
class Sources:
    """The ONNX files of one model: FP32, and FP16 (for W48, converted without a gate)."""

    fp32: Path
    fp16: Path | None  # None: build_engine converts and gates the FP32 graph itself


def _prepare(model: ModelCase, work: Path, log: Callable[[str], None]) -> Sources:
    if model.name == "demo":
        import onnx

        from exporters.graph_rewrites import uint8_casts_via_float, uint8_input_feeds_cast_only
        from ocr_deploy.assets import demo_model

        # The shipped file may predate the TensorRT-ready uint8 boundaries: rewritten here too,
        # so that ONNX Runtime's TensorRT provider gets the graph the TensorRT builder gets.
        graph = onnx.load(str(demo_model()))
        uint8_input_feeds_cast_only(graph)
        uint8_casts_via_float(graph)
        onnx.save(graph, str(work / "demo.onnx"))
        return Sources(work / "demo.onnx", None)
    from exporters.export_job import ExportRequest, run_export
    from exporters.fp16_job import ConvertRequest, run_convert
    from exporters.synthetic import save_release, synthetic_model
    from exporters.variants import OcrConfig

    log("W48: random BatchNorm-calibrated weights, dynamic FP32 export, ungated FP16 conversion")
    checkpoint = save_release(synthetic_model(OcrConfig.from_variant("w48", num_classes=19)),
                              work / "w48.pth")
    fp32 = run_export(ExportRequest(weights=checkpoint, output=work / "w48.onnx", verify=False)).output
    fp16 = run_convert(ConvertRequest(model=fp32, output=work / "w48_fp16.onnx", min_agreement=0.0))
    return Sources(fp32, fp16.output)


def _profile_sizes(case: Case) -> dict[str, Any]:
    if case.profile == "static":
        return {"shape": case.model.size}
    return {"min_shape": case.model.min_size, "opt_shape": case.model.size,
            "max_shape": case.model.max_size}


def _run_tensorrt(case: Case, sources: Sources, reference: Any, work: Path, args: Any, row: Row) -> None:
    from exporters.tensorrt_build import BuildRequest, build_engine
    from ocr_deploy.backends.trt import TensorRTBackend
    from ocr_deploy.vocabulary import Precision

    onnx = sources.fp16 if case.precision == "fp16" and sources.fp16 else sources.fp32
    plan = work / f"{case.label.replace(' ', '_')}.engine"
    built = build_engine(BuildRequest(onnx=onnx, output=plan, precision=Precision(case.precision),
                                      opt_level=args.opt_level, timing_cache=work / "timing.cache",
                                      **_profile_sizes(case)))
    row.engine_bytes, row.build_s = built.plan_bytes, built.seconds
    row.notes += list(built.notes)
    backend = TensorRTBackend(plan)
    try:
        row.agreement = _agreement(backend.run, reference, case, args.frames)
        feed = _frames(case.model, case.model.size, 1)
        row.p50_ms, row.p95_ms = timed_runs(lambda: backend.run(feed), iters=args.iters)
    finally:
        backend.close()


def _run_ort_tensorrt(case: Case, sources: Sources, reference: Any, work: Path, args: Any,
                      row: Row) -> None:
    """ONNX Runtime's TensorRT provider with ocr-deploy's provider options; a dynamic case adds
    the provider's explicit profile. Build time: session creation plus the first run."""
    import onnxruntime as ort

    from ocr_deploy.backends.onnxrt import choose_providers
    from ocr_deploy.backends.ort_gpu import TENSORRT, GpuSettings, check_providers_took

    onnx = sources.fp16 if case.precision == "fp16" and sources.fp16 else sources.fp32
    cache = work / f"ort_{case.label.replace(' ', '_')}"
    cache.mkdir()
    settings = GpuSettings(cache_dir=cache, fp16=case.precision == "fp16",
                           model_precision="fp16" if onnx == sources.fp16 else "fp32",
                           static_size=case.profile == "static")
    names = choose_providers("tensorrt", ort.get_available_providers())
    providers = settings.providers(names)
    if case.profile == "dynamic":
        shapes = {key: "image:" + "x".join(map(str, _layout(size))) for key, size in
                  (("trt_profile_min_shapes", case.model.min_size),
                   ("trt_profile_opt_shapes", case.model.size),
                   ("trt_profile_max_shapes", case.model.max_size))}
        providers = [(name, {**options, **shapes}) if name == TENSORRT else (name, options)
                     for name, options in providers]
    started = time.perf_counter()
    session = ort.InferenceSession(str(onnx), providers=providers)
    check_providers_took("tensorrt", names, session.get_providers(), version=ort.__version__)

    def run(feed: np.ndarray) -> dict[str, np.ndarray]:
        return {"labels": np.asarray(session.run(["labels"], {"image": feed})[0])}

    feed = _frames(case.model, case.model.size, 1)
    run(feed)
    row.build_s = time.perf_counter() - started
    row.engine_bytes = sum(path.stat().st_size for path in cache.rglob("*.engine")) or None
    row.agreement = _agreement(run, reference, case, args.frames)
    row.p50_ms, row.p95_ms = timed_runs(lambda: run(feed), iters=args.iters)


RUN = {"tensorrt": _run_tensorrt, "ort-trt": _run_ort_tensorrt}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--models", default="demo,w48")
    parser.add_argument("--runners", default=",".join(RUNNERS))
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--frames", type=int, default=3, help="frames per checked size")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--opt-level", type=int, default=3)
    args = parser.parse_args(argv)
    cases = plan_cases(*(getattr(args, name).split(",") for name in
                         ("models", "runners", "profiles", "precisions")))

    from ocr_deploy.backends.nvidia import cuda_versions, tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        print(f"cannot run the GPU check: {reason}; {cuda_versions().describe()}", file=sys.stderr)
        return 2
    from ocr_deploy.backends.onnxrt import OnnxRuntimeBackend

    def log(line: str) -> None:
        print(f"... {line}", file=sys.stderr, flush=True)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for name in dict.fromkeys(case.model.name for case in cases):
            sources = _prepare(MODELS[name], work, log)
            reference = OnnxRuntimeBackend(sources.fp32, device="cpu")
            for case in (case for case in cases if case.model.name == name):
                log(case.label)
                row = Row(case)
                try:
                    RUN[case.runner](case, sources, reference, work, args, row)
                except Exception as error:  # one case's failure is a row of the table
                    row.error = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
                rows.append(row)
    print(cuda_versions().describe())
    print("\n".join(format_table(rows)))
    for row in rows:
        for note in row.notes:
            print(f"note ({row.case.label}): {note}")
    failed = failures(rows)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
