"""`ocr-deploy batch` against `infer` in one process, over the same generated inputs, and the
restart figures: N frames of HxW (written as PNG) plus V short videos, through one model.

    python -m benchmarks.batch_throughput                        # 200 frames 512x1024 + 3 videos
    python -m benchmarks.batch_throughput --frames 40 --video-frames 5 --json figures.json
    python -m benchmarks.batch_throughput --video-frames 100 --skip-restart   # longer videos

Each measurement is wall time around the whole call: for batch that includes starting a local
Ray and one model load per actor, for infer one model load per source (a folder, then each
video), all in this process. batch's own frames/s (from its summary, also counting Ray start-up)
are printed beside. On a shared or busy machine the figures are noisy: rerun on a quiet one,
with --repeat for a median.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from ocr_deploy.assets import demo_model
from ocr_deploy.batch import BatchOptions, WorkerConfig, model_digest, run_batch
from ocr_deploy.pipeline import InferOptions, segment_source
from ocr_deploy.preprocess import parse_size
from ocr_deploy.testframes import synthetic_frame


def make_inputs(folder: Path, *, frames: int, videos: int, video_frames: int,
                size: tuple[int, int]) -> tuple[Path, list[Path]]:
    height, width = size
    images = folder / "frames"
    images.mkdir(parents=True)
    for index in range(frames):
        cv2.imwrite(str(images / f"frame{index:05d}.png"), synthetic_frame(height, width, seed=index))
    clips = []
    for number in range(videos):
        clip = folder / f"drive{number}.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
        for index in range(video_frames):
            writer.write(synthetic_frame(height, width, seed=1000 * (number + 1) + index))
        writer.release()
        clips.append(clip)
    return images, clips


def time_infer(model: Path, sources: list[Path], out: Path, threads: int | None) -> dict:
    """`ocr-deploy infer` over every source, one after the other, in this process."""
    from ocr_deploy.backends import open_backend

    start, frames = time.perf_counter(), 0
    for source in sources:
        summary = segment_source(source, lambda: open_backend(model, threads=threads),
                                 InferOptions(out=out, progress=False))
        frames += summary.frames
    seconds = time.perf_counter() - start
    return {"command": "infer (one process)", "frames": frames, "wall_s": round(seconds, 2),
            "frames_per_s": round(frames / seconds, 3)}


def time_batch(model: Path, inputs: list[Path], out: Path, *, workers: int, cpus: float,
               batch: int, stop_after: int | None = None, address: str | None = None) -> dict:
    config = WorkerConfig(model=str(model), model_sha256=model_digest(model), out=str(out),
                          image_save=("labels", "overlay"), video_save=("video", "csv"),
                          threads=max(1, round(cpus)), batch=batch)
    options = BatchOptions(address=address, workers=workers, cpus_per_worker=cpus, progress=False,
                           stop_after=stop_after)
    start = time.perf_counter()
    summary = run_batch([str(path) for path in inputs], config, options)
    seconds = time.perf_counter() - start
    return {"command": f"batch --workers {workers} --cpus-per-worker {cpus:g} --batch {batch}",
            "frames": summary.frames, "wall_s": round(seconds, 2),
            "frames_per_s": round(summary.frames / seconds, 3), "done": summary.done,
            "skipped": summary.skipped, "failures": len(summary.failures),
            "per_worker": dict(summary.frames_by_worker)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped demo model")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--video-frames", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--stop-after", type=int, default=None,
                        help="restart test: stop after N inputs, then rerun (default: half the inputs)")
    parser.add_argument("--address", default=None,
                        help="join this running Ray (e.g. auto after `ray start --head`) instead of "
                             "starting one per batch run")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure infer, batch 1 and batch 2 this many times, interleaved")
    parser.add_argument("--skip-restart", action="store_true", help="only the throughput runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    model = (args.model or demo_model()).resolve()
    cores = len(__import__("os").sched_getaffinity(0))
    figures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as name:
        folder = Path(name)
        images, clips = make_inputs(folder / "in", frames=args.frames, videos=args.videos,
                                    video_frames=args.video_frames, size=parse_size(args.size))
        inputs = [images, *clips]
        runs = [("infer", lambda out: time_infer(model, inputs, out, threads=None)),
                ("batch1", lambda out: time_batch(model, inputs, out, workers=1, cpus=cores,
                                                  batch=args.batch, address=args.address)),
                ("batch2", lambda out: time_batch(model, inputs, out, workers=2, cpus=cores / 2,
                                                  batch=args.batch, address=args.address))]
        ratios = []
        for _ in range(args.repeat):  # interleaved, so that a noisy minute hits both sides
            trio = []
            for tag, measure in runs:
                trio.append(measure(folder / f"out-{tag}"))
                print(json.dumps(trio[-1]), flush=True)
                shutil.rmtree(folder / f"out-{tag}")
            figures += trio
            ratios.append(trio[2]["frames_per_s"] / trio[0]["frames_per_s"])
            print(f"batch --workers 2 / infer throughput: {ratios[-1]:.3f}", flush=True)
        total = args.frames + args.videos
        stop = args.stop_after or total // 2
        out = folder / "out-restart"
        restart = []
        for tag, stop_after in () if args.skip_restart else (("stopped", stop), ("restarted", None)):
            figure = time_batch(model, inputs, out, workers=2, cpus=cores / 2, batch=args.batch,
                                stop_after=stop_after, address=args.address)
            figure["command"] = f"{figure['command']} ({tag})"
            restart.append(figure)
            print(json.dumps(figure), flush=True)
        figures += restart
    ratio = statistics.median(ratios)
    said = f"; restart: {restart[1]['skipped']} input(s) skipped, {restart[1]['done']} computed" if restart else ""
    print(f"batch --workers 2 / infer throughput, median of {len(ratios)}: {ratio:.3f} "
          f"(each: {', '.join(f'{r:.3f}' for r in ratios)}; goal >= 0.9){said}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "ratios_2_workers": ratios,
                                         "median_ratio_2_workers": ratio}, indent=2))


if __name__ == "__main__":
    main()
