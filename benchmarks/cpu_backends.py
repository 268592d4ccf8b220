"""CPU speed of every backend and precision, in one run: ONNX Runtime FP32, OpenVINO f32, bf16
and int8, PyTorch eager; ms per frame and the ratio to ONNX Runtime FP32.

    python -m benchmarks.cpu_backends --variant w48 --sizes 512x1024,1024x2048 --iters 5

The demo model is the trained one; any other variant gets random weights with calibrated
BatchNorm (exporters.synthetic), which is fine for speed but means nothing for agreement, so its
bf16/int8 builds are made without the agreement gate. Each measurement runs in a process of its
own (exporters.bench_worker), as `ocr-deploy bench` does.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from exporters.bench import BenchRequest, run_bench
from exporters.builds import BuildOptions, run_build
from ocr_deploy.preprocess import parse_size
from ocr_deploy.vocabulary import Precision


def _checkpoint(variant: str, folder: Path) -> Path:
    if variant == "demo":
        from ocr_deploy.assets import demo_checkpoint

        return demo_checkpoint()
    from exporters.synthetic import save_release, synthetic_model
    from exporters.variants import OcrConfig

    config = OcrConfig.from_variant(variant, num_classes=19)
    return save_release(synthetic_model(config, seed=0), folder / f"{variant}_random.pth")


def _artifacts(checkpoint: Path, folder: Path, *, gated: bool) -> list[tuple[str, str, Path]]:
    """(backend, precision, file) for every configuration measured."""
    from exporters.export_job import ExportRequest, run_export

    onnx = run_export(ExportRequest(weights=checkpoint, output=folder / "model.onnx",
                                    dataset="cityscapes"), log=print).output
    rows = [("onnxruntime", "fp32", onnx), ("openvino", "f32 (onnx)", onnx)]
    for precision in (Precision.bf16, Precision.int8):
        built = run_build(BuildOptions(model=onnx, output=folder / f"model_{precision}.xml",
                                       precision=precision,
                                       min_agreement=None if gated else 0.0),
                          backend="openvino", log=print)
        print(f"built {built.path}: " + "; ".join(f"{k} {v}" for k, v in built.rows))
        rows.append(("openvino", str(precision), built.path))
    return rows + [("pytorch", "fp32", checkpoint)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="demo", help="demo, or an HRNet-OCR variant (w48)")
    parser.add_argument("--sizes", default="512x1024")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    sizes = [parse_size(text, "--sizes") for text in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        artifacts = _artifacts(_checkpoint(args.variant, folder), folder,
                               gated=args.variant == "demo")
        for height, width in sizes:
            rows = []
            for backend, precision, path in artifacts:
                report = run_bench(BenchRequest(model=path, backend=backend, shape=(height, width),
                                                iters=args.iters, warmup=args.warmup))
                rows.append((backend, precision, report.results[0]["p50_ms"]))
            reference = rows[0][2]
            print(f"\n{args.variant} at {height}x{width}, p50 ms per frame, {args.iters} iterations")
            for backend, precision, ms in rows:
                print(f"  {backend:<12}{precision:<12}{ms:>10.1f}   {reference / ms:5.2f}x ORT FP32")


if __name__ == "__main__":
    main()
