"""Dataset presets: sizes, palettes, inference from K, and the generic fallback."""

from __future__ import annotations

import pytest

from ocr_deploy.errors import ConfigError
from ocr_deploy.presets import generated_palette, load_preset, preset_names, resolve_preset

SIZES = {"cityscapes": 19, "ade20k": 150, "pascal-context-59": 59, "pascal-context-60": 60,
         "cocostuff": 171, "lip": 20}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_preset_sizes_and_palettes(name):
    preset = load_preset(name)
    assert preset.num_classes == SIZES[name] == len(preset.palette)
    assert len(set(preset.classes)) == preset.num_classes
    assert all(0 <= channel <= 255 for colour in preset.palette for channel in colour)
    assert all(name == name.strip() for name in preset.classes)


def test_reference_facts():
    cityscapes = load_preset("cityscapes")
    assert cityscapes.classes[13] == "car" and cityscapes.palette[13] == (0, 0, 142)
    assert cityscapes.test_policy.kind == "native"
    assert load_preset("ade20k").test_policy.size == 520
    lip = load_preset("lip")
    assert lip.test_policy.kind == "squash" and lip.test_policy.size == 473
    assert lip.flip_pairs == ((14, 15), (16, 17), (18, 19))
    assert lip.classes[14] == "Left-arm" and lip.classes[15] == "Right-arm"
    context60 = load_preset("pascal-context-60")
    assert context60.classes[0] == "background"
    assert context60.classes[1:] == load_preset("pascal-context-59").classes


@pytest.mark.parametrize("classes,expected", [(19, "cityscapes"), (150, "ade20k"), (171, "cocostuff"),
                                              (20, "lip"), (59, "pascal-context-59")])
def test_inferred_from_class_count(classes, expected):
    preset, note = resolve_preset(None, classes)
    assert preset.name == expected and expected in note


def test_unknown_class_count_gets_generic_names_and_distinct_colours():
    preset, note = resolve_preset(None, 7)
    assert preset.name == "generic" and preset.classes[6] == "class_6"
    assert "pass --dataset" in note
    assert len(set(generated_palette(64))) == 64
    assert generated_palette(7) == preset.palette


def test_explicit_preset_must_match():
    assert resolve_preset("lip", 20) == (load_preset("lip"), None)
    with pytest.raises(ConfigError, match="has 150 classes but the model predicts 19"):
        resolve_preset("ade20k", 19)
    with pytest.raises(ConfigError, match="unknown dataset preset"):
        resolve_preset("kitti", 19)
    assert set(SIZES) == set(preset_names())
