"""`ocr-deploy bench`: latency, throughput, per-stage time and peak memory, per backend.

Each configuration runs in its own process (exporters.bench_worker): peak memory is then that
configuration's own, and PyTorch never shares a process with ONNX Runtime or TensorRT.
`--all` covers every backend and precision available here for one model, plus PyTorch eager as
the baseline when torch is installed and the checkpoint is known.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from exporters.artifacts import PYTORCH, artifact_spec, read_artifact_meta
from exporters.checkpoint_files import is_checkpoint
from ocr_deploy.errors import ConfigError, OcrDeployError
from ocr_deploy.fileio import atomic_write_bytes

DEFAULT_SHAPE = (512, 1024)
_WORKER_TIMEOUT_S = 3600


@dataclass(frozen=True, kw_only=True)
class BenchRequest:
    model: Path
    backend: str | None = None
    device: str = "auto"
    shape: tuple[int, int] | None = None
    batch: int = 1
    iters: int = 50
    warmup: int = 5
    all_backends: bool = False
    threads: int | None = None


@dataclass
class BenchReport:
    results: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        header = (f"{'backend':<12}{'prec':<6}{'mean':>9}{'p50':>9}{'p95':>9}{'p99':>9}{'FPS':>8}"
                  f"{'pre':>7}{'infer':>9}{'post':>7}{'peak MB':>9}")
        lines = [header, "-" * len(header)]
        for r in self.results:
            stage = r["stage_ms"]
            lines.append(f"{r['kind']:<12}{r['precision']:<6}{r['mean_ms']:>9.1f}{r['p50_ms']:>9.1f}"
                         f"{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['fps']:>8.2f}{stage['pre']:>7.1f}"
                         f"{stage['infer']:>9.1f}{stage['post']:>7.1f}{r['peak_rss_mb']:>9.0f}")
        if self.results:
            first = self.results[0]
            lines.append(f"(ms per batch of {first['batch']} at {first['shape'][0]}x"
                         f"{first['shape'][1]}, {first['iters']} iterations)")
        lines += [f"  {r['kind']}: {r['backend']}" for r in self.results]
        lines += [f"  skipped {note}" for note in self.skipped]
        return lines

    def to_json(self) -> str:
        return json.dumps({"results": self.results, "skipped": self.skipped}, indent=1)

    def plot(self, path: Path) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise OcrDeployError("--plot needs matplotlib: pip install matplotlib") from None
        figure, axes = plt.subplots(figsize=(8, 4))
        axes.boxplot([r["latencies_ms"] for r in self.results], showfliers=True)
        axes.set_xticks(range(1, len(self.results) + 1),
                        [f"{r['kind']}\n{r['precision']}" for r in self.results])
        axes.set_ylabel("latency per batch (ms)")
        axes.set_title(f"{self.results[0]['shape'][0]}x{self.results[0]['shape'][1]}, batch "
                       f"{self.results[0]['batch']}")
        figure.tight_layout()
        with tempfile.NamedTemporaryFile(suffix=".png") as temporary:
            figure.savefig(temporary.name, dpi=110)
            atomic_write_bytes(path, Path(temporary.name).read_bytes())
        plt.close(figure)


def _jobs(request: BenchRequest, work: Path,
          log: Callable[[str], None]) -> tuple[list[dict], list[str]]:
    from exporters.model_cache import resolve_model

    model = request.model
    if not model.is_file():
        raise ConfigError(f"model not found: {model}")
    skipped: list[str] = []
    onnx = resolve_model(model, log=log) if is_checkpoint(model) else model
    base = {"device": request.device, "batch": request.batch, "iters": request.iters,
            "warmup": request.warmup, "threads": request.threads}
    if not request.all_backends:
        kind = artifact_spec(model, request.backend).name
        path = model if kind == PYTORCH.name else onnx
        precision, fixed = _artifact(onnx)  # a checkpoint's metadata: that of its export
        shape = list(fixed or request.shape or DEFAULT_SHAPE)
        return [{**base, "kind": kind, "model": str(path), "precision": precision,
                 "shape": shape}], skipped
    precision, fixed = _artifact(onnx)
    if onnx.suffix.lower() != ".onnx" or precision != "fp32":
        raise ConfigError("--all derives every backend and precision from one model: pass the "
                          "checkpoint or its FP32 .onnx")
    # A fixed-size model is measured at its own size; a dynamic one at --size (512x1024).
    shape = fixed or request.shape or DEFAULT_SHAPE
    base["shape"] = list(shape)
    jobs = [{**base, "kind": "onnxruntime", "model": str(onnx), "precision": "fp32"}]
    fp16 = work / "model_fp16.onnx"
    _write_fp16(onnx, fp16)
    jobs.append({**base, "kind": "onnxruntime", "model": str(fp16), "precision": "fp16"})
    jobs += _built_jobs(onnx, base, work, shape, skipped, log)
    reason = PYTORCH.unavailable_reason() or (None if is_checkpoint(model) else
                                              "needs the checkpoint (pass the .pth instead of "
                                              "the .onnx)")
    if reason:
        skipped.append(f"{PYTORCH.name}: {reason}")
    else:
        jobs.append({**base, "kind": "pytorch", "model": str(model), "precision": "fp32"})
    return jobs, skipped


def _artifact(path: Path) -> tuple[str, tuple[int, int] | None]:
    """(precision, fixed input size) of an artifact; its metadata read once."""
    meta = read_artifact_meta(path)
    return meta.provenance.precision, meta.input.fixed_size


def _write_fp16(onnx_path: Path, output: Path) -> None:
    import onnx

    from exporters.fp16 import to_mixed_fp16

    output.write_bytes(to_mixed_fp16(onnx.load(str(onnx_path))).SerializeToString())


def _built_jobs(onnx: Path, base: dict, work: Path, shape: tuple[int, int],
                skipped: list[str], log: Callable[[str], None]) -> list[dict]:
    """Every precision of every backend with a build step (exporters.builds) that runs here."""
    from exporters.builds import BUILDERS, BuildOptions
    from ocr_deploy.backends import BACKENDS

    jobs = []
    for row in BUILDERS:
        reason = BACKENDS[row.backend].unavailable_reason()
        if reason:
            skipped.append(f"{row.backend}: {reason}")
            continue
        for precision in row.precisions:
            options = BuildOptions(model=onnx, output=work / f"{row.backend}_{precision}{row.suffix}",
                                   precision=precision, shape=shape if row.static_shape else None,
                                   batch=base["batch"] if row.static_shape else None)
            try:
                built = row.build(options, log)
            except OcrDeployError as error:
                skipped.append(f"{row.backend} {precision}: {error}")
                continue
            jobs.append({**base, "kind": row.backend, "model": str(built.path),
                         "precision": str(precision)})
    return jobs


def run_bench(request: BenchRequest, *, log: Callable[[str], None] = lambda _: None) -> BenchReport:
    if request.batch < 1 or request.iters < 1 or request.warmup < 0:
        raise ConfigError("--batch and --iters must be at least 1, --warmup at least 0")
    report = BenchReport()
    with tempfile.TemporaryDirectory() as folder:
        jobs, report.skipped = _jobs(request, Path(folder), log)
        for job in jobs:
            log(f"measuring {job['kind']} {job['precision']} ({job['iters']} iterations)")
            done = subprocess.run([sys.executable, "-m", "exporters.bench_worker", json.dumps(job)],
                                  capture_output=True, text=True, timeout=_WORKER_TIMEOUT_S)
            lines = done.stdout.strip().splitlines()
            result = json.loads(lines[-1]) if lines else {"error": done.stderr.strip()[-300:]}
            if "error" in result:
                report.skipped.append(f"{job['kind']} {job['precision']}: {result['error']}")
            else:
                report.results.append(result)
    if not report.results:
        raise OcrDeployError("no configuration could be measured: " + "; ".join(report.skipped))
    return report
