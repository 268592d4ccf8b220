"""Measure what the FP32 islands buy: FP16 vs FP32 label agreement and region-feature drift.

    python -m benchmarks.fp16_islands MODEL.onnx [--height 1024 --width 2048] [--scenes 4]

Runs on ONNX Runtime's CPU provider, which stores FP16 tensors but keeps FP16 subnormals. GPUs
usually flush FP16 subnormals to zero, and the gather softmax over H*W/16 pixels produces mostly
subnormal weights at full resolution, so a third variant emulates that flush (values below
FP16's smallest normal, 6.1e-5, set to zero after each softmax). Frames: held-out generated
street scenes (training.scenes) rendered at the given size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from exporters.fp16 import precision_breakdown, to_mixed_fp16
from exporters.graph_compare import with_logits_output
from exporters.onnx_files import LOGITS, load_model

FP16_SMALLEST_NORMAL = 6.103515625e-05


def flush_softmax_subnormals(model: onnx.ModelProto) -> onnx.ModelProto:
    """After every Softmax: x < 6.1e-5 -> 0, as a flush-to-zero FP16 unit would store it."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    nodes = []
    for node in work.graph.node:
        nodes.append(node)
        if node.op_type != "Softmax":
            continue
        raw = node.output[0] + "_unflushed"
        final = node.output[0]
        node.output[0] = raw
        threshold = helper.make_tensor(raw + "_min", TensorProto.FLOAT16, [], [FP16_SMALLEST_NORMAL])
        zero = helper.make_tensor(raw + "_zero", TensorProto.FLOAT16, [], [0.0])
        work.graph.initializer.extend([threshold, zero])
        nodes += [helper.make_node("Less", [raw, threshold.name], [raw + "_tiny"]),
                  helper.make_node("Where", [raw + "_tiny", zero.name, raw], [final])]
    del work.graph.node[:]
    work.graph.node.extend(nodes)
    return work


def gather_output(model: onnx.ModelProto) -> str:
    """The MatMul that consumes the gather softmax (the object region representations)."""
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    return next(n for n in model.graph.node if n.op_type == "MatMul" and softmax.output[0] in n.input).output[0]


def run(model: onnx.ModelProto, names: list[str], image: np.ndarray) -> list[np.ndarray]:
    from ocr_deploy.backends.onnxrt import cpu_session

    inferred = onnx.shape_inference.infer_shapes(with_logits_output(model))
    infos = {v.name: v for v in inferred.graph.value_info}
    for name in names:
        if name not in {o.name for o in inferred.graph.output}:
            inferred.graph.output.append(infos[name])
    session = cpu_session(inferred.SerializeToString())
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": image[None]}), strict=True))
    return [outputs[name].astype(np.float32) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--scenes", type=int, default=4)
    args = parser.parse_args()
    from training.scenes import render_scene

    fp32, meta = load_model(args.model)
    regions = gather_output(fp32)
    variants = {"fp16 with FP32 islands": to_mixed_fp16(fp32),
                "fp16 without islands": to_mixed_fp16(fp32, fp32_islands=False)}
    variants["fp16 without islands, FTZ emulated"] = flush_softmax_subnormals(
        variants["fp16 without islands"])
    for name, model in variants.items():
        print(f"{name}: {precision_breakdown(model).describe()}")
    print(f"{meta.network.variant}, {args.scenes} held-out scenes at {args.height}x{args.width} "
          f"(gather softmax over {(args.height // 4) * (args.width // 4)} pixels)")
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    for seed in range(args.scenes):
        image, _ = render_scene(seed, height=args.height, width=args.width)
        reference_regions, reference_logits = run(fp32, [regions, LOGITS], image)
        labels = reference_logits.argmax(1)
        for name, model in variants.items():
            got_regions, got_logits = run(model, [regions, LOGITS], image)
            drift = np.abs(got_regions - reference_regions).max() / np.abs(reference_regions).max()
            results[name].append((float((got_logits.argmax(1) == labels).mean()),
                                  float(np.abs(got_logits - reference_logits).max()), float(drift)))
    for name, rows in results.items():
        agreement, delta, drift = (np.array(column) for column in zip(*rows, strict=True))
        print(f"  {name:<36} labels agree {100 * agreement.mean():.3f} % (worst "
              f"{100 * agreement.min():.3f} %), max |dlogits| {delta.max():.3f}, region "
              f"features max rel. error {100 * drift.max():.2f} %")


if __name__ == "__main__":
    main()
