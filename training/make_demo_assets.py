"""Make the shipped demo assets from the trained checkpoint: the verified ONNX export, the sample
video and the README figure; print the held-out scores and the sizes (recorded by hand in
ocr_deploy/assets/README.md).

    python -m training.train_demo --out ocr_deploy/assets/demo_street_w18s1.pth
    python -m training.make_demo_assets
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from exporters.export_job import ExportRequest, run_export
from ocr_deploy.assets import demo_checkpoint, demo_model, demo_video
from ocr_deploy.segmenter import Segmenter
from training.evaluate_demo import evaluate, report
from training.scenes import render_video

VIDEO_SEED = 77  # held out: training seeds start at 1,000,000 - 64
VIDEO_FRAMES, VIDEO_FPS = 100, 10.0  # the generator advances 0.1 s per frame
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "demo_overlay.png"


def write_video(path: Path) -> None:
    frames = [image for image, _ in render_video(VIDEO_SEED, frames=VIDEO_FRAMES)]
    height, width = frames[0].shape[:2]
    partial = path.with_name(f".{path.stem}.partial.mp4")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    partial.replace(path)


def write_figure(model: Path, video: Path) -> None:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 40)
    ok, frame = capture.read()
    capture.release()
    result = Segmenter.open(model, device="cpu").segment(frame)
    FIGURE.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(FIGURE), np.hstack([frame, result.overlay]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100, help="held-out scenes to score")
    args = parser.parse_args()
    result = run_export(ExportRequest(weights=demo_checkpoint(), output=demo_model(),
                                      dataset="cityscapes"))
    for check in result.verification.checks:
        print("verified", check.describe())
    write_video(demo_video())
    write_figure(demo_model(), demo_video())
    scores = evaluate(demo_model(), images=args.images)
    print("\n".join(report(scores, result.meta.dataset.classes)))
    for path in (demo_checkpoint(), demo_model(), demo_video(), FIGURE):
        print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
