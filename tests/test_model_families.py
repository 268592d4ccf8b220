"""The FAMILIES table: one shared contract test run for every family, the closest-family error,
input normalisation from framework statements, and metadata written before families existed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from exporters.checkpoints import identify_family, load_checkpoint
from exporters.export_job import ExportRequest, build_meta
from exporters.models import FAMILIES, family_named, family_of, rank_families
from exporters.models.base import ChannelOrder, Normalisation
from exporters.models.hrnet_ocr import HRNetOCRFamily
from exporters.onnx_export import DeployGraph
from ocr_deploy.errors import CheckpointError, ModelFileError
from ocr_deploy.meta import InputSpec, ModelMeta
from ocr_deploy.preprocess import normalize_frames
from ocr_deploy.testframes import synthetic_frame

CLASSES = 5
HEIGHT, WIDTH = 64, 96
FAMILY_KEYS = sorted(FAMILIES)


@pytest.fixture(scope="module", params=FAMILY_KEYS)
def built(request, tmp_path_factory):
    """(family, config, network, checkpoint file) for each family's example configuration."""
    from exporters.synthetic import synthetic_model

    family = FAMILIES[request.param]
    config = family.example_config(num_classes=CLASSES)
    network = synthetic_model(config, seed=0, calibration_size=(HEIGHT, WIDTH))
    path = tmp_path_factory.mktemp(request.param) / "weights.pth"
    torch.save(network.state_dict(), path)
    return family, config, network, path


def _network_input(family, config, images_rgb: torch.Tensor) -> torch.Tensor:
    channels = family.output_contract(family.network_spec(config)).normalisation.channels
    return images_rgb.flip(1) if channels is ChannelOrder.bgr else images_rgb


def test_family_recognises_its_own_state_dict(built):
    family, _, network, _ = built
    weights = network.state_dict()
    verdict = family.match(weights)
    assert verdict.matched and verdict.score == 1.0 and verdict.look_alikes == ()
    assert identify_family(weights, Path(f"{family.key}.pth")) is family
    others = [other for key, other in FAMILIES.items() if key != family.key]
    assert not any(other.match(weights).matched for other in others)


def test_configuration_round_trips_through_shapes(built):
    family, config, network, _ = built
    inferred = family.infer_config(network.state_dict())
    assert inferred == config
    assert family.network_spec(inferred) == family.network_spec(config)
    assert family_of(inferred) is family
    spec = family.network_spec(config)
    assert (spec.family, spec.title, spec.num_classes) == (family.key, family.title, CLASSES)
    json.dumps(spec.settings)  # settings travel as JSON


def test_checkpoint_builds_and_loads_strictly(built):
    family, config, network, path = built
    checkpoint = load_checkpoint(path)
    assert checkpoint.family is family and checkpoint.config == config
    loaded = checkpoint.build_model()
    assert not loaded.training
    images = torch.randn(1, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        for mine, theirs in zip(loaded(images), network.eval()(images), strict=True):
            assert torch.equal(mine, theirs)
    weights = dict(network.state_dict())
    name, tensor = next(iter(weights.items()))
    weights[name] = torch.zeros(tensor.shape[0] + 1, *tensor.shape[1:], dtype=tensor.dtype)
    with pytest.raises(CheckpointError, match=rf"do not fit {family.title} .*1 mis-shaped"):
        family.load(config, weights)


def test_output_contract_names_the_segmentation(built):
    family, config, network, path = built
    contract = family.output_contract(family.network_spec(config))
    images = torch.randn(2, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        segmentation = contract.segmentation(network.eval()(images))
    stride = contract.output_stride
    # ResNet stems with a ceil_mode max-pool (openseg, OCNet.pytorch) give H/stride + 1 rows.
    assert segmentation.shape[:2] == (2, CLASSES)
    assert segmentation.shape[2] in (HEIGHT // stride, HEIGHT // stride + 1)
    assert segmentation.shape[3] in (WIDTH // stride, WIDTH // stride + 1)

    checkpoint = load_checkpoint(path)
    request = ExportRequest(weights=path, input_format="normalized", output_kind="logits")
    meta = build_meta(checkpoint, request, None, [])
    assert meta.network == family.network_spec(config)
    assert (meta.input.mean, meta.input.std) == (contract.normalisation.mean,
                                                 contract.normalisation.std)
    graph = DeployGraph(checkpoint.build_model(), meta).eval()
    with torch.no_grad():
        (logits,) = graph(images)
        scores = contract.segmentation(network(_network_input(family, config, images)))
    expected = F.interpolate(scores, size=(HEIGHT, WIDTH), mode="bilinear",
                             align_corners=contract.align_corners) if stride != 1 else scores
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)


def test_raw_frames_are_normalised_as_the_family_was_trained(built):
    """uint8 BGR frames through the graph equal the runtime's normalisation of the same frames."""
    family, _, _, path = built
    checkpoint = load_checkpoint(path)
    raw = build_meta(checkpoint, ExportRequest(weights=path, output_kind="logits"), None, [])
    normalized = build_meta(checkpoint, ExportRequest(weights=path, output_kind="logits",
                                                      input_format="normalized"), None, [])
    model = checkpoint.build_model()
    frames = np.stack([synthetic_frame(HEIGHT, WIDTH, seed=seed) for seed in (1, 2)])
    with torch.no_grad():
        (from_raw,) = DeployGraph(model, raw).eval()(torch.from_numpy(frames))
        images = torch.from_numpy(normalize_frames(frames, normalized.input))
        (from_normalized,) = DeployGraph(model, normalized).eval()(images)
    # Float rounding differs between the two normalisations by ~1e-4 of logits spread over a few
    # units; a swapped channel or a wrong mean/std would differ by whole units.
    torch.testing.assert_close(from_raw, from_normalized, rtol=0, atol=2e-3)
    assert (from_raw.argmax(1) == from_normalized.argmax(1)).float().mean() >= 0.999


def test_synthetic_weights_give_trained_looking_logits(built):
    """The family's classifiers are rescaled so every output spreads over a few units."""
    family, config, network, _ = built
    frame = synthetic_frame(HEIGHT, WIDTH, seed=7)[None]
    norm = family.output_contract(family.network_spec(config)).normalisation
    images = torch.from_numpy(normalize_frames(frame, InputSpec(mean=norm.mean, std=norm.std)))
    with torch.no_grad():
        outputs = network(_network_input(family, config, images))
    spreads = [float(outputs[index].std()) for index in family.classifiers(network)]
    assert len(spreads) >= 1 and all(1.0 < spread < 10.0 for spread in spreads), spreads


def _foreign_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """HRNet-OCR weights without the OCR head: a backbone some other head was trained on."""
    return {key: value for key, value in network.state_dict().items()
            if not key.startswith(("conv3x3_ocr", "ocr_distri_head", "cls_head"))}


def test_no_family_error_names_the_closest_family(tiny_model, tmp_path):
    weights = _foreign_state(tiny_model)
    ranked = rank_families(weights)
    family, verdict = ranked[0]
    assert family.key == "hrnet_ocr" and not verdict.matched
    assert verdict.score == pytest.approx(3 / 6)
    torch.save(weights, tmp_path / "backbone.pth")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "backbone.pth")
    message = str(caught.value)
    assert "closest model family is HRNet-OCR" in message
    assert "lacks 'conv3x3_ocr.0.weight' (and 2 more) of the 6 keys HRNet-OCR needs" in message
    assert "keys like 'cls_head.weight'" in message and "\n" not in message


def test_look_alike_keys_explain_the_mismatch(tmp_path):
    mmseg = {"backbone.conv1.weight": torch.zeros(64, 3, 3, 3),
             "decode_head.1.conv_seg.weight": torch.zeros(19, 512, 1, 1)}
    verdict = FAMILIES["hrnet_ocr"].match(mmseg)
    assert verdict.score == 0.0 and "mmsegmentation checkpoint" in verdict.reason
    torch.save(mmseg, tmp_path / "mmseg.pth")
    with pytest.raises(CheckpointError, match="looks like an mmsegmentation checkpoint"):
        load_checkpoint(tmp_path / "mmseg.pth")


class _NarrowerHRNetOCR(HRNetOCRFamily):
    """HRNet-OCR registered a second time under another key, with fewer required keys."""

    key = "hrnet_ocr_backbone_only"
    title = "HRNet backbone"
    required_keys = ("conv1.weight", "layer1.0.conv1.weight", "transition1.0.0.weight")


def test_closest_of_several_families_and_ambiguity(tiny_model, monkeypatch):
    monkeypatch.setitem(FAMILIES, _NarrowerHRNetOCR.key, _NarrowerHRNetOCR())
    partial = {key: value for key, value in _foreign_state(tiny_model).items()
               if not key.startswith("transition1.0.")}
    ranked = rank_families(partial)[:2]
    assert [family.key for family, _ in ranked] == ["hrnet_ocr_backbone_only", "hrnet_ocr"]
    assert [round(verdict.score, 3) for _, verdict in ranked] == [0.667, 0.333]
    with pytest.raises(CheckpointError, match="closest model family is HRNet backbone, but it "
                                              "lacks 'transition1.0.0.weight'"):
        identify_family(partial, Path("partial.pth"))
    with pytest.raises(CheckpointError, match="fits both HRNet-OCR and HRNet backbone"):
        identify_family(tiny_model.state_dict(), Path("full.pth"))


@pytest.mark.parametrize("statement", [
    # [channel order fed to the network, divisor, mean, std], mean/std in that order.
    ("bgr", 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # openseg HRNet
    ("bgr", 1.0, (102.9801, 115.9465, 122.7717), (1.0, 1.0, 1.0)),  # openseg ResNet
    ("rgb", 1.0, (102.9801, 115.9465, 122.7717), (1.0, 1.0, 1.0)),  # OCNet.pytorch
    ("rgb", 1.0, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),  # mmsegmentation
])
def test_normalisation_from_framework_statements(statement):
    order, divisor, mean, std = statement
    norm = Normalisation.from_framework(channels=ChannelOrder(order), divisor=divisor,
                                        mean=mean, std=std)
    frame = synthetic_frame(8, 12, seed=4)[None].astype(np.float64)  # BGR as OpenCV reads
    fed = frame if order == "bgr" else frame[..., ::-1]
    theirs = (fed / divisor - np.array(mean)) / np.array(std)
    ours_rgb = (frame[..., ::-1] / 255.0 - np.array(norm.mean)) / np.array(norm.std)
    ours = ours_rgb[..., ::-1] if norm.channels is ChannelOrder.bgr else ours_rgb
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


# Metadata as schema 1 wrote it (the shipped demo model's, shortened to three classes): the OCR
# widths as fields of "network", and no family.
OLD_META_JSON = (
    '{"network":{"variant":"tiny","num_classes":3,"mid_channels":32,"key_channels":16,'
    '"align_corners":true},"dataset":{"name":"generic","classes":["road","sidewalk","building"],'
    '"palette":[[128,64,128],[244,35,232],[70,70,70]],"test_policy":{"kind":"native",'
    '"size":null},"flip_pairs":[]},"input":{"format":"raw","name":"image","mean":[0.485,0.456,'
    '0.406],"std":[0.229,0.224,0.225],"batch":null,"height":null,"width":null,"min_side":32},'
    '"output":{"kind":"labels","name":"labels","dtype":"uint8"},"provenance":{"checkpoint_name":'
    '"x.pth","checkpoint_sha256":"58e9e36c1574d1b7aec9d80810556eb5bf6d8ba68c7cd15d2df76a672322b506",'
    '"toolkit_version":"0.1.0","precision":"fp32","notes":[]},"schema_version":1}')


def test_old_metadata_reads_as_hrnet_ocr(tmp_path):
    from exporters.synthetic import save_release, synthetic_model

    old = ModelMeta.from_json(OLD_META_JSON)
    network = old.network
    assert (network.family, network.title, network.variant) == ("hrnet_ocr", "HRNet-OCR", "tiny")
    assert network.settings == {"mid_channels": 32, "key_channels": 16}
    assert network.describe() == ("HRNet-OCR tiny, K=3, mid_channels 32, key_channels 16, "
                                  "align_corners=True")
    assert ModelMeta.from_json(old.to_json()) == old
    contract = family_named(network.family).output_contract(network)
    assert (contract.segmentation_index, contract.output_stride) == (1, 4)
    # Today's exporter records the same network for the same weights, and builds the same graph.
    family = FAMILIES["hrnet_ocr"]
    model = synthetic_model(family.example_config(num_classes=3), calibration_size=(64, 64))
    checkpoint = load_checkpoint(save_release(model, tmp_path / "k3.pth"))
    new = build_meta(checkpoint, ExportRequest(weights=checkpoint.path), None, [])
    assert new.network == old.network and new.input == old.input
    frames = torch.from_numpy(synthetic_frame(HEIGHT, WIDTH, seed=2)[None])
    with torch.no_grad():
        from_old = DeployGraph(model, old).eval()(frames)
        from_new = DeployGraph(model, new).eval()(frames)
    assert from_old[0].shape == (1, HEIGHT, WIDTH)
    for mine, theirs in zip(from_old, from_new, strict=True):
        assert torch.equal(mine, theirs)


def test_shipped_demo_model_has_old_metadata():
    from ocr_deploy.assets import demo_model
    from ocr_deploy.backends import read_meta

    network = read_meta(demo_model()).network
    assert network.family == "hrnet_ocr" and network.variant == "w18-small-v1"
    assert network.settings == {"mid_channels": 128, "key_channels": 64}


def test_unknown_family_in_metadata_says_upgrade():
    data = json.loads(OLD_META_JSON)
    data["network"] = {"family": "pyramid_ocnet", "title": "Pyramid-OC", "variant": "r101",
                       "num_classes": 3, "align_corners": True, "settings": {}}
    meta = ModelMeta.from_json(json.dumps(data))
    with pytest.raises(ModelFileError, match="family 'pyramid_ocnet'.*upgrade ocr-deploy"):
        DeployGraph(torch.nn.Identity(), meta)
