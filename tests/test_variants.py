"""Every variant of the table is built, saved and recognised from its tensor shapes alone."""

from __future__ import annotations

import pytest
import torch

from exporters.checkpoints import load_checkpoint
from exporters.hrnet_ocr import HRNetOCR
from exporters.variants import VARIANTS, OcrConfig

# Published sizes (K=19, MID/KEY 512/256): millions of parameters and state-dict keys.
PUBLISHED = {"w48": (70.37, 1890), "w32": (32.95, 1890), "w18": (12.08, 1890),
             "w18-small-v2": (6.38, 924), "w18-small-v1": (3.84, 486)}


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_parameter_and_key_counts_match_published(variant):
    model = HRNetOCR(OcrConfig.from_variant(variant, num_classes=19))
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(millions, 2) == PUBLISHED[variant][0]
    assert len(model.state_dict()) == PUBLISHED[variant][1]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_inferred_after_save_and_reload(variant, tmp_path):
    # Small OCR widths and an odd K keep files small; the backbone is the variant's own.
    config = OcrConfig.from_variant(variant, num_classes=7, mid_channels=48, key_channels=24,
                                    align_corners=False)
    torch.manual_seed(0)
    model = HRNetOCR(config)
    path = tmp_path / f"{variant}.pth"
    torch.save({f"model.{k}": v for k, v in model.state_dict().items()}, path)
    checkpoint = load_checkpoint(path, align_corners=False)
    assert checkpoint.config == config
    assert checkpoint.config.variant == variant
    loaded = checkpoint.build_model()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_unknown_layout_is_named_custom(tmp_path):
    from exporters.variants import BackboneConfig, StageConfig

    tiny = VARIANTS["tiny"]
    custom = BackboneConfig(tiny.stage1_blocks, tiny.stage1_channels, tiny.stage2, tiny.stage3,
                            StageConfig(2, (1, 1, 1, 1), tiny.stage4.channels))
    model = HRNetOCR(OcrConfig(custom, num_classes=3, mid_channels=16, key_channels=8))
    torch.save(model.state_dict(), tmp_path / "custom.pt")
    checkpoint = load_checkpoint(tmp_path / "custom.pt")
    assert checkpoint.config.variant == "custom"
    assert checkpoint.config.backbone.stage4.modules == 2
