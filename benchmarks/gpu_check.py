"""One-command check of the whole TensorRT path, on a machine with an NVIDIA GPU and TensorRT.

    python -m benchmarks.gpu_check [--variant w48] [--shape 1024x2048] [--frames 4] [--iters 50]

1. A W48 HRNet-OCR checkpoint with random, BatchNorm-calibrated weights (release layout).
2. Exported to a verified FP32 ONNX at a static 1024x2048 input.
3. Built into an FP16 TensorRT engine (mixed-precision graph, FP32 OCR islands).
4. The engine runs through Segmenter; its labels are compared with ONNX Runtime FP32.
5. Latency p50/p95 of the engine (inference only, and end to end through Segmenter) and its size.
Exits non-zero, with the reason, where TensorRT or a GPU is missing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="w48")
    parser.add_argument("--shape", default="1024x2048")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()

    from ocr_deploy.backends.nvidia import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        print(f"cannot run the GPU check: {reason}", file=sys.stderr)
        return 1
    from exporters.export_job import ExportRequest, run_export
    from exporters.synthetic import save_release, synthetic_model
    from exporters.tensorrt_build import BuildRequest, build_engine
    from exporters.variants import OcrConfig
    from ocr_deploy.preprocess import graph_input, parse_size
    from ocr_deploy.segmenter import Segmenter
    from ocr_deploy.testframes import synthetic_frame

    height, width = parse_size(args.shape)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        model = synthetic_model(OcrConfig.from_variant(args.variant, num_classes=19))
        checkpoint = save_release(model, work / f"{args.variant}.pth")
        started = time.perf_counter()
        exported = run_export(ExportRequest(weights=checkpoint, output=work / "fp32.onnx",
                                            height=height, width=width, batch=1))
        print(f"export: {exported.file_bytes / 1e6:.1f} MB FP32 ONNX in {time.perf_counter() - started:.1f} s;"
              f" worst check: {min(exported.verification.checks, key=lambda c: c.agreement).describe()}")
        built = build_engine(BuildRequest(onnx=exported.output, output=work / "fp16.engine", shape=(height, width)),
                             log=print)
        print(f"engine: {built.plan_bytes / 1e6:.1f} MB, {built.sidecar.precision}, "
              f"{built.sidecar.typing} typing, built in {built.seconds:.1f} s; " + "; ".join(built.notes))
        engine = Segmenter.open(built.plan)
        reference = Segmenter.open(exported.output, device="cpu")
        frames = [synthetic_frame(height, width, seed=index) for index in range(args.frames)]
        agreements = [float((engine.segment(f).labels == reference.segment(f).labels).mean())
                      for f in frames]
        print(f"FP16 engine vs ONNX Runtime FP32: labels agree {100 * np.mean(agreements):.3f} % "
              f"(worst frame {100 * min(agreements):.3f} %) over {len(frames)} frames")
        feed = graph_input(frames[0][None], engine.meta.input)
        for _ in range(5):
            engine.backend.run(feed)
        infer_ms, total_ms = [], []
        for _ in range(args.iters):
            start = time.perf_counter()
            engine.backend.run(feed)
            infer_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            engine.segment(frames[0])
            total_ms.append((time.perf_counter() - start) * 1000)
        print(f"latency {height}x{width} ({engine.describe()}): inference p50 "
              f"{np.percentile(infer_ms, 50):.2f} ms, p95 {np.percentile(infer_ms, 95):.2f} ms; "
              f"Segmenter.segment p50 {np.percentile(total_ms, 50):.2f} ms, "
              f"p95 {np.percentile(total_ms, 95):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
