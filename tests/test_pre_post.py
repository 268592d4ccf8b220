"""Pre- and post-processing: conversions, size policies, exact undo of resize and letterbox."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.meta import DatasetSpec, InputSpec, ModelMeta, NetworkSpec, OutputSpec, Provenance
from ocr_deploy.postprocess import class_fractions, colorize, labels_from_scores, palette_lut, restore_labels
from ocr_deploy.preprocess import FrameError, SizePlan, as_bgr8, plan_size, prepare_frame
from ocr_deploy.presets import load_preset


def _meta(dataset: str = "cityscapes", **input_options) -> ModelMeta:
    preset = load_preset(dataset)
    return ModelMeta(
        network=NetworkSpec(family="hrnet_ocr", title="HRNet-OCR", variant="tiny",
                            num_classes=preset.num_classes, align_corners=True,
                            settings={"mid_channels": 32, "key_channels": 16}),
        dataset=DatasetSpec(preset.name, preset.classes, preset.palette, preset.test_policy),
        input=InputSpec(**input_options), output=OutputSpec(),
        provenance=Provenance("x.pth", "0" * 64, "test"))


def test_frame_conversions():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_bgr8(grey).shape == (3, 4, 3) and (as_bgr8(grey)[..., 1] == grey).all()
    assert as_bgr8(grey[..., None]).shape == (3, 4, 3)
    bgra = np.dstack([np.full((3, 4), v, np.uint8) for v in (10, 20, 30, 255)])
    assert as_bgr8(bgra)[0, 0].tolist() == [10, 20, 30]
    deep = np.full((3, 4, 3), 0xABCD, np.uint16)
    assert as_bgr8(deep)[0, 0, 0] == 0xAB
    for bad in (np.zeros((3, 4, 3), np.float32), np.zeros((3, 4, 2), np.uint8), [1, 2, 3]):
        with pytest.raises(FrameError):
            as_bgr8(bad)


def test_size_plans():
    dynamic, fixed = _meta(), _meta(height=256, width=512)
    assert plan_size(dynamic) == SizePlan("native")
    assert plan_size(dynamic, size=(128, 256)) == SizePlan("letterbox", (128, 256))
    assert plan_size(dynamic, size=(128, 256), policy="resize") == SizePlan("resize", (128, 256))
    assert plan_size(fixed) == SizePlan("letterbox", (256, 512))
    assert plan_size(_meta("ade20k"), policy="reference") == SizePlan("letterbox", (520, 520),
                                                                       long_side=520)
    assert plan_size(_meta("lip"), policy="reference") == SizePlan("resize", (473, 473))
    assert plan_size(dynamic, policy="reference") == SizePlan("native")
    with pytest.raises(OcrDeployError, match="differs from the model's fixed input"):
        plan_size(fixed, size=(128, 128))
    with pytest.raises(OcrDeployError, match="needs a dynamic model"):
        plan_size(fixed, policy="native")


def test_reference_resize_pad_geometry():
    """ADE20K policy: long side to 520, black padding bottom-right to 520x520."""
    plan = plan_size(_meta("ade20k"), policy="reference")
    frame = np.full((300, 400, 3), 200, np.uint8)
    image, placement = prepare_frame(frame, plan, InputSpec())
    assert image.shape == (520, 520, 3)
    assert (placement.content_height, placement.content_width) == (390, 520)
    assert (image[:390] == 200).all() and (image[390:] == 0).all()


@pytest.mark.parametrize("policy,size,source", [
    ("letterbox", (200, 200), (100, 50)),   # integer scale 2, padded on the right
    ("letterbox", (96, 256), (48, 64)),     # scale 2, padded on the right
    ("resize", (120, 90), (40, 30)),        # integer scale 3 per axis
    ("native", None, (70, 45)),
])
def test_round_trip_is_exact_at_integer_scales(policy, size, source):
    """Labels drawn at frame size, placed like a frame and restored, come back pixel-exact."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, size=source, dtype=np.uint8)
    plan = plan_size(_meta(), size=size, policy=policy)
    placement = plan.place(*source)
    content = cv2.resize(labels, (placement.content_width, placement.content_height),
                         interpolation=cv2.INTER_NEAREST)
    network_labels = np.full(placement.input_size, 99, np.uint8)  # padding predicted as 99
    network_labels[: content.shape[0], : content.shape[1]] = content
    restored = restore_labels(network_labels, placement)
    assert restored.shape == source and (restored == labels).all()


def test_round_trip_at_a_fractional_scale_keeps_geometry():
    """A letterbox at scale 1.4: every pixel lands on itself or a neighbour's class."""
    labels = np.zeros((50, 80), np.uint8)
    labels[:, 40:] = 1  # left half 0, right half 1
    labels[25:, :] = np.where(labels[25:, :] == 1, 3, 2)
    plan = plan_size(_meta(), size=(70, 140), policy="letterbox")
    placement = plan.place(50, 80)
    assert (placement.content_height, placement.content_width) == (70, 112)
    content = cv2.resize(labels, (112, 70), interpolation=cv2.INTER_NEAREST)
    network_labels = np.full(placement.input_size, 99, np.uint8)
    network_labels[:70, :112] = content
    restored = restore_labels(network_labels, placement)
    assert restored.shape == (50, 80) and 99 not in restored
    assert (restored == labels).mean() > 0.97


def test_scores_are_resized_before_argmax():
    placement = SizePlan("letterbox", (64, 64)).place(32, 16)
    scores = np.zeros((3, 64, 64), np.float32)
    scores[1, :, :16] = 1.0  # left half of the content: class 1
    scores[2, :, 16:32] = 1.0  # right half of the content: class 2
    scores[0, :, 32:] = 5.0  # padding
    labels = labels_from_scores(scores, placement)
    assert labels.shape == (32, 16)
    assert (labels[:, :7] == 1).all() and (labels[:, 9:] == 2).all()


def test_too_small_frame_is_refused():
    with pytest.raises(FrameError, match="at least 32 px"):
        prepare_frame(np.zeros((20, 100, 3), np.uint8), SizePlan("native"), InputSpec())
    image, _ = prepare_frame(np.zeros((20, 100, 3), np.uint8), SizePlan("resize", (64, 128)),
                             InputSpec())
    assert image.shape == (64, 128, 3)


def test_colorize_and_fractions():
    palette = load_preset("cityscapes").palette
    lut = palette_lut(palette)
    labels = np.array([[0, 13], [255, 13]], np.uint8)
    color = colorize(labels, lut)
    assert color[0, 0].tolist() == list(palette[0][::-1])  # BGR
    assert color[0, 1].tolist() == [142, 0, 0]  # car (0, 0, 142) in BGR
    assert color[1, 0].tolist() == [0, 0, 0]  # ignore id: black
    many = np.array([[300, 2]], np.int32)
    big_lut = palette_lut(tuple((i % 256, 0, 0) for i in range(301)))
    assert colorize(many, big_lut)[0, 0].tolist() == [0, 0, 300 % 256]
    fractions = class_fractions(np.array([[0, 0, 1, 255]], np.uint8), 19)
    assert fractions[0] == 0.5 and fractions[1] == 0.25 and len(fractions) == 19


def test_normalized_input_matches_reference_arithmetic():
    from ocr_deploy.preprocess import normalize_frames

    frame = np.random.default_rng(1).integers(0, 256, (1, 8, 9, 3), dtype=np.uint8)
    spec = InputSpec()
    expected = (frame[..., ::-1] / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(normalize_frames(frame, spec), expected.transpose(0, 3, 1, 2),
                               atol=1e-5)
    assert dataclasses.replace(spec, format="normalized").dtype == "float32"
