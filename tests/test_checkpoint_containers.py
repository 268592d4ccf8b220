"""Framework containers (issue 10): mmsegmentation 0.x releases and 1.x training checkpoints
(the real fixture, rebuilt by its make_checkpoint.py), openseg.pytorch's config_dict, what they
state checked against the weights, class names and palette carried into the ONNX metadata, and
`ocr-deploy info weights.pth`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from exporters.checkpoint_files import read_weights_file
from exporters.checkpoints import BatchNormMode, load_checkpoint
from exporters.containers import unwrap
from exporters.models import FAMILIES
from exporters.models.base import ChannelOrder
from exporters.safe_unpickle import InertObject

RUNNER = CliRunner()
MM = "mm_ocrnet_hr18_k19"
CITYSCAPES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
              "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
              "bus", "train", "motorcycle", "bicycle")


def _one_line_error(result, fragment: str) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    return lines[0]


def _family(key: str):
    if key not in FAMILIES:
        pytest.skip(f"model family {key} is not registered yet")
    return FAMILIES[key]


# ---- the real mmsegmentation fixture in both of its containers --------------------------------

@pytest.fixture(scope="module", params=["mmseg0", "mmseg1-training"])
def mm_file(request, family_checkpoint) -> tuple[str, Path]:
    return request.param, family_checkpoint(MM, request.param)


def _expected_palette(layout: str) -> list[list[int]]:
    if layout == "mmseg1-training":
        return [[i, i, i] for i in range(19)]
    return np.random.default_rng(19).integers(0, 256, (19, 3)).tolist()  # as make_checkpoint.py


def test_mmseg_container_yields_every_tensor_and_its_metadata(mm_file, family_fixtures):
    layout, path = mm_file
    stored = read_weights_file(path)
    tensors, source = unwrap(stored, path)
    recorded = json.loads((family_fixtures / f"{MM}_layout.json").read_text())["layout"]
    assert [(key, list(tensor.shape)) for key, tensor in tensors.items()] == \
        [(key, shape) for key, shape in recorded]
    overrides = np.load(family_fixtures / f"{MM}_bnstats.npz")
    for key in overrides.files[:20]:
        assert np.array_equal(tensors[key].numpy(), overrides[key])
    assert source.classes == CITYSCAPES
    assert [list(colour) for colour in source.palette] == _expected_palette(layout)
    assert source.framework.startswith("mmsegmentation")
    if layout == "mmseg0":
        assert source.framework == "mmsegmentation 0.11.0" and source.num_classes == 19
    else:
        # The message hub's HistoryBuffer became an inert stand-in; mmengine was never imported.
        buffer = stored["message_hub"]["log_scalars"]["train/loss"]
        assert isinstance(buffer, InertObject) and "HistoryBuffer" in type(buffer).__qualname__
        assert "mmengine" not in sys.modules
        assert any("training state left unused: message_hub, optimizer" in note
                   for note in source.notes)


def test_mmseg_checkpoint_names_classes_and_palette_of_the_export(mm_file):
    from exporters.export_job import ExportRequest, build_meta

    _family("mmseg_hrnet_ocr")
    layout, path = mm_file
    checkpoint = load_checkpoint(path)
    assert checkpoint.family.key == "mmseg_hrnet_ocr" and checkpoint.source.classes == CITYSCAPES
    notes: list[str] = []
    meta = build_meta(checkpoint, ExportRequest(weights=path), None, notes)
    assert meta.dataset.classes == CITYSCAPES and meta.dataset.name == "cityscapes"
    assert [list(colour) for colour in meta.dataset.palette] == _expected_palette(layout)
    assert any("class names and palette from the checkpoint's mmsegmentation" in n for n in notes)


def test_info_on_a_training_checkpoint(family_checkpoint):
    _family("mmseg_hrnet_ocr")
    result = RUNNER.invoke(app, ["info", str(family_checkpoint(MM, "mmseg1-training"))])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for fragment in ("family", "[mmseg_hrnet_ocr]", "mmsegmentation 1.x (mmengine 0.10.7)",
                     "K=19", "classes from", "class names and palette from the checkpoint",
                     "normalisation", "the network reads RGB", "mean (123.7, 116.3, 103.5)",
                     "output stride", "would export", "default size 1024x2048",
                     "uint8 [batch, height, width, 3]", "labels: uint8"):
        assert fragment in text, fragment


# ---- a small mmsegmentation container, exported for real ---------------------------------------

NAMES = ("sky", "road", "tree", "car", "person")
COLOURS = ((10, 20, 30), (40, 50, 60), (70, 80, 90), (100, 110, 120), (130, 140, 150))


@pytest.fixture(scope="module")
def mm_tiny(tmp_path_factory) -> tuple[Path, dict]:
    from exporters.synthetic import synthetic_model

    family = _family("mmseg_hrnet_ocr")
    network = synthetic_model(family.example_config(num_classes=5), seed=0, calibrate=False)
    state = dict(network.state_dict())
    path = tmp_path_factory.mktemp("mm_tiny") / "mm_tiny.pth"
    torch.save({"meta": {"mmseg_version": "0.30.0", "CLASSES": NAMES,
                         "PALETTE": [list(c) for c in COLOURS]}, "state_dict": state}, path)
    return path, state


def test_checkpoint_names_and_colours_reach_info_and_infer(mm_tiny, tmp_path):
    """The metadata an export embeds (build_meta) drives `info` and `infer`; run here on the
    PyTorch backend, which builds the same metadata without the slow ONNX export."""
    import cv2

    path, _ = mm_tiny
    info = RUNNER.invoke(app, ["info", str(path)])
    assert info.exit_code == 0, info.output
    assert "checkpoint: sky, road, tree, car, person" in info.stdout
    assert "class names and palette from the checkpoint's mmsegmentation 0.30.0" in info.stdout
    frame = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    result = RUNNER.invoke(app, ["infer", str(tmp_path / "frame.png"), "--model", str(path),
                                 "--backend", "pytorch", "-o", str(tmp_path / "run"),
                                 "--save", "labels,color"])
    assert result.exit_code == 0, result.output
    labels = cv2.imread(str(next((tmp_path / "run").glob("*labels*.png"))), cv2.IMREAD_UNCHANGED)
    colour = cv2.imread(str(next((tmp_path / "run").glob("*color*.png"))))[..., ::-1]  # RGB
    assert labels.shape == (64, 128) and set(np.unique(labels)) <= set(range(5))
    np.testing.assert_array_equal(colour, np.array(COLOURS, dtype=np.uint8)[labels])


@pytest.mark.parametrize("meta,fragment", [
    ({"CLASSES": NAMES + ("bus",)}, "lists 6 class names but the weights predict 5 classes"),
    ({"PALETTE": [[0, 0, 0]] * 4}, "lists 4 palette colours but the weights predict 5"),
    ({"PALETTE": [[0, 0, 300]] * 5}, "palette holds [0, 0, 300], not an RGB colour"),
    ({"CLASSES": "sky road"}, "class names are str, not a list of names"),
    ({"config": "model = dict(decode_head=[dict(num_classes=5), dict(num_classes=5)])\n"
               "num_classes = 5\nimg_norm_cfg = dict(mean=[123.675, 116.28, 103.53], "
               "std=[58.395, 57.12, 57.375], to_rgb=False)"},
     "states input normalisation BGR, (pixel / 1 - mean)"),
    ({"config": "num_classes = 8"}, "says 8 classes but the weights' classifier predicts 5"),
])
def test_mmseg_metadata_contradicting_the_weights(mm_tiny, tmp_path, meta, fragment):
    _, state = mm_tiny
    path = tmp_path / "bad_meta.pth"
    torch.save({"meta": meta, "state_dict": state}, path)
    _one_line_error(RUNNER.invoke(app, ["export", str(path), "-o", str(tmp_path / "o.onnx"),
                                        "--no-verify"]), fragment)
    assert not (tmp_path / "o.onnx").exists()


def test_mmseg_config_text_that_agrees_is_accepted(mm_tiny, tmp_path):
    _, state = mm_tiny
    path = tmp_path / "agrees.pth"
    config = ("num_classes = 5\ndata_preprocessor = dict(type='SegDataPreProcessor', "
              "mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)")
    torch.save({"meta": {"cfg": config}, "state_dict": state}, path)
    source = load_checkpoint(path).source
    assert source.num_classes == 5 and source.normalisation.channels is ChannelOrder.rgb


# ---- openseg.pytorch's config_dict -------------------------------------------------------------

def _openseg_config(**changes) -> dict:
    config = {"network": {"model_name": "base_ocnet", "backbone": "deepbase_resnet50_dilated8",
                          "bn_type": "inplace_abn"},
              "data": {"num_classes": 5, "input_mode": "BGR"},
              "normalize": {"div_value": 1.0, "mean": [102.9801, 115.9465, 122.7717],
                            "std": [1.0, 1.0, 1.0]},
              "dataset": "other"}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    return config


@pytest.fixture(scope="module")
def openseg_state() -> dict[str, torch.Tensor]:
    from exporters.synthetic import synthetic_model

    family = _family("openseg_resnet")
    network = synthetic_model(family.example_config(num_classes=5, head="base_ocnet"), seed=1,
                              calibrate=False)
    return {f"module.{key}": value for key, value in network.state_dict().items()}


def _save_openseg(path: Path, state: dict, **changes) -> Path:
    torch.save({"config_dict": _openseg_config(**changes), "state_dict": state}, path)
    return path


def test_openseg_config_dict_is_read(openseg_state, tmp_path):
    path = _save_openseg(tmp_path / "os.pth", openseg_state)
    checkpoint = load_checkpoint(path)
    source = checkpoint.source
    assert (source.framework, source.model_name, source.bn_type, source.num_classes) == \
        ("openseg.pytorch", "base_ocnet", "inplace_abn", 5)
    assert source.normalisation.channels is ChannelOrder.bgr
    assert checkpoint.layout == ("openseg.pytorch checkpoint ('config_dict' + 'state_dict'), "
                                 "keys prefixed 'module.'")
    # As stored with --batch-norm plain; InPlace-ABN scales |w| + eps by default (next test).
    plain = load_checkpoint(path, batch_norm=BatchNormMode.plain)
    stored = {key[len("module."):]: value for key, value in openseg_state.items()}
    assert all(torch.equal(plain.state_dict[key], value) for key, value in stored.items())
    assert not any("InPlaceABN" in note for note in plain.notes)


def test_openseg_inplace_abn_scales_follow_bn_type(openseg_state, tmp_path):
    path = _save_openseg(tmp_path / "abn.pth", openseg_state)
    checkpoint = load_checkpoint(path)
    key = next(k for k in checkpoint.state_dict if k.endswith(".running_var"))[: -len("running_var")]
    stored = openseg_state[f"module.{key}weight"]
    assert torch.allclose(checkpoint.state_dict[f"{key}weight"], stored.abs() + 1e-5)
    assert any("bn_type is 'inplace_abn'" in note for note in checkpoint.notes)


def test_info_on_an_openseg_checkpoint(openseg_state, tmp_path):
    path = _save_openseg(tmp_path / "os.pth", openseg_state)
    result = RUNNER.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    for fragment in ("openseg.pytorch: model base_ocnet, backbone deepbase_resnet50_dilated8, "
                     "bn_type inplace_abn, num_classes 5", "the network reads BGR", "std (1, 1, 1)",
                     "as the checkpoint states",
                     "class_0", "would export", "os.onnx", "keys prefixed 'module.'"):
        assert fragment in result.stdout, fragment


@pytest.mark.parametrize("changes,fragment", [
    ({"data__num_classes": 7}, "says 7 classes but the weights' classifier predicts 5"),
    ({"network__model_name": "hrnet_w48_ocr"}, "names model 'hrnet_w48_ocr'"),
    ({"network__model_name": "spatial_ocrnet"}, "names model 'spatial_ocrnet'"),
    ({"data__input_mode": "RGB"}, "states input normalisation RGB, (pixel / 1 - mean)"),
    ({"network__bn_type": "torchbn"}, "says bn_type 'torchbn' but the weights' key layout is that "
                                      "of bn_type 'inplace_abn'"),
    ({"normalize__div_value": 255.0}, "states input normalisation BGR, (pixel / 255 - mean)"),
    ({"data__num_classes": "five"}, "config_dict['data']['num_classes'] is 'five', not a number"),
    ({"normalize__mean": [1.0, 2.0]}, "config_dict['normalize']['mean'] is [1.0, 2.0], not three"),
    ({"data__input_mode": "YUV"}, "input_mode'] is 'YUV'; expected 'BGR' or 'RGB'"),
])
def test_openseg_config_contradicting_the_weights(openseg_state, tmp_path, changes, fragment):
    path = _save_openseg(tmp_path / "bad.pth", openseg_state, **changes)
    out = tmp_path / "bad.onnx"
    _one_line_error(RUNNER.invoke(app, ["export", str(path), "-o", str(out), "--no-verify"]),
                    fragment)
    assert not out.exists()


# ---- networks of no supported family -----------------------------------------------------------

def test_deeplab_names_the_closest_family(tmp_path):
    deeplab = {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7),
               "backbone.bn1.weight": torch.ones(64),
               "backbone.layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1),
               "backbone.layer4.0.conv1.weight": torch.zeros(512, 1024, 1, 1),
               "classifier.0.convs.0.0.weight": torch.zeros(256, 2048, 1, 1),
               "classifier.4.weight": torch.zeros(21, 256, 1, 1)}
    path = tmp_path / "deeplabv3.pth"
    torch.save(deeplab, path)
    line = _one_line_error(RUNNER.invoke(app, ["export", str(path)]),
                           "is not a checkpoint ocr-deploy can export: the closest model family is")
    assert "lacks" in line or "looks like" in line


def test_openseg_isanet_names_the_closest_family(openseg_state, tmp_path):
    isanet = {key: value for key, value in openseg_state.items()
              if key.startswith("module.backbone.")}
    isanet["module.isa_head.0.weight"] = torch.zeros(32, 64, 3, 3)
    isanet["module.cls.weight"] = torch.zeros(5, 32, 1, 1)
    path = _save_openseg(tmp_path / "isanet.pth", isanet, network__model_name="isanet")
    line = _one_line_error(RUNNER.invoke(app, ["export", str(path)]),
                           "the closest model family is openseg.pytorch OCNet/OCR on dilated ResNet")
    assert "ISA-Net" in line or "lacks" in line


def test_numpy_palette_is_left_out_not_unpickled(mm_tiny, tmp_path):
    _, state = mm_tiny
    path = tmp_path / "np_palette.pth"
    torch.save({"meta": {"CLASSES": NAMES, "PALETTE": [np.array(c) for c in COLOURS]},
                "state_dict": state}, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.source.classes == NAMES and checkpoint.source.palette is None
    assert any("stores its palette as numpy objects" in note for note in checkpoint.notes)
