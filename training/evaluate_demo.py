"""Held-out quality of a demo model: mIoU and per-class IoU on generated scenes whose seeds were
never used in training (training uses seeds >= TRAIN_SEED_START - 64).

    python -m training.evaluate_demo ocr_deploy/assets/demo_street_w18s1.onnx --images 100
    python -m training.evaluate_demo --dataset-out held_out/ --images 50   # for `ocr-deploy eval`
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ocr_deploy.metrics import SegmentationScores, confusion_matrix
from ocr_deploy.segmenter import Segmenter
from training.scenes import CLASS_IDS, render_scene

HELD_OUT_SEED_START = 0  # far below the training seeds


def held_out_scenes(count: int, height: int = 256, width: int = 512):
    for seed in range(HELD_OUT_SEED_START, HELD_OUT_SEED_START + count):
        yield render_scene(seed, height=height, width=width)


def evaluate(model: Path, *, images: int = 100, height: int = 256, width: int = 512
             ) -> SegmentationScores:
    segmenter = Segmenter.open(model, device="cpu")
    classes = segmenter.meta.num_classes
    confusion = np.zeros((classes, classes), dtype=np.int64)
    for image, truth in held_out_scenes(images, height, width):
        confusion += confusion_matrix(segmenter.segment(image).labels, truth, classes)
    return SegmentationScores(confusion)


def report(scores: SegmentationScores, class_names: tuple[str, ...]) -> list[str]:
    drawn = sorted(CLASS_IDS.values())
    lines = [f"mIoU over the {len(drawn)} drawn classes: {scores.mean_iou_present:.4f}",
             f"pixel accuracy {scores.pixel_accuracy:.4f}, mean accuracy {scores.mean_accuracy:.4f}"]
    lines += [f"  {class_names[index]:<14} IoU {scores.iou[index]:.4f}" for index in drawn]
    return lines


def write_dataset(folder: Path, images: int) -> None:
    """The held-out scenes as an images/ + labels/ dataset (train ids), for `ocr-deploy eval`."""
    import cv2

    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for seed, (image, labels) in enumerate(held_out_scenes(images), start=HELD_OUT_SEED_START):
        cv2.imwrite(str(folder / "images" / f"scene_{seed:05d}.png"), image)
        cv2.imwrite(str(folder / "labels" / f"scene_{seed:05d}.png"), labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, nargs="?")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--dataset-out", type=Path, help="write the scenes as a dataset instead")
    args = parser.parse_args()
    if args.dataset_out:
        write_dataset(args.dataset_out, args.images)
        print(f"wrote {args.images} held-out scenes to {args.dataset_out}/images and /labels")
        return
    if args.model is None:
        parser.error("give a MODEL to evaluate, or --dataset-out")
    scores = evaluate(args.model, images=args.images)
    names = Segmenter.open(args.model, device="cpu").meta.dataset.classes
    print(f"{args.images} held-out scenes (seeds {HELD_OUT_SEED_START}.."
          f"{HELD_OUT_SEED_START + args.images - 1}) at 256x512, {args.model.name}")
    print("\n".join(report(scores, names)))


if __name__ == "__main__":
    main()
