"""Containers, prefixes, file formats, InPlaceABN-era files and the reference YAML."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from exporters.checkpoints import INPLACE_ABN_EPS, BatchNormMode, load_checkpoint
from exporters.reference_yaml import cross_check, read_reference_yaml
from ocr_deploy.errors import CheckpointError, ConfigError


def _state(model) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


LAYOUTS = {
    "flat": lambda s: s,
    "release": lambda s: {**{f"model.{k}": v for k, v in s.items()},
                          "loss.criterion.weight": torch.ones(19)},
    "dataparallel": lambda s: {f"module.{k}": v for k, v in s.items()},
    "dataparallel_fullmodel": lambda s: {**{f"module.model.{k}": v for k, v in s.items()},
                                         "module.loss.criterion.weight": torch.ones(19)},
    "training_checkpoint": lambda s: {"epoch": 3, "best_mIoU": 0.5, "optimizer": {"state": {}},
                                      "state_dict": {f"model.{k}": v for k, v in s.items()}},
    "model_container": lambda s: {"model": s},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("suffix", [".pth", ".pth.tar", ".pt"])
def test_layouts_load_identical_weights(tiny_model, tmp_path, layout, suffix):
    path = tmp_path / f"weights{suffix}"
    torch.save(LAYOUTS[layout](_state(tiny_model)), path)
    checkpoint = load_checkpoint(path)
    reference = tiny_model.state_dict()
    assert set(checkpoint.state_dict) == set(reference)
    assert all(torch.equal(checkpoint.state_dict[k], reference[k]) for k in reference)
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(checkpoint.build_model()(image)[1], tiny_model(image)[1])


def test_safetensors(tiny_model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in tiny_model.state_dict().items()}, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.config.variant == "tiny"
    assert "keys prefixed 'model.'" in checkpoint.layout


def test_mixed_prefixes_are_refused(tiny_model, tmp_path):
    state = {f"model.{k}" if i % 2 else k: v for i, (k, v) in enumerate(_state(tiny_model).items())}
    torch.save(state, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match="mixed prefixes"):
        load_checkpoint(tmp_path / "mixed.pth")


def _abn_state(tiny_model) -> dict[str, torch.Tensor]:
    """As a torch 0.4 InPlaceABN file: no num_batches_tracked, some stored scales negative."""
    state = {k: v for k, v in _state(tiny_model).items() if not k.endswith("num_batches_tracked")}
    state["bn1.weight"] = -state["bn1.weight"]
    return state


def test_inplace_abn_era_file_is_converted(tiny_model, tmp_path):
    torch.save(_abn_state(tiny_model), tmp_path / "abn_torch04.pth")
    checkpoint = load_checkpoint(tmp_path / "abn_torch04.pth")
    expected = tiny_model.state_dict()["bn1.weight"].abs() + INPLACE_ABN_EPS
    assert torch.allclose(checkpoint.state_dict["bn1.weight"], expected, rtol=0, atol=1e-7)
    assert any("InPlaceABN" in note for note in checkpoint.notes)
    checkpoint.build_model()  # strict load works without num_batches_tracked in the file


def test_inplace_abn_conversion_can_be_refused(tiny_model, tmp_path):
    torch.save(_abn_state(tiny_model), tmp_path / "abn.pth")
    checkpoint = load_checkpoint(tmp_path / "abn.pth", batch_norm=BatchNormMode.plain)
    assert torch.equal(checkpoint.state_dict["bn1.weight"], -tiny_model.state_dict()["bn1.weight"])
    assert checkpoint.notes == ()


def test_negative_scales_in_modern_file_warn(tiny_model, tmp_path):
    state = _state(tiny_model)
    state["bn1.weight"] = -state["bn1.weight"]
    torch.save(state, tmp_path / "negative.pth")
    checkpoint = load_checkpoint(tmp_path / "negative.pth")
    assert torch.equal(checkpoint.state_dict["bn1.weight"], state["bn1.weight"])
    assert any("--batch-norm inplace-abn" in note for note in checkpoint.notes)


def _reference_yaml(path: Path, *, channels4: str = "[4, 8, 16, 32]", align: str = "false",
                    dataset: str = "cityscapes") -> Path:
    path.write_text(textwrap.dedent(f"""\
        DATASET:
          DATASET: {dataset}
          NUM_CLASSES: 19
        MODEL:
          NAME: seg_hrnet_ocr
          ALIGN_CORNERS: {align}
          OCR: {{MID_CHANNELS: 32, KEY_CHANNELS: 16, DROPOUT: 0.05, SCALE: 0.01}}
          EXTRA:
            STAGE1: {{NUM_MODULES: 1, NUM_RANCHES: 1, BLOCK: BOTTLENECK, NUM_BLOCKS: [1],
                      NUM_CHANNELS: [8], FUSE_METHOD: SUM}}
            STAGE2: {{NUM_MODULES: 1, NUM_BRANCHES: 2, BLOCK: BASIC, NUM_BLOCKS: [1, 1],
                      NUM_CHANNELS: [4, 8], FUSE_METHOD: SUM}}
            STAGE3: {{NUM_MODULES: 1, NUM_BRANCHES: 3, BLOCK: BASIC, NUM_BLOCKS: [1, 1, 1],
                      NUM_CHANNELS: [4, 8, 16], FUSE_METHOD: SUM}}
            STAGE4: {{NUM_MODULES: 1, NUM_BRANCHES: 4, BLOCK: BASIC, NUM_BLOCKS: [1, 1, 1, 1],
                      NUM_CHANNELS: {channels4}, FUSE_METHOD: SUM}}
        """))
    return path


def test_reference_yaml_matches_and_sets_align_corners(tiny_checkpoint, tmp_path):
    experiment = read_reference_yaml(_reference_yaml(tmp_path / "exp.yaml"))
    assert experiment.dataset == "cityscapes"
    assert experiment.config.align_corners is False
    cross_check(experiment, load_checkpoint(tiny_checkpoint).config, tmp_path / "exp.yaml")


def test_reference_yaml_disagreeing_with_weights(tiny_checkpoint, tmp_path):
    path = _reference_yaml(tmp_path / "exp.yaml", channels4="[4, 8, 16, 64]")
    with pytest.raises(ConfigError, match=r"STAGE4 NUM_CHANNELS is \[4, 8, 16, 64\] in the YAML"):
        cross_check(read_reference_yaml(path), load_checkpoint(tiny_checkpoint).config, path)


def test_yaml_of_another_model_is_refused(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("MODEL:\n  NAME: seg_hrnet\nDATASET:\n  NUM_CLASSES: 19\n")
    with pytest.raises(ConfigError, match="not HRNet-OCR"):
        read_reference_yaml(path)
