"""Benchmark: how close `ocr-deploy infer` on a video gets to what the model alone can do.

    python -m benchmarks.video_throughput MODEL.onnx [--frames 300] [--height 512 --width 1024]

1. Writes a synthetic video (street-like frames with motion) of the given size.
2. Model-only FPS: the same Segmenter's backend runs on the decoded, prepared frames, one
   after another, nothing else running.
3. End-to-end FPS: the same Segmenter runs the full pipeline on the video file (decode,
   pre, infer, post, overlay video and CSV written), exactly as `ocr-deploy infer` does.
4. Pre + post milliseconds on a 1024x2048 frame (prepare, restore labels, class fractions,
   colour and overlay), from a precomputed network output.
Prints the figures; asserts nothing (speed targets are reported, not tested).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ocr_deploy.pipeline import run_pipeline
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.sinks import make_outputs
from ocr_deploy.sources import open_source
from ocr_deploy.testframes import synthetic_frame


def write_video(path: Path, frames: int, height: int, width: int, fps: float = 30.0) -> None:
    """A panning street-like scene: one wide frame viewed through a moving window."""
    panorama = synthetic_frame(height, width * 2, seed=7)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for index in range(frames):
        offset = int((index / max(1, frames - 1)) * width)
        writer.write(np.ascontiguousarray(panorama[:, offset:offset + width]))
    writer.release()


def model_only_fps(segmenter: Segmenter, video: Path) -> tuple[float, float]:
    source = open_source(str(video))
    prepared = [segmenter.prepare(frame) for frame in source.frames()]
    source.close()
    from ocr_deploy.preprocess import graph_input

    inputs = [graph_input(item.image[None], segmenter.meta.input) for item in prepared]
    segmenter.backend.run(inputs[0])  # warm-up
    start = time.perf_counter()
    for batch in inputs:
        segmenter.backend.run(batch)
    seconds = time.perf_counter() - start
    return len(inputs) / seconds, seconds


def end_to_end_fps(segmenter: Segmenter, video: Path, out: Path) -> tuple[float, list[str]]:
    source = open_source(str(video))
    outputs = make_outputs(out, ("video", "csv"), meta=segmenter.meta, is_video=True,
                           stem=video.stem, fps=source.fps)
    summary = run_pipeline(segmenter, source, outputs, show_progress=False)
    return summary.fps, summary.lines()


def pre_post_ms(segmenter: Segmenter, repeats: int) -> tuple[float, float]:
    frame = synthetic_frame(1024, 2048, seed=3)
    prepared = segmenter.prepare(frame)
    output = segmenter.infer([prepared])[0][1]
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        item = segmenter.prepare(frame)
        segmenter.finish(item, output, 0.0)  # renders colour and overlay too
        samples.append((time.perf_counter() - start) * 1000.0)
    return float(np.mean(samples)), float(np.percentile(samples, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    segmenter = Segmenter.open(args.model, device="cpu", render=("color", "overlay"))
    print(f"model {args.model.name}: {segmenter.meta.network.variant}, K={segmenter.meta.num_classes}"
          f"; {segmenter.describe()}")
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "bench.mp4"
        write_video(video, args.frames, args.height, args.width)
        model_fps, model_seconds = model_only_fps(segmenter, video)
        print(f"model only : {model_fps:.3f} FPS ({args.frames} frames of {args.height}x"
              f"{args.width} in {model_seconds:.1f} s)")
        e2e_fps, lines = end_to_end_fps(segmenter, video, Path(folder))
        print(f"end to end : {e2e_fps:.3f} FPS")
        print("\n".join(lines))
        print(f"ratio      : {e2e_fps / model_fps:.3f} (goal >= 0.9)")
    mean, p95 = pre_post_ms(segmenter, args.repeats)
    print(f"pre + post on 1024x2048: mean {mean:.2f} ms, p95 {p95:.2f} ms (goal <= 10 ms)")


if __name__ == "__main__":
    main()
