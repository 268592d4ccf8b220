"""Sliding-window inference: tile geometry, overlap averaging on known numbers, exact agreement
with whole-frame logits for fully convolutional graphs, the Segmenter and `infer --policy
sliding` on a real exported network."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli import app
from ocr_deploy.errors import ConfigError
from ocr_deploy.evaluation import plan_at_scale
from ocr_deploy.meta import META_KEY, DatasetSpec, InputSpec, ModelMeta, NetworkSpec, OutputSpec, Provenance
from ocr_deploy.preprocess import SizePlan, plan_size, prepare_frame
from ocr_deploy.presets import load_preset
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.testframes import synthetic_frame
from ocr_deploy.tiling import TileSpec, tile_origins
from ocr_deploy.vocabulary import SizePolicy

CLASSES = 19
RUNNER = CliRunner()


def _meta(*, kind: str = "logits", **input_options) -> ModelMeta:
    preset = load_preset("cityscapes")
    dtype = "uint8" if kind == "labels" else "float32"
    return ModelMeta(
        network=NetworkSpec(family="hrnet_ocr", title="HRNet-OCR", variant="tiny",
                            num_classes=CLASSES, align_corners=True,
                            settings={"mid_channels": 32, "key_channels": 16}),
        dataset=DatasetSpec(preset.name, preset.classes, preset.palette, preset.test_policy),
        input=InputSpec(**input_options), output=OutputSpec(kind=kind, name=kind, dtype=dtype),
        provenance=Provenance("convs.pth", "0" * 64, "test"))


def _conv_graph(path: Path, *, kernel: int, seed: int = 0) -> Path:
    """A real fully convolutional ONNX model with ocr-deploy metadata: raw uint8 NHWC frames ->
    two stride-1 convolutions (zero padding kernel // 2) with a ReLU between -> logits at input
    size. With kernel 1 every output pixel depends on its own input pixel only."""
    rng = np.random.default_rng(seed)
    pad = kernel // 2
    weights = [numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)
               for name, shape in (("w1", (8, 3, kernel, kernel)), ("b1", (8,)),
                                   ("w2", (CLASSES, 8, kernel, kernel)), ("b2", (CLASSES,)))]
    weights.append(numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"))
    nodes = [
        helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["as_float"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["nchw", "scale"], ["x"]),
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[pad] * 4),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["logits"], pads=[pad] * 4),
    ]
    graph = helper.make_graph(
        nodes, "convs",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", CLASSES, "height", "width"])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, _meta().to_json()
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def pointwise(tmp_path_factory) -> Path:
    return _conv_graph(tmp_path_factory.mktemp("convs") / "pointwise.onnx", kernel=1)


@pytest.fixture(scope="module")
def conv3x3(tmp_path_factory) -> Path:
    return _conv_graph(tmp_path_factory.mktemp("convs") / "conv3x3.onnx", kernel=3)


def _whole_logits(model: Path, frame: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": frame[None]})[0][0]


def _sliding_logits(model: Path, frame: np.ndarray, tile: tuple[int, int],
                    overlap: float) -> np.ndarray:
    """What the Segmenter computes for one frame: merged scores at the placed size."""
    with Segmenter.open(model, device="cpu", policy="sliding", tile=tile, overlap=overlap) as seg:
        ((_, merged, _),) = seg.infer([seg.prepare(frame)])
        return merged


def test_tile_origins_cover_the_side_and_stay_inside():
    assert tile_origins(128, 64, 64) == (0, 64)  # exact cover
    assert tile_origins(100, 64, 48) == (0, 36)  # the last tile moved inward to end at 100
    assert tile_origins(160, 64, 48) == (0, 48, 96)
    assert tile_origins(64, 64, 48) == (0,)
    for length, tile, stride in ((1000, 512, 341), (1537, 512, 384), (97, 32, 1)):
        origins = tile_origins(length, tile, stride)
        covered = np.zeros(length, bool)
        for start in origins:
            covered[start:start + tile] = True
        assert covered.all() and origins[-1] == length - tile and len(set(origins)) == len(origins)
        assert all(0 < b - a <= stride for a, b in zip(origins, origins[1:], strict=False))
    # the reference's windows for a 1.5x Cityscapes frame: crop 1024x2048, stride = crop
    assert TileSpec(1024, 2048, 0.0).grid(1536, 3072).origins == [(0, 0), (0, 1024), (512, 0),
                                                                    (512, 1024)]
    assert TileSpec(512, 512, 0.25).strides == (384, 384)
    assert TileSpec(512, 512).strides == (342, 342)  # a third of 512 overlaps


def test_overlap_averaging_on_known_numbers():
    """Three 4x4 tiles over a 4x8 image (stride 2): tile t outputs the constant t+1 in class 0 and
    10*(t+1) in class 1. Columns 0-1 see tile 0 only, 2-3 tiles 0 and 1, 4-5 tiles 1 and 2,
    6-7 tile 2 only."""
    grid = TileSpec(4, 4, overlap=0.5).grid(4, 8)
    assert grid.origins == [(0, 0), (0, 2), (0, 4)]
    assert grid.coverage()[0].tolist() == [1, 1, 2, 2, 2, 2, 1, 1]
    outputs = [np.stack([np.full((4, 4), t + 1.0), np.full((4, 4), 10.0 * (t + 1))])
               for t in range(3)]
    merged = grid.merge(outputs)
    assert merged.shape == (2, 4, 8) and merged.dtype == np.float32
    assert merged[0, 0].tolist() == [1, 1, 1.5, 1.5, 2.5, 2.5, 3, 3]
    assert merged[1, 3].tolist() == [10, 10, 15, 15, 25, 25, 30, 30]
    assert (merged[:, 0] == merged[:, 3]).all()
    # a 2-D grid: every pixel gets the mean of the tile ids covering it
    grid = TileSpec(3, 3, overlap=0.5).grid(5, 5)  # stride 2: origins 0, 2 per side
    merged = grid.merge([np.full((1, 3, 3), float(t)) for t in range(4)])[0]
    assert merged[0, 0] == 0 and merged[0, 4] == 1 and merged[4, 0] == 2 and merged[4, 4] == 3
    assert merged[2, 2] == pytest.approx(1.5) and merged[0, 2] == pytest.approx(0.5)
    assert merged[2, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="logits or probs"):
        grid.merge([np.zeros((5, 5))] * 4)  # labels-sized outputs of the whole image


def test_tiles_covering_the_frame_exactly_reproduce_whole_frame_logits(pointwise):
    """A 1x1-conv network computes each pixel from that pixel alone: tiles that partition the
    frame (2x2 tiles, no overlap) give the whole frame's logits, pixel for pixel."""
    frame = synthetic_frame(64, 128, seed=1)
    whole = _whole_logits(pointwise, frame)
    merged = _sliding_logits(pointwise, frame, (32, 64), 0.0)
    assert merged.shape == whole.shape == (CLASSES, 64, 128)
    np.testing.assert_allclose(merged, whole, rtol=0, atol=1e-5)
    overlapping = _sliding_logits(pointwise, frame, (48, 48), 0.5)  # every pixel averaged 1-4x
    np.testing.assert_allclose(overlapping, whole, rtol=0, atol=1e-5)


def test_3x3_convs_agree_away_from_the_seams_only(conv3x3):
    """Two 3x3 convs see 2 px around a pixel. Where a tile's edge is the frame's edge, both runs
    pad alike, so tiles that partition the frame agree with the whole frame everywhere except
    within 2 px of the inner seams (rows 30-33, columns 62-65), where tiles pad with zeros the
    whole frame does not have."""
    frame = synthetic_frame(64, 128, seed=2)
    whole = _whole_logits(conv3x3, frame)
    merged = _sliding_logits(conv3x3, frame, (32, 64), 0.0)
    near_seam = np.zeros((64, 128), bool)
    near_seam[30:34, :] = True
    near_seam[:, 62:66] = True
    np.testing.assert_allclose(merged[:, ~near_seam], whole[:, ~near_seam], rtol=0, atol=1e-5)
    assert np.abs(merged[:, near_seam] - whole[:, near_seam]).max() > 1e-3  # the seams do differ


def test_frames_smaller_than_a_tile_are_padded_then_cropped(pointwise):
    frame = synthetic_frame(40, 50, seed=3)
    plan = plan_size(_meta(), policy="sliding", tile=(64, 64))
    image, placement = prepare_frame(frame, plan, InputSpec())
    assert image.shape == (64, 64, 3) and (image[40:] == 0).all() and (image[:, 50:] == 0).all()
    assert (placement.content_height, placement.content_width) == (40, 50)
    with Segmenter.open(pointwise, device="cpu", policy="sliding", tile=(64, 64)) as seg:
        labels = seg.segment(frame).labels
    assert labels.shape == (40, 50)
    assert (labels == _whole_logits(pointwise, frame).argmax(0)).all()


def test_sliding_plans_and_their_refusals():
    dynamic, fixed = _meta(), _meta(height=256, width=512)
    plan = plan_size(dynamic, policy="sliding", tile=(128, 128), overlap=0.25)
    assert plan == SizePlan("native", tiles=TileSpec(128, 128, 0.25))
    assert plan.network_size == (128, 128)
    assert plan_size(dynamic, policy="sliding", tile=(64, 96), size=(300, 400)) == SizePlan(
        "resize", (300, 400), tiles=TileSpec(64, 96))
    assert plan_size(fixed, policy="sliding").tiles == TileSpec(256, 512)  # the fixed input
    placement = plan.place(100, 300)  # padded up to one tile in height
    assert (placement.input_height, placement.input_width) == (128, 300)
    assert plan.layout(placement).origins == [(0, 0), (0, 96), (0, 172)]
    cases = [
        (dict(meta=_meta(kind="labels"), tile=(64, 64)), "--output logits"),
        (dict(meta=dynamic), "needs --tile"),
        (dict(meta=fixed, tile=(128, 128)), "differs from the model's fixed input"),
        (dict(meta=dynamic, tile=(64, 64), overlap=1.0), "--overlap"),
        (dict(meta=dynamic, tile=(64, 64), overlap=-0.1), "--overlap"),
        (dict(meta=dynamic, tile=(16, 64)), "too small"),
    ]
    for options, fragment in cases:
        with pytest.raises(ConfigError, match=fragment):
            plan_size(options.pop("meta"), policy="sliding", **options)
    with pytest.raises(ConfigError, match="belong to --policy sliding"):
        plan_size(dynamic, tile=(64, 64))
    assert set(SizePolicy) >= {SizePolicy.sliding}


def test_eval_scales_above_one_run_in_windows_of_the_scale_one_input():
    """The reference's multi-scale test: the enlarged image in windows of the scale-1 crop, no
    overlap, the last row and column shifted inward; scales <= 1 whole."""
    native = plan_size(_meta())
    enlarged = plan_at_scale(native, 1.5, 80, 120)
    assert enlarged == SizePlan("resize", (120, 180), tiles=TileSpec(80, 120, 0.0))
    assert enlarged.layout(enlarged.place(80, 120)).origins == [(0, 0), (0, 60), (40, 0), (40, 60)]
    assert plan_at_scale(native, 0.75, 80, 120) == SizePlan("resize", (60, 90))
    ade = plan_size(dataclasses.replace(_meta(), dataset=_ade20k()), policy="reference")
    enlarged = plan_at_scale(ade, 1.5, 400, 800)  # long side 520 -> 780, crop 520x520
    placement = enlarged.place(400, 800)
    assert (placement.content_height, placement.content_width) == (390, 780)
    assert (placement.input_height, placement.input_width) == (520, 780)  # padded to a crop
    assert enlarged.layout(placement).origins == [(0, 0), (0, 260)]
    fixed = _meta(height=256, width=512)  # a fixed input runs every scale in its own size
    shrunk = plan_at_scale(plan_size(fixed), 0.75, 256, 512, fixed=(256, 512))
    assert shrunk.tiles == TileSpec(256, 512, 0.0) and len(shrunk.layout(shrunk.place(256, 512))) == 1
    sliding = plan_size(_meta(), policy="sliding", tile=(64, 64), overlap=0.25)
    assert plan_at_scale(sliding, 1.5, 80, 120) == SizePlan("resize", (120, 180),
                                                            tiles=TileSpec(64, 64, 0.25))


def _ade20k() -> DatasetSpec:
    preset = load_preset("ade20k")
    return DatasetSpec(preset.name, preset.classes, preset.palette, preset.test_policy)


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_infer_sliding_on_an_exported_network(export_tiny, tmp_path):
    """`infer --policy sliding` on the tiny HRNet-OCR exported with logits: the labels it writes
    equal an independent sliding-window computation on ONNX Runtime (tiles 64x64, overlap 0.25:
    stride 48, rows at 0 and 32, columns at 0, 48 and 96 over a 96x160 frame)."""
    model = export_tiny(output_kind="logits")
    frame = synthetic_frame(96, 160, seed=8)
    image = tmp_path / "street.png"
    cv2.imwrite(str(image), frame)
    out = tmp_path / "out"
    result = RUNNER.invoke(app, ["infer", str(image), "--model", str(model), "-o", str(out),
                                 "--policy", "sliding", "--tile", "64x64", "--overlap", "0.25",
                                 "--save", "labels", "--no-progress"])
    assert result.exit_code == 0, result.output
    written = cv2.imread(str(out / "street_labels.png"), cv2.IMREAD_UNCHANGED)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    total = np.zeros((CLASSES, 96, 160), np.float32)
    count = np.zeros((96, 160), np.float32)
    for top in (0, 32):
        for left in (0, 48, 96):
            crop = np.ascontiguousarray(frame[top:top + 64, left:left + 64])
            total[:, top:top + 64, left:left + 64] += session.run(None, {"image": crop[None]})[0][0]
            count[top:top + 64, left:left + 64] += 1
    expected = (total / count).argmax(0)
    assert written.shape == (96, 160)
    assert (written == expected).mean() >= 0.9999
    whole = _whole_logits(model, frame).argmax(0)
    assert (written != whole).any()  # OCR's context differs per tile: sliding is not whole-frame


def test_infer_sliding_refuses_labels_models_and_bad_options(tiny_onnx, tmp_path):
    image = tmp_path / "street.png"
    cv2.imwrite(str(image), synthetic_frame(64, 96, seed=1))
    base = ["infer", str(image), "--model", str(tiny_onnx), "-o", str(tmp_path / "out"),
            "--no-progress"]
    _one_line_error(RUNNER.invoke(app, [*base, "--policy", "sliding", "--tile", "64x64"]),
                    "--output logits")
    _one_line_error(RUNNER.invoke(app, [*base, "--tile", "64x64"]), "--policy sliding")
    _one_line_error(RUNNER.invoke(app, [*base, "--policy", "sliding", "--tile", "64"]), "--tile")
    assert not (tmp_path / "out").exists()
