"""Class names, palette and test policy of an export: from --dataset, else from what the
checkpoint states (mmsegmentation's CLASSES/PALETTE, openseg's dataset name), else guessed from K."""

from __future__ import annotations

from exporters.containers import CheckpointSource
from ocr_deploy.meta import DatasetSpec
from ocr_deploy.presets import (
    DatasetPreset,
    TestSizePolicy,
    generated_palette,
    load_preset,
    preset_names,
    resolve_preset,
)


def dataset_for(source: CheckpointSource, num_classes: int,
                requested: str | None) -> tuple[DatasetSpec, str | None]:
    """The dataset record of a model with `num_classes` outputs, and a note saying where its
    names came from when the user did not choose them."""
    if requested is not None:
        preset, _ = resolve_preset(requested, num_classes)
        note = None
        if source.classes is not None and _folded(source.classes) != _folded(preset.classes):
            note = f"--dataset {requested} replaces the class names the checkpoint lists"
        return _spec(preset), note
    origin = f"the checkpoint's {source.framework or 'container'} metadata"
    if source.classes is not None:
        preset = _preset_with_classes(source.classes)
        palette = source.palette or (preset.palette if preset else generated_palette(num_classes))
        what = "class names and palette" if source.palette else "class names"
        same = f" (the classes of preset {preset.name!r})" if preset else ""
        policy = preset.test_policy if preset else TestSizePolicy("native")
        flips = preset.flip_pairs if preset else ()
        return (DatasetSpec(preset.name if preset else "checkpoint", source.classes, palette,
                            policy, flips), f"{what} from {origin}{same}")
    stated = source.dataset
    if stated in preset_names() and load_preset(stated).num_classes == num_classes:
        return _spec(load_preset(stated)), f"dataset preset {stated!r} named by {origin}"
    preset, note = resolve_preset(None, num_classes)
    if source.palette is not None:
        return (DatasetSpec(preset.name, preset.classes, source.palette, preset.test_policy,
                            preset.flip_pairs), f"palette from {origin}; {note}")
    return _spec(preset), note


def _spec(preset: DatasetPreset) -> DatasetSpec:
    return DatasetSpec(preset.name, preset.classes, preset.palette, preset.test_policy,
                       preset.flip_pairs)


def _folded(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name.strip().lower() for name in names)


def _preset_with_classes(classes: tuple[str, ...]) -> DatasetPreset | None:
    for name in preset_names():
        preset = load_preset(name)
        if _folded(preset.classes) == _folded(classes):
            return preset
    return None
