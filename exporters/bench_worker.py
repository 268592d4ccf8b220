"""One benchmark measurement in a process of its own (clean peak memory, no cross-talk).

    python -m exporters.bench_worker '{"kind": "onnxruntime", "model": "m.onnx", ...}'
Prints one JSON line with the results.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from ocr_deploy.segmenter import Segmenter
from ocr_deploy.testframes import synthetic_frame


def _peak_rss_mb() -> float:
    """This process's own peak resident memory. VmHWM belongs to the address space made at exec;
    ru_maxrss would also carry the parent's peak across fork+exec on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _segmenter(kind: str, model: Path, device: str, threads: int | None) -> Segmenter:
    from exporters.artifacts import open_artifact

    return Segmenter(open_artifact(model, backend=kind, device=device, threads=threads))


def measure(job: dict) -> dict:
    segmenter = _segmenter(job["kind"], Path(job["model"]), job["device"], job.get("threads"))
    with segmenter:
        return _measure(segmenter, job, tuple(job["shape"]))


def _measure(segmenter: Segmenter, job: dict, size: tuple[int, int]) -> dict:
    description = segmenter.describe()
    frames = [synthetic_frame(*size, seed=index) for index in range(job["batch"])]
    stages: dict[str, list[float]] = {"pre": [], "infer": [], "post": []}
    latencies = []
    for iteration in range(job["warmup"] + job["iters"]):
        start = time.perf_counter()
        prepared = [segmenter.prepare(frame) for frame in frames]
        inferred = segmenter.infer(prepared)
        results = [segmenter.finish(*step) for step in inferred]
        elapsed = (time.perf_counter() - start) * 1000.0
        if iteration >= job["warmup"]:
            latencies.append(elapsed)
            for stage in stages:
                stages[stage].append(sum(r.timings[stage] for r in results))
    values = np.array(latencies)
    return {"kind": job["kind"], "precision": job["precision"], "backend": description,
            "batch": job["batch"], "shape": list(size), "iters": job["iters"],
            "mean_ms": float(values.mean()), "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)), "p99_ms": float(np.percentile(values, 99)),
            "fps": float(job["batch"] * 1000.0 / values.mean()),
            "stage_ms": {stage: float(np.mean(v)) for stage, v in stages.items()},
            "peak_rss_mb": _peak_rss_mb(), "latencies_ms": [float(v) for v in values]}


def main() -> None:
    try:
        print(json.dumps(measure(json.loads(sys.argv[1]))))
    except Exception as error:  # reported by the parent as this configuration's failure
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))


if __name__ == "__main__":
    main()
