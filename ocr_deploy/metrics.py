"""Segmentation metrics as the reference computes them: a K x K confusion matrix over the
pixels whose ground truth is not ignored, then IoU, pixel and mean accuracy from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(prediction: np.ndarray, truth: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """counts[t, p]: pixels of true class t predicted as p (int64 [K, K])."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in size")
    valid = truth != ignore_index
    t = truth[valid].astype(np.int64)
    p = prediction[valid].astype(np.int64)
    inside = (t < num_classes) & (p >= 0) & (p < num_classes)
    flat = t[inside] * num_classes + p[inside]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegmentationScores:
    """Per-class IoU and accuracy (NaN for classes absent from both truth and prediction)."""

    confusion: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        true_positive = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, true_positive / union, np.nan)

    @property
    def class_accuracy(self) -> np.ndarray:
        per_class = self.confusion.sum(1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(per_class > 0, np.diag(self.confusion) / per_class, np.nan)

    @property
    def mean_iou(self) -> float:
        """The reference's mIoU: tp / max(1, union) averaged over all K classes (an absent class
        counts as 0, which changes nothing on datasets where every class occurs)."""
        return float(np.nan_to_num(self.iou, nan=0.0).mean())

    @property
    def present(self) -> np.ndarray:
        """Classes that occur in the ground truth."""
        return self.confusion.sum(1) > 0

    @property
    def mean_iou_present(self) -> float:
        """mIoU over the classes that occur in the ground truth."""
        return float(np.nanmean(self.iou[self.present])) if self.present.any() else float("nan")

    @property
    def pixel_accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def mean_accuracy(self) -> float:
        """Mean per-class accuracy over the classes that occur in the ground truth."""
        accuracy = self.class_accuracy[self.present]
        return float(np.nanmean(accuracy)) if accuracy.size else float("nan")
