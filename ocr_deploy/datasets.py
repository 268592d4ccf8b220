"""Evaluation datasets in their standard layouts: Cityscapes, and image/label pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.metrics import IGNORE_INDEX
from ocr_deploy.presets import CITYSCAPES_LABEL_TO_TRAIN
from ocr_deploy.sources import IMAGE_SUFFIXES

LAYOUTS = ("auto", "cityscapes", "pairs")
_PAIR_FOLDERS = (("images", "labels"), ("images", "masks"), ("images", "annotations"),
                 ("img", "gt"), ("image", "label"))


class DatasetError(OcrDeployError):
    """A dataset folder that cannot be evaluated as it is."""


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    label: Path


@dataclass
class DatasetScan:
    layout: str
    samples: list[Sample]
    unmatched: list[str] = field(default_factory=list)  # images without a label file


def _label_id_table() -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
        table[label_id] = train_id
    return table


def _cityscapes(root: Path, split: str) -> DatasetScan:
    images = sorted((root / "leftImg8bit" / split).rglob("*_leftImg8bit.png"))
    scan = DatasetScan("cityscapes", [])
    for image in images:
        stem = image.name[: -len("_leftImg8bit.png")]
        label = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if label.is_file():
            scan.samples.append(Sample(f"{image.parent.name}/{stem}", image, label))
        else:
            scan.unmatched.append(str(image.relative_to(root)))
    return scan


def _pairs(root: Path, split: str) -> DatasetScan:
    base = root / split if (root / split).is_dir() else root
    for image_dir, label_dir in _PAIR_FOLDERS:
        if (base / image_dir).is_dir() and (base / label_dir).is_dir():
            break
    else:
        raise DatasetError(f"{root} has neither Cityscapes folders (leftImg8bit/, gtFine/) nor "
                           "an images/ + labels/ pair (also masks/, annotations/)")
    labels = {path.relative_to(base / label_dir).with_suffix(""): path
              for path in (base / label_dir).rglob("*.png")}
    scan = DatasetScan("pairs", [])
    for image in sorted(p for p in (base / image_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        key = image.relative_to(base / image_dir).with_suffix("")
        if key in labels:
            scan.samples.append(Sample(str(key), image, labels[key]))
        else:
            scan.unmatched.append(str(image.relative_to(root)))
    return scan


def scan_dataset(root: Path, *, layout: str = "auto", split: str = "val") -> DatasetScan:
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if layout not in LAYOUTS:
        raise DatasetError(f"--layout must be one of {', '.join(LAYOUTS)}")
    if layout == "cityscapes" or (layout == "auto" and (root / "leftImg8bit").is_dir()):
        scan = _cityscapes(root, split)
    else:
        scan = _pairs(root, split)
    if not scan.samples:
        missing = f" ({len(scan.unmatched)} image(s) without labels)" if scan.unmatched else ""
        raise DatasetError(f"no image/label pairs found in {root} for split {split!r}{missing}")
    return scan


def read_label(sample: Sample, layout: str) -> np.ndarray:
    """Train ids [H, W] (255 = ignore): Cityscapes label ids are mapped, pairs are taken as is."""
    import cv2

    label = cv2.imread(str(sample.label), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise DatasetError(f"{sample.label} is not a single-channel label image")
    if layout == "cityscapes":
        if label.dtype != np.uint8:
            raise DatasetError(f"{sample.label} is not an 8-bit Cityscapes labelIds image")
        return _label_id_table()[label]
    return label
