"""`ocr-deploy eval`: metrics against an independent computation, dataset layouts, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from cli import app
from ocr_deploy.evaluation import predict
from ocr_deploy.metrics import SegmentationScores, confusion_matrix
from ocr_deploy.presets import CITYSCAPES_LABEL_TO_TRAIN
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.testframes import synthetic_frame

RUNNER = CliRunner()


def _independent_scores(predictions, truths, classes):
    """Per-class IoU from pixel sets, no confusion matrix: (iou with NaN, pixel acc, ref mIoU)."""
    iou = np.full(classes, np.nan)
    inter = np.zeros(classes)
    union = np.zeros(classes)
    correct = valid = 0
    for pred, truth in zip(predictions, truths, strict=True):
        keep = truth != 255
        correct += int((pred[keep] == truth[keep]).sum())
        valid += int(keep.sum())
        for c in range(classes):
            p, t = (pred == c) & keep, (truth == c) & keep
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
    iou[union > 0] = inter[union > 0] / union[union > 0]
    reference_miou = float(np.mean(inter / np.maximum(1.0, union)))
    return iou, correct / valid, reference_miou


def test_metrics_equal_an_independent_computation():
    rng = np.random.default_rng(0)
    classes = 6
    truths = [rng.integers(0, classes - 1, (40, 50)) for _ in range(3)]  # class 5 never true
    for truth in truths:
        truth[rng.random(truth.shape) < 0.1] = 255
    predictions = [np.where(rng.random(t.shape) < 0.7, t % 255, rng.integers(0, classes, t.shape))
                   for t in truths]
    confusion = sum(confusion_matrix(p, t, classes) for p, t in zip(predictions, truths, strict=True))
    scores = SegmentationScores(confusion)
    iou, pixel_accuracy, reference_miou = _independent_scores(predictions, truths, classes)
    np.testing.assert_allclose(scores.iou, iou, equal_nan=True)
    assert scores.pixel_accuracy == pytest.approx(pixel_accuracy)
    assert scores.mean_iou == pytest.approx(reference_miou)
    assert scores.mean_iou_present == pytest.approx(np.nanmean(iou[:5]))


def _cityscapes(root: Path, count: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """A tiny dataset in the Cityscapes layout; returns (image, label ids)."""
    rng = np.random.default_rng(1)
    ids = np.array(list(CITYSCAPES_LABEL_TO_TRAIN) + [0, 1, 4])  # some ignored ids too
    samples = []
    for index in range(count):
        image = synthetic_frame(64, 128, seed=index)
        label_ids = ids[rng.integers(0, len(ids), (64, 128))].astype(np.uint8)
        for kind, suffix, data in (("leftImg8bit", "leftImg8bit", image),
                                   ("gtFine", "gtFine_labelIds", label_ids)):
            folder = root / kind / "val" / "aachen"
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"aachen_{index:06d}_000019_{suffix}.png"), data)
        samples.append((image, label_ids))
    return samples


def test_cityscapes_layout_matches_independent_scores(tiny_onnx, tmp_path):
    samples = _cityscapes(tmp_path / "cs")
    result = RUNNER.invoke(app, ["eval", str(tiny_onnx), "--data", str(tmp_path / "cs"), "--json",
                                 "-", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    segmenter = Segmenter.open(tiny_onnx, device="cpu")
    lookup = np.full(256, 255)
    for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
        lookup[label_id] = train_id
    predictions = [segmenter.segment(image).labels for image, _ in samples]
    truths = [lookup[ids] for _, ids in samples]
    iou, pixel_accuracy, reference_miou = _independent_scores(predictions, truths, 19)
    assert report["images"] == 3
    assert report["mIoU"] == pytest.approx(reference_miou)
    assert report["pixel_accuracy"] == pytest.approx(pixel_accuracy)
    assert report["iou"]["road"] == (None if np.isnan(iou[0]) else pytest.approx(iou[0], abs=1e-6))


def test_pairs_layout_reports_missing_labels_and_table(tiny_onnx, tmp_path):
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for index in range(3):
        cv2.imwrite(str(tmp_path / "images" / f"{index}.jpg"), synthetic_frame(64, 96, seed=index))
        if index != 2:
            cv2.imwrite(str(tmp_path / "labels" / f"{index}.png"), np.full((64, 96), 2, np.uint8))
    result = RUNNER.invoke(app, ["eval", str(tiny_onnx), "--data", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "2 image(s)" in result.stdout and "mIoU" in result.stdout
    assert "skipped 1 image(s) without labels: images/2.jpg" in result.stdout


def test_bad_datasets(tiny_onnx, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), synthetic_frame(64, 96))
    cv2.imwrite(str(tmp_path / "labels" / "a.png"), np.full((64, 96), 40, np.uint8))
    cases = [
        (["--data", str(tmp_path)], "label ids [40] outside 0..18"),
        (["--data", str(tmp_path / "nope")], "dataset folder not found"),
        (["--data", str(tmp_path / "images")], "neither Cityscapes folders"),
        (["--data", str(tmp_path), "--dataset", "ade20k"], "not ade20k"),
        (["--data", str(tmp_path), "--flip"], "export the model with --output logits"),
    ]
    for options, fragment in cases:
        result = RUNNER.invoke(app, ["eval", str(tiny_onnx), *options, "--no-progress"])
        assert result.exit_code == 1, (options, result.output)
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and fragment in lines[0], (options, result.stderr)


def test_flip_and_scales_combine_as_the_reference(export_tiny):
    """exp of flip-averaged logits; scales > 1 in crop-sized windows (stride = crop, the last
    ones shifted inward, averaged where they meet); resized to the frame and summed over scales."""
    model = export_tiny(output_kind="logits")
    frame = synthetic_frame(80, 120, seed=6)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def inference(image):
        logits = session.run(None, {"image": np.ascontiguousarray(image)[None]})[0][0]
        mirrored = session.run(None, {"image": np.ascontiguousarray(image[:, ::-1])[None]})[0][0]
        return np.exp((logits + mirrored[:, :, ::-1]) * 0.5)

    total, (crop_h, crop_w) = 0, frame.shape[:2]
    for scale in (0.75, 1.0, 1.5):
        size = (round(120 * scale), round(80 * scale))
        image = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) if scale != 1 else frame
        if scale <= 1:
            scores = inference(image)
        else:
            new_h, new_w = image.shape[:2]
            scores, count = np.zeros((19, new_h, new_w), np.float32), np.zeros((new_h, new_w))
            for row in range(int(np.ceil((new_h - crop_h) / crop_h)) + 1):
                for col in range(int(np.ceil((new_w - crop_w) / crop_w)) + 1):
                    h1, w1 = min(row * crop_h + crop_h, new_h), min(col * crop_w + crop_w, new_w)
                    h0, w0 = max(h1 - crop_h, 0), max(w1 - crop_w, 0)
                    scores[:, h0:h1, w0:w1] += inference(image[h0:h1, w0:w1])
                    count[h0:h1, w0:w1] += 1
            scores = scores / count
        total = total + cv2.resize(np.ascontiguousarray(scores.transpose(1, 2, 0)), (120, 80),
                                   interpolation=cv2.INTER_LINEAR)
    expected = total.argmax(axis=2)
    labels = predict(Segmenter.open(model, device="cpu"), frame, scales=(0.75, 1.0, 1.5), flip=True)
    assert (labels == expected).mean() >= 0.9999
