"""`ocr-deploy eval`: a model's scores on a labelled dataset, computed as the reference does.

Single scale runs the dataset preset's reference test-size policy through the shared pre/post
layer. Flip and multi-scale combine class scores as the reference test does: flip averages the
logits of an input and of its mirror (LIP swaps its left/right classes), which are then exp()'d;
scales <= 1 run the whole scaled image, scales > 1 slide windows of the scale-1 network input
over the enlarged image (no overlap, the last row and column of windows shifted inward, exp()'d
scores averaged where windows meet: ocr_deploy.tiling); each scale's result is resized to the
original size and summed over scales.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ocr_deploy.datasets import DatasetError, DatasetScan, read_label
from ocr_deploy.metrics import IGNORE_INDEX, SegmentationScores, confusion_matrix
from ocr_deploy.postprocess import label_dtype, resize_scores
from ocr_deploy.preprocess import SizePlan, as_bgr8, prepare_frame
from ocr_deploy.segmenter import Prepared, Segmenter
from ocr_deploy.tiling import TileSpec


@dataclass
class EvalReport:
    scores: SegmentationScores
    classes: tuple[str, ...]
    images: int
    unmatched: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # label size differs from its image
    settings: str = ""

    def lines(self) -> list[str]:
        s = self.scores
        lines = [f"{self.images} image(s), {self.settings}",
                 f"mIoU {100 * s.mean_iou:.2f}  pixel accuracy {100 * s.pixel_accuracy:.2f}  "
                 f"mean accuracy {100 * s.mean_accuracy:.2f}",
                 "  class                 IoU     acc"]
        for index, name in enumerate(self.classes):
            iou, accuracy = s.iou[index], s.class_accuracy[index]
            if not (np.isnan(iou) and np.isnan(accuracy)):
                lines.append(f"  {name[:20]:<20}{_pct(iou):>6}  {_pct(accuracy):>6}")
        if not s.present.all():
            lines.append(f"  ({int((~s.present).sum())} class(es) absent from the labels count "
                         f"as IoU 0 in mIoU, as in the reference; mIoU over present classes "
                         f"{100 * s.mean_iou_present:.2f})")
        for label, names in (("without labels", self.unmatched), ("unreadable", self.unreadable),
                             ("whose label size differs from the image", self.mismatched)):
            if names:
                lines.append(f"  skipped {len(names)} image(s) {label}: {', '.join(names[:3])}"
                             + (" ..." if len(names) > 3 else ""))
        return lines

    def to_json(self) -> str:
        s = self.scores
        per_class = {name: None if np.isnan(v) else round(float(v), 6)
                     for name, v in zip(self.classes, s.iou, strict=True)}
        return json.dumps({"images": self.images, "settings": self.settings,
                           "mIoU": s.mean_iou, "mIoU_present_classes": s.mean_iou_present,
                           "pixel_accuracy": s.pixel_accuracy, "mean_accuracy": s.mean_accuracy,
                           "iou": per_class, "skipped_without_labels": self.unmatched,
                           "skipped_unreadable": self.unreadable,
                           "skipped_size_mismatch": self.mismatched}, indent=1)


def _pct(value: float) -> str:
    return "  n/a" if np.isnan(value) else f"{100 * value:.2f}"


def _scaled(plan: SizePlan, scale: float, height: int, width: int) -> SizePlan:
    if scale == 1.0:
        return plan
    if plan.mode == "native":
        return SizePlan("resize", (max(32, round(height * scale)), max(32, round(width * scale))),
                        tiles=plan.tiles)
    target = tuple(max(32, round(side * scale)) for side in plan.target)
    long_side = round(plan.long_side * scale) if plan.long_side else None
    return SizePlan(plan.mode, target, long_side, plan.tiles)


def plan_at_scale(plan: SizePlan, scale: float, height: int, width: int, *,
                  fixed: tuple[int, int] | None = None) -> SizePlan:
    """How a height x width frame runs at one scale. Above 1 (and at any scale for a model with
    a `fixed` input), the scaled image is cut into windows of the scale-1 network input without
    overlap, as the reference's multi-scale test does; a sliding plan keeps its own tiles."""
    scaled = _scaled(plan, scale, height, width)
    if plan.tiles is not None or (scale <= 1.0 and fixed is None):
        return scaled
    at_one, at_scale = plan.place(height, width), scaled.place(height, width)
    return SizePlan("resize", (at_scale.content_height, at_scale.content_width),
                    tiles=TileSpec(at_one.input_height, at_one.input_width, overlap=0.0))


def _mirrored(logits: np.ndarray, flip_pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """The logits of a mirrored input, mirrored back (left/right classes swapped back)."""
    mirrored = logits[:, :, ::-1].copy()
    for left, right in flip_pairs:
        mirrored[[left, right]] = mirrored[[right, left]]
    return mirrored


def _scores_at(segmenter: Segmenter, frame: np.ndarray, plan: SizePlan, flip: bool,
               flip_pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """exp(logits) [K, H, W] at the frame's size for one scale: per network input (the placed
    image or each of its windows) optionally flip-averaged, exp()'d, averaged where windows
    overlap, then resized to the frame, in the reference's order."""
    image, placement = prepare_frame(frame, plan, segmenter.meta.input)
    layout = plan.layout(placement)
    inputs = layout.split(image)
    views = inputs + ([np.ascontiguousarray(view[:, ::-1]) for view in inputs] if flip else [])
    # Segmenter.infer pads to a fixed batch and groups equal sizes, as for any other frames.
    prepared = [Prepared(view, placement, frame, 0.0) for view in views]
    outputs = [output.astype(np.float32) for _, output, _ in segmenter.infer(prepared)]
    logits = outputs[:len(inputs)]
    if flip:
        logits = [(own + _mirrored(mirror, flip_pairs)) * 0.5
                  for own, mirror in zip(logits, outputs[len(inputs):], strict=True)]
    return resize_scores(layout.merge([np.exp(item) for item in logits]), placement)


def _check_scales(segmenter: Segmenter, scales: Sequence[float], flip: bool) -> None:
    if not scales or any(scale <= 0 for scale in scales):
        raise DatasetError("--scales must be positive numbers, e.g. 0.75,1,1.25")
    if (tuple(scales) != (1.0,) or flip) and segmenter.meta.output.kind != "logits":
        raise DatasetError("flip and multi-scale combine logits as the reference does; export "
                           "the model with --output logits to use them")


def predict(segmenter: Segmenter, frame: np.ndarray, *, scales: Sequence[float] = (1.0,),
            flip: bool = False) -> np.ndarray:
    _check_scales(segmenter, scales, flip)
    if tuple(scales) == (1.0,) and not flip:
        return segmenter.segment(frame).labels
    height, width = frame.shape[:2]
    fixed = segmenter.meta.input.fixed_size
    total = sum(_scores_at(segmenter, frame,
                           plan_at_scale(segmenter.plan, scale, height, width, fixed=fixed), flip,
                           segmenter.meta.dataset.flip_pairs) for scale in scales)
    return total.argmax(axis=0).astype(label_dtype(segmenter.meta.num_classes))


def evaluate_dataset(segmenter: Segmenter, scan: DatasetScan, *, scales: Sequence[float] = (1.0,),
                     flip: bool = False, show_progress: bool = True) -> EvalReport:
    import cv2

    from ocr_deploy.progress import progress_items

    _check_scales(segmenter, scales, flip)
    classes = segmenter.meta.num_classes
    confusion = np.zeros((classes, classes), dtype=np.int64)
    report = EvalReport(SegmentationScores(confusion), segmenter.meta.dataset.classes, 0,
                        list(scan.unmatched),
                        settings=(f"scales {', '.join(f'{s:g}' for s in scales)}"
                                  f"{', flip' if flip else ''}, policy {segmenter.plan.describe()}"
                                  f"{'; scales > 1 in windows of the scale-1 input' if max(scales) > 1 else ''}"))
    for sample in progress_items(scan.samples, unit="image", enabled=show_progress):
        image = cv2.imread(str(sample.image), cv2.IMREAD_UNCHANGED)
        if image is None:
            report.unreadable.append(sample.name)
            continue
        truth = read_label(sample, scan.layout)
        outside = np.unique(truth[(truth >= classes) & (truth != IGNORE_INDEX)])
        if outside.size:
            raise DatasetError(f"{sample.label} has label ids {outside[:5].tolist()} outside "
                               f"0..{classes - 1} (and {IGNORE_INDEX} = ignore); is it the right "
                               "dataset/preset for this model?")
        if truth.shape != image.shape[:2]:
            report.mismatched.append(sample.name)
            continue
        prediction = predict(segmenter, as_bgr8(image), scales=scales, flip=flip)
        confusion += confusion_matrix(prediction, truth, classes)
        report.images += 1
    if report.images == 0:
        raise DatasetError("no image of the dataset could be evaluated (unreadable, or label "
                           "sizes differ from their images)")
    report.scores = SegmentationScores(confusion)
    return report
