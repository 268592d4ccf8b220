"""The shipped demo: assets load through the normal paths, match each other, and still score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from exporters.checkpoints import load_checkpoint
from exporters.onnx_export import DeployGraph
from ocr_deploy.assets import demo_checkpoint, demo_model, demo_video
from ocr_deploy.backends import read_meta
from ocr_deploy.segmenter import Segmenter
from training.evaluate_demo import evaluate, held_out_scenes

# Held-out mIoU measured when the assets were made (ocr_deploy/assets/README.md);
# the floor sits a little under it.
MIOU_FLOOR = 0.79  # measured 0.8109 on these 50 scenes, 0.8101 on 100
ASSET_LIMIT_BYTES = 25_000_000


def test_assets_are_small_enough():
    total = sum(path.stat().st_size for path in (demo_checkpoint(), demo_model(), demo_video()))
    assert total <= ASSET_LIMIT_BYTES


def test_checkpoint_loads_through_the_release_path():
    checkpoint = load_checkpoint(demo_checkpoint())
    assert checkpoint.layout == "flat state dict, keys prefixed 'model.'"
    assert any("loss.criterion.weight" in note for note in checkpoint.notes)
    config = checkpoint.config
    assert (config.variant, config.num_classes, config.mid_channels, config.key_channels) == (
        "w18-small-v1", 19, 128, 64)
    meta = read_meta(demo_model())
    assert meta.provenance.checkpoint_sha256 == checkpoint.sha256


def test_shipped_onnx_matches_its_checkpoint():
    checkpoint = load_checkpoint(demo_checkpoint())
    meta = read_meta(demo_model())
    graph = DeployGraph(checkpoint.build_model(), meta).eval()
    segmenter = Segmenter.open(demo_model(), device="cpu")
    agreements = []
    for image, _ in held_out_scenes(8):
        with torch.no_grad():
            expected = graph(torch.from_numpy(image[None]))[0][0].numpy()
        agreements.append((segmenter.segment(image).labels == expected).mean())
    assert np.mean(agreements) >= 0.999


def test_held_out_miou_above_floor():
    scores = evaluate(demo_model(), images=50)
    assert scores.mean_iou_present >= MIOU_FLOOR


def test_fp16_graph_agrees_on_held_out_scenes():
    """Issue 5's requirement, on a trained model: >= 99.9 % of pixels as FP32."""
    import onnx

    from exporters.fp16 import to_mixed_fp16
    from exporters.graph_compare import compare_graphs

    fp32 = onnx.load(str(demo_model()))
    frames = [(f"held-out {i}", image) for i, (image, _) in enumerate(held_out_scenes(8))]
    agreement = compare_graphs(fp32, to_mixed_fp16(fp32), read_meta(demo_model()), frames)
    assert agreement.agreement >= 0.999


def test_demo_command_end_to_end(tmp_path):
    result = CliRunner().invoke(app, ["demo", "-o", str(tmp_path), "--max-frames", "6",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "exported the demo checkpoint" in result.stdout and "labels agree" in result.stdout
    assert "processed 6 frame(s)" in result.stdout
    video = tmp_path / "demo_street_overlay.mp4"
    assert f"overlay video: {video.resolve()}" in result.stdout
    import cv2

    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_infer_uses_the_demo_model_by_default(tmp_path):
    import cv2

    image, _ = next(held_out_scenes(1))
    cv2.imwrite(str(tmp_path / "street.png"), image)
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "street.png"), "-o",
                                      str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "demo_street_w18s1.onnx" in result.stderr
    assert (tmp_path / "out" / "street_labels.png").is_file()


@pytest.mark.parametrize("seed", [0, 1])
def test_generator_is_deterministic(seed):
    from training.scenes import render_scene

    first, second = render_scene(seed), render_scene(seed)
    assert (first[0] == second[0]).all() and (first[1] == second[1]).all()
