"""`ocr-deploy explain`: the numbers its hooks read are the object-context block's own.

On a tiny synthetic network of each family: the soft object regions sum to 1 over positions,
each pixel's relation (OCR) or attention (OCNet) weights sum to 1, and they equal the softmax
recomputed here from the block's own key/query projections on the inputs it received. Figures
are written and readable; bad inputs are one line and exit code 1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cli.app import app
from exporters.explain import ExplainRequest
from exporters.explain.job import explain_frame, load_backend
from exporters.hrnet_ocr import ObjectAttentionBlock, SpatialGather
from exporters.mmseg_ocr import ObjectAttentionBlock as MMSegObjectAttentionBlock
from exporters.models import FAMILIES
from exporters.oc_heads import PyramidSelfAttentionBlock, SelfAttentionBlock
from ocr_deploy.testframes import synthetic_frame

CLASSES = 5
HEIGHT, WIDTH = 64, 96
PIXELS = ((3, 4), (50, 30), (95, 63))
# (family, head): every OCR variant (reference, openseg, ASP-OCR, mmseg) and every OCNet block.
# (HRNet-ASP-OCR's ASPOCR head is tested on ResNet: the same module, four times cheaper to build.)
CASES = [("hrnet_ocr", None), ("mmseg_resnet_ocr", None), ("openseg_resnet", "spatial_asp_ocrnet"),
         ("openseg_resnet", "asp_ocnet"), ("ocnet_resnet", "base"), ("ocnet_resnet", "pyramid"),
         ("ocnet_resnet", "asp")]


@pytest.fixture(scope="module")
def frame_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("explain_frame") / "street.png"
    cv2.imwrite(str(path), synthetic_frame(HEIGHT, WIDTH, seed=3))
    return path


@pytest.fixture(scope="module")
def synthetic_weights(tmp_path_factory) -> Callable[[str, str | None], Path]:
    """make(family, head): a checkpoint of the family's example network, built once per module."""
    from exporters.synthetic import synthetic_model

    folder = tmp_path_factory.mktemp("explain_weights")

    @functools.cache
    def make(family_key: str, head: str | None) -> Path:
        family = FAMILIES[family_key]
        options = {"head": head} if head else {}
        config = family.example_config(num_classes=CLASSES, **options)
        network = synthetic_model(config, seed=0, calibration_size=(HEIGHT, WIDTH))
        path = folder / f"{family_key}_{head or 'default'}.pth"
        torch.save(network.state_dict(), path)
        return path

    return make


@pytest.fixture(params=CASES, ids=[f"{key}-{head}" if head else key for key, head in CASES])
def weights(request, synthetic_weights) -> Path:
    return synthetic_weights(*request.param)


def _inputs_of(network: torch.nn.Module, *kinds: type) -> list[tuple[torch.nn.Module, tuple]]:
    """A pre-hook on every module of `kinds`: what each received, for the independent check."""
    seen: list[tuple[torch.nn.Module, tuple]] = []
    for module in network.modules():
        if isinstance(module, kinds):
            module.register_forward_pre_hook(lambda module, inputs: seen.append((module, inputs)))
    return seen


def _softmax(query: torch.Tensor, key: torch.Tensor, channels: int) -> torch.Tensor:
    """[B, C, n] x [B, C, m] -> [B, n, m], softmax over m of similarity / sqrt(C)."""
    return torch.softmax(query.transpose(1, 2) @ key / channels ** 0.5, dim=-1)


def _check_ocr(explanation, network, gathers, blocks) -> None:
    ((_, (_, logits)),) = gathers
    expected_regions = torch.softmax(logits.flatten(2), dim=2)[0].double().numpy()
    regions = explanation.soft_regions
    np.testing.assert_allclose(regions.sum(axis=(1, 2)), 1.0, atol=1e-5)
    np.testing.assert_allclose(regions.reshape(CLASSES, -1), expected_regions, rtol=1e-6, atol=1e-12)
    ((block, (pixels, objects)),) = blocks
    with torch.no_grad():
        if isinstance(block, MMSegObjectAttentionBlock):
            query, key, channels = block.query_project(pixels), block.key_project(objects), block.channels
        else:
            query, key, channels = block.f_pixel(pixels), block.f_object(objects), block.key_channels
        relations = _softmax(query.flatten(2), key.flatten(2), channels)[0].double().numpy()
    width = pixels.shape[-1]
    for item in explanation.pixels:
        assert item.relations.shape == (CLASSES,)
        assert item.relations.sum() == pytest.approx(1.0, abs=1e-5)
        row, column = item.cell
        np.testing.assert_allclose(item.relations, relations[row * width + column], rtol=1e-5, atol=1e-9)


def _window(size: int, parts: int, position: int) -> slice:
    """The region of OCNet's partition holding `position`: steps of size // parts, the last
    region taking the remainder."""
    step = size // parts
    index = min(position // step, parts - 1)
    return slice(index * step, size if index == parts - 1 else (index + 1) * step)


def _check_ocnet(explanation, blocks) -> None:
    inputs = {id(block): x for block, (x,) in blocks}
    attention_blocks = {id(block): block for block, _ in blocks}
    for item in explanation.pixels:
        assert len(item.maps) == len(attention_blocks)
        for stage_map, block_id in zip(item.maps, inputs, strict=True):
            block, x = attention_blocks[block_id], inputs[block_id]
            pooled = F.max_pool2d(x, block.pool) if block.pool > 1 else x
            parts = block.parts if isinstance(block, PyramidSelfAttentionBlock) else 1
            height, width = pooled.shape[-2:]
            row, column = stage_map.cell
            rows, columns = _window(height, parts, row), _window(width, parts, column)
            with torch.no_grad():
                query, key, _ = block.projections(pooled[..., rows, columns])
                weights = _softmax(query.flatten(2), key.flatten(2), block.key_channels)[0]
            local = (row - rows.start) * (columns.stop - columns.start) + (column - columns.start)
            expected = np.zeros((height, width))
            expected[rows, columns] = weights[local].double().numpy().reshape(rows.stop - rows.start, -1)
            assert stage_map.parts == parts and stage_map.weights.sum() == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(stage_map.weights, expected, rtol=1e-5, atol=1e-9)


def test_hooked_numbers_equal_the_blocks_own_softmax(weights, frame_file, tmp_path):
    backend = load_backend(weights)
    network = backend.graph.network
    gathers = _inputs_of(network, SpatialGather)
    ocr_blocks = _inputs_of(network, ObjectAttentionBlock, MMSegObjectAttentionBlock)
    oc_blocks = _inputs_of(network, SelfAttentionBlock)
    request = ExplainRequest(weights=weights, image=frame_file, output=tmp_path, pixels=PIXELS)
    explanation = explain_frame(request, backend)
    assert [item.frame_xy for item in explanation.pixels] == list(PIXELS)
    if explanation.kind == "ocr":
        assert not oc_blocks
        _check_ocr(explanation, network, gathers, ocr_blocks)
    else:
        assert explanation.kind == "ocnet" and not gathers and explanation.soft_regions is None
        _check_ocnet(explanation, oc_blocks)


@pytest.fixture()
def two_families(synthetic_weights) -> dict[str, Path]:
    return {"ocr": synthetic_weights("hrnet_ocr", None), "pyramid": synthetic_weights("ocnet_resnet", "pyramid")}


@pytest.mark.parametrize("name, figures", [("ocr", {"regions.png", "relations.png", "summary.png"}),
                                           ("pyramid", {"attention.png", "summary.png"})])
def test_cli_writes_readable_figures_and_json(two_families, frame_file, tmp_path, name, figures):
    out = tmp_path / "explained"
    result = CliRunner().invoke(app, ["explain", str(two_families[name]), str(frame_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == figures | {"explain.json", ".ocr-deploy-outputs.json"}
    for figure in figures:
        image = cv2.imread(str(out / figure))
        assert image is not None and image.shape[0] > 100
    report = json.loads((out / "explain.json").read_text())
    assert report["pixels"] and all(pixel["reason"] for pixel in report["pixels"])
    assert sum(line.startswith("pixel ") for line in result.output.splitlines()) == len(report["pixels"])
    if name == "ocr":
        regions = report["soft_regions"]["regions"]
        assert [sum(map(sum, region["weights"])) for region in regions] == pytest.approx([1.0] * CLASSES, abs=1e-4)
        assert all(sum(pixel["relations"].values()) == pytest.approx(1.0, abs=1e-4) for pixel in report["pixels"])
    else:
        assert [stage["parts"] for stage in report["pixels"][0]["attention"]] == [1, 2, 3, 6]
    if name != "ocr":
        return
    # A rerun replaces its own outputs; a file of the user's is never replaced.
    rerun = CliRunner().invoke(app, ["explain", str(two_families[name]), str(frame_file), "-o", str(out),
                                     "--pixel", "10,10"])
    assert rerun.exit_code == 0, rerun.output
    (out / "summary.png").write_bytes(b"mine")
    refused = CliRunner().invoke(app, ["explain", str(two_families[name]), str(frame_file), "-o", str(out)])
    assert refused.exit_code == 1 and (out / "summary.png").read_bytes() == b"mine"


def _one_line_error(result) -> str:
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_bad_inputs_are_one_line(two_families, frame_file, tmp_path, monkeypatch):
    weights, out = str(two_families["ocr"]), str(tmp_path / "out")
    runner = CliRunner()
    outside = runner.invoke(app, ["explain", weights, str(frame_file), "-o", out, "--pixel", f"{WIDTH},0"])
    assert "outside the frame" in _one_line_error(outside)
    garbled = runner.invoke(app, ["explain", weights, str(frame_file), "-o", out, "--pixel", "3;4"])
    assert "X,Y" in _one_line_error(garbled)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert "cannot read" in _one_line_error(runner.invoke(app, ["explain", weights, str(broken), "-o", out]))
    monkeypatch.setattr("exporters.explain.capture.context_kind", lambda network: None)
    message = _one_line_error(runner.invoke(app, ["explain", weights, str(frame_file), "-o", out]))
    assert "HRNet-OCR has no object-context block" in message
    assert not (tmp_path / "out").exists()
