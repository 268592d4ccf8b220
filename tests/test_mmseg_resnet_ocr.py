"""mmsegmentation's OCRNet on ResNetV1c-D8. No framework fixture exists for this network, so the
checks are self-consistency ones: a ResNetV1c written here from mmseg's facts (key names, stem,
ceil_mode=False pool, contract_dilation) agrees with the family's backbone, the real r50/r101
configs are read back from shapes, and an mmseg-container checkpoint loads and exports verified."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from cli import app
from exporters.checkpoints import load_checkpoint
from exporters.mmseg_resnet import MMSegResNetOCR
from exporters.models import FAMILIES, rank_families
from exporters.models.mmseg_resnet_ocr import MMSegResNetOcrConfig
from exporters.resnet_configs import ResNetConfig
from ocr_deploy.backends import read_meta
from ocr_deploy.preprocess import normalize_frames
from ocr_deploy.testframes import synthetic_frame

FAMILY = FAMILIES["mmseg_resnet_ocr"]
CLASSES = 5
# 72x104: the stem gives 36x52, where a ceil_mode=True pool would give 19x27 instead of 18x26.
HEIGHT, WIDTH = 72, 104


class _Block(nn.Module):
    """mmseg's Bottleneck, style 'pytorch': the stride on the 3x3 conv."""

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample: bool):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                        nn.BatchNorm2d(planes * 4)) if downsample else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class _MMSegResNetV1c(nn.Module):
    """ResNetV1c(depth, strides=(1,2,1,1), dilations=(1,1,2,4), contract_dilation=True)."""

    def __init__(self, blocks: tuple[int, ...], base: int, stem: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(stem // 2), nn.ReLU(),
            nn.Conv2d(stem // 2, stem // 2, 3, 1, 1, bias=False), nn.BatchNorm2d(stem // 2), nn.ReLU(),
            nn.Conv2d(stem // 2, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem
        for index, (count, stride, dilation) in enumerate(zip(blocks, (1, 2, 1, 1), (1, 1, 2, 4), strict=True)):
            planes = base * 2 ** index
            first = dilation // 2 if dilation > 1 else dilation
            layer = [_Block(inplanes, planes, stride, first, stride != 1 or inplanes != planes * 4)]
            layer += [_Block(planes * 4, planes, 1, dilation, False) for _ in range(count - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
            inplanes = planes * 4

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        outs = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            outs.append(x)
        return outs[2], outs[3]


@pytest.fixture(scope="module")
def network():
    from exporters.synthetic import synthetic_model

    return synthetic_model(FAMILY.example_config(num_classes=CLASSES), seed=3, calibration_size=(HEIGHT, WIDTH))


def test_backbone_equals_resnet_v1c_written_from_mmseg_facts(network):
    config = network.config.backbone
    reference = _MMSegResNetV1c(config.blocks, config.width, config.width).eval()
    reference.load_state_dict(network.backbone.state_dict(), strict=True)  # same names and shapes
    image = torch.randn(1, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        for mine, theirs in zip(network.backbone(image), reference(image), strict=True):
            assert mine.shape[-2:] == (HEIGHT // 8, WIDTH // 8)
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


@pytest.mark.parametrize(("depth", "blocks"), [(50, (3, 4, 6, 3)), (101, (3, 4, 23, 3))])
def test_mmseg_r_d8_configs_read_from_shapes(depth, blocks):
    """configs/_base_/models/ocrnet_r50-d8.py (depth 101 in ocrnet_r101-d8_*), on the meta device."""
    config = MMSegResNetOcrConfig(ResNetConfig(blocks, 64, deep_stem=True, halve_first_dilation=True), 19)
    with torch.device("meta"):
        weights = dict(MMSegResNetOCR(config).state_dict())
        reference = _MMSegResNetV1c(blocks, 64, 64).state_dict()
    assert {key for key in weights if key.startswith("backbone.")} == {f"backbone.{key}" for key in reference}
    shapes = {"backbone.stem.0.weight": (32, 3, 3, 3), "backbone.stem.3.weight": (32, 32, 3, 3),
              "backbone.stem.6.weight": (64, 32, 3, 3), "backbone.layer4.2.conv3.weight": (2048, 512, 1, 1),
              "decode_head.0.convs.0.conv.weight": (256, 1024, 3, 3), "decode_head.0.conv_seg.weight": (19, 256, 1, 1),
              "decode_head.1.bottleneck.conv.weight": (512, 2048, 3, 3),
              "decode_head.1.object_context_block.query_project.0.conv.weight": (256, 512, 1, 1),
              "decode_head.1.conv_seg.weight": (19, 512, 1, 1)}
    assert {key: tuple(weights[key].shape) for key in shapes} == shapes
    assert [family.key for family, verdict in rank_families(weights) if verdict.matched] == [FAMILY.key]
    assert FAMILY.infer_config(weights) == config and config.variant == f"ocrnet_r{depth}-d8"


@pytest.fixture(scope="module")
def checkpoint_path(network, tmp_path_factory):
    path = tmp_path_factory.mktemp("mmseg_r_ocr") / "ocrnet_r-d8.pth"
    names = tuple(f"class{index}" for index in range(CLASSES))
    torch.save({"meta": {"mmseg_version": "0.11.0", "config": "# ocrnet_r101-d8\n", "CLASSES": names,
                         "PALETTE": [[index * 40, 0, 0] for index in range(CLASSES)], "iter": 40000},
                "state_dict": network.state_dict()}, path)
    return path


def test_mmseg_container_loads_strictly_and_reads_as_this_family(network, checkpoint_path):
    checkpoint = load_checkpoint(checkpoint_path)
    assert checkpoint.family is FAMILY and checkpoint.config == network.config
    assert checkpoint.source.classes == tuple(f"class{index}" for index in range(CLASSES))
    loaded = checkpoint.build_model()
    image = torch.randn(1, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        outputs, expected = loaded(image), network(image)
    for mine, theirs in zip(outputs, expected, strict=True):
        assert torch.equal(mine, theirs) and mine.shape[-2:] == (HEIGHT // 8, WIDTH // 8)
    others = {key: family.match(checkpoint.state_dict) for key, family in FAMILIES.items() if family is not FAMILY}
    assert not any(verdict.matched for verdict in others.values())


def test_cli_static_export_verifies_and_resizes_without_align_corners(network, checkpoint_path, tmp_path):
    import onnxruntime as ort

    output = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(checkpoint_path), "-o", str(output),
                                      "--height", str(HEIGHT), "--width", str(WIDTH), "--output", "logits"])
    assert result.exit_code == 0, result.output
    assert "verified" in result.stdout
    meta = read_meta(output)
    assert (meta.network.family, meta.network.variant) == (FAMILY.key, "ocrnet_r-1-1-2-1-w8-d8")
    assert meta.network.align_corners is False and meta.input.format == "raw"
    frame = synthetic_frame(HEIGHT, WIDTH, seed=11)
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    logits = session.run(None, {meta.input.name: frame[None]})[0]
    with torch.no_grad():
        out = network(torch.from_numpy(normalize_frames(frame[None], meta.input)))[1]
        expected = F.interpolate(out, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(logits, expected.numpy(), rtol=0, atol=1e-3 * float(expected.std()))
    assert (logits.argmax(1) == expected.argmax(1).numpy()).mean() >= 0.999
