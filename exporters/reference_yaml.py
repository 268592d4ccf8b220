"""The reference's experiment YAML (experiments/<dataset>/seg_hrnet_ocr_*.yaml), cross-checked.

Weights alone determine the network; the YAML adds what shapes cannot tell (align_corners, the
dataset) and catches a checkpoint paired with the wrong experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.variants import BackboneConfig, OcrConfig, StageConfig
from ocr_deploy.errors import ConfigError

# Defaults of the reference's config/default.py where an experiment file leaves a value out.
_DEFAULT_MID, _DEFAULT_KEY, _DEFAULT_ALIGN_CORNERS = 512, 256, True
# The reference's DATASET.DATASET names, mapped to our presets.
_DATASET_NAMES = {"cityscapes": "cityscapes", "ade20k": "ade20k", "cocostuff": "cocostuff",
                  "lip": "lip", "pascal_ctx": "pascal-context"}


@dataclass(frozen=True)
class ReferenceExperiment:
    config: OcrConfig
    dataset: str | None  # our preset name, or None when the YAML names no known dataset


def _get(tree: dict[str, Any], dotted: str, path: Path, default: Any = None) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not None:
                return default
            raise ConfigError(f"{path} has no {dotted}; pass the reference's experiment YAML "
                              "(experiments/<dataset>/seg_hrnet_ocr_*.yaml)")
        node = node[part]
    return node


def _stage(tree: dict[str, Any], index: int, path: Path) -> StageConfig:
    prefix = f"MODEL.EXTRA.STAGE{index}"
    return StageConfig(int(_get(tree, f"{prefix}.NUM_MODULES", path)),
                       tuple(int(n) for n in _get(tree, f"{prefix}.NUM_BLOCKS", path)),
                       tuple(int(n) for n in _get(tree, f"{prefix}.NUM_CHANNELS", path)))


def read_reference_yaml(path: Path) -> ReferenceExperiment:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} is not a reference experiment YAML (no MODEL/DATASET sections)")
    name = str(_get(tree, "MODEL.NAME", path))
    if "ocr" not in name.lower():
        raise ConfigError(f"{path} describes model {name!r}, not HRNet-OCR (seg_hrnet_ocr)")
    stage1 = _stage(tree, 1, path)
    backbone = BackboneConfig(stage1.blocks[0], stage1.channels[0], _stage(tree, 2, path),
                              _stage(tree, 3, path), _stage(tree, 4, path))
    config = OcrConfig(
        backbone=backbone,
        num_classes=int(_get(tree, "DATASET.NUM_CLASSES", path)),
        mid_channels=int(_get(tree, "MODEL.OCR.MID_CHANNELS", path, _DEFAULT_MID)),
        key_channels=int(_get(tree, "MODEL.OCR.KEY_CHANNELS", path, _DEFAULT_KEY)),
        align_corners=bool(_get(tree, "MODEL.ALIGN_CORNERS", path, _DEFAULT_ALIGN_CORNERS)))
    dataset = _DATASET_NAMES.get(str(_get(tree, "DATASET.DATASET", path, "")).lower())
    if dataset == "pascal-context":
        dataset = f"pascal-context-{config.num_classes}"
    return ReferenceExperiment(config, dataset)


def cross_check(experiment: ReferenceExperiment, from_weights: object, path: Path) -> None:
    """Raise ConfigError naming every setting where the YAML and the weights disagree."""
    if not isinstance(from_weights, OcrConfig):
        from exporters.models import family_of

        raise ConfigError(f"{path} describes an HRNet-OCR experiment but the checkpoint is "
                          f"{family_of(from_weights).title}; drop --config")
    stated, found = experiment.config, from_weights
    pairs = [("NUM_CLASSES", stated.num_classes, found.num_classes),
             ("OCR.MID_CHANNELS", stated.mid_channels, found.mid_channels),
             ("OCR.KEY_CHANNELS", stated.key_channels, found.key_channels),
             ("STAGE1 NUM_BLOCKS", stated.backbone.stage1_blocks, found.backbone.stage1_blocks),
             ("STAGE1 NUM_CHANNELS", stated.backbone.stage1_channels,
              found.backbone.stage1_channels)]
    for index in (2, 3, 4):
        stage = f"stage{index}"
        mine, theirs = getattr(stated.backbone, stage), getattr(found.backbone, stage)
        pairs += [(f"STAGE{index} NUM_MODULES", mine.modules, theirs.modules),
                  (f"STAGE{index} NUM_BLOCKS", list(mine.blocks), list(theirs.blocks)),
                  (f"STAGE{index} NUM_CHANNELS", list(mine.channels), list(theirs.channels))]
    differences = [f"{name} is {a} in the YAML but {b} in the weights" for name, a, b in pairs
                   if a != b]
    if differences:
        more = f" (and {len(differences) - 2} more)" if len(differences) > 2 else ""
        raise ConfigError(f"{path} does not describe this checkpoint: "
                          + "; ".join(differences[:2]) + more
                          + "; pass the YAML the checkpoint was trained with, or drop --config")
