"""From a reference checkpoint to a loaded HRNetOCR: unwrap, strip, infer, convert, load strictly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporters.checkpoint_files import read_weights_file
from ocr_deploy.fileio import sha256_of
from exporters.variants import BackboneConfig, OcrConfig, StageConfig
from ocr_deploy.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from exporters.hrnet_ocr import HRNetOCR

# Longest first, so 'module.model.' wins over 'module.'.
KNOWN_PREFIXES = ("module.model.", "model.", "module.")
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict")
_LOSS_KEY = re.compile(r"^(module\.)?loss\.")
_REQUIRED_KEYS = ("conv1.weight", "layer1.0.conv1.weight", "transition1.0.0.weight",
                  "conv3x3_ocr.0.weight", "cls_head.weight",
                  "ocr_distri_head.object_context_block.f_pixel.0.weight")
# Distinctive keys of networks people mistake for HRNet-OCR, and what to tell them.
_FOREIGN_LAYOUTS = (
    (re.compile(r"^last_layer\."), "a plain HRNetV2 segmentation checkpoint (no OCR head)"),
    (re.compile(r"^(backbone|decode_head)\."), "an mmsegmentation checkpoint "
     "(backbone./decode_head. names), which is not supported yet"),
    (re.compile(r"^(incre_modules|final_layer|classifier)\."), "an HRNet classification checkpoint"),
    (re.compile(r"^(fc|layer4)\."), "a ResNet-style checkpoint"),
)
INPLACE_ABN_EPS = 1e-5


class BatchNormMode(str, Enum):
    """How to read BatchNorm scales: InPlaceABN-era files store w where the scale is |w|+eps."""

    auto = "auto"
    plain = "plain"
    inplace_abn = "inplace-abn"


@dataclass(frozen=True)
class Checkpoint:
    """Network weights ready for HRNetOCR.load_state_dict, with where they came from."""

    path: Path
    sha256: str
    config: OcrConfig
    state_dict: dict[str, torch.Tensor]
    layout: str
    notes: tuple[str, ...] = ()

    def build_model(self) -> HRNetOCR:
        """An eval-mode HRNetOCR holding these weights, loaded strictly."""
        from exporters.hrnet_ocr import HRNetOCR

        model = HRNetOCR(self.config)
        check_fit(self.state_dict, model.state_dict(), self.config)
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()


def load_checkpoint(path: Path, *, align_corners: bool = True,
                    batch_norm: BatchNormMode = BatchNormMode.auto) -> Checkpoint:
    """Read a checkpoint file of the reference implementation; no config file needed."""
    stored = read_weights_file(path)
    tensors, container = unwrap(stored, path)
    weights, prefix, dropped = strip_prefix(tensors, path)
    reject_foreign_layout(weights, path)
    config = infer_config(weights, align_corners=align_corners)
    weights, bn_notes = convert_batch_norm(weights, batch_norm)
    layout = f"{container}, keys prefixed {prefix!r}" if prefix else f"{container}, no key prefix"
    notes = tuple(bn_notes)
    if dropped:
        notes = (f"dropped {len(dropped)} training-only key(s): {', '.join(dropped)}",) + notes
    return Checkpoint(path, sha256_of(path), config, weights, layout, notes)


def unwrap(stored: Any, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Find the flat name -> tensor dict inside the containers trainers wrap it in."""
    import torch

    container = "flat state dict"
    for _ in range(3):
        if not isinstance(stored, dict):
            break
        inner = next((key for key in _CONTAINER_KEYS if isinstance(stored.get(key), dict)), None)
        if inner is None:
            break
        container = f"training checkpoint ({inner!r} entry)"
        stored = stored[inner]
    if not isinstance(stored, dict) or not stored:
        raise CheckpointError(f"{path} holds no state dict (found {type(stored).__name__}); "
                              "pass a checkpoint saved with torch.save(model.state_dict(), ...)")
    not_tensors = [key for key, value in stored.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries {not_tensors[:3]} are not tensors; expected a "
                              "state dict (or a training checkpoint with a 'state_dict' entry)")
    return stored, container


def strip_prefix(tensors: dict[str, torch.Tensor],
                 path: Path) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Drop loss.* entries and remove exactly one known prefix shared by every other key."""
    dropped = sorted(key for key in tensors if _LOSS_KEY.match(key))
    kept = {key: value for key, value in tensors.items() if key not in dropped}
    for prefix in KNOWN_PREFIXES:
        if all(key.startswith(prefix) for key in kept):
            return {key[len(prefix):]: value for key, value in kept.items()}, prefix, dropped
    if any(key.startswith(KNOWN_PREFIXES) for key in kept):
        prefixes = sorted({key.split(".", 1)[0] + "." for key in kept})[:4]
        raise CheckpointError(f"{path}: keys start with mixed prefixes {prefixes}; expected all "
                              "keys under one of 'model.', 'module.', 'module.model.' or none")
    return kept, "", dropped


def reject_foreign_layout(weights: dict[str, torch.Tensor], path: Path) -> None:
    if all(key in weights for key in _REQUIRED_KEYS):
        return
    for pattern, description in _FOREIGN_LAYOUTS:
        if any(pattern.match(key) for key in weights):
            raise CheckpointError(f"{path} looks like {description}, not HRNet-OCR; ocr-deploy "
                                  "exports HRNet-OCR checkpoints (keys like 'cls_head.weight')")
    missing = [key for key in _REQUIRED_KEYS if key not in weights]
    sample = ", ".join(repr(key) for key in list(weights)[:3])
    raise CheckpointError(f"{path} is not an HRNet-OCR checkpoint: it lacks {missing[0]!r} "
                          f"(and {len(missing) - 1} more); its keys look like {sample}")


def _indices(weights: dict[str, torch.Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(match.group(1)) for key in weights if (match := regex.match(key))})


def _infer_stage(weights: dict[str, torch.Tensor], stage: int) -> StageConfig:
    modules = _indices(weights, rf"^stage{stage}\.(\d+)\.branches\.")
    branches = _indices(weights, rf"^stage{stage}\.0\.branches\.(\d+)\.")
    if not modules or not branches:
        raise CheckpointError(f"the checkpoint has no stage{stage} weights; it is not a complete "
                              "HRNet-OCR state dict")
    blocks = tuple(len(_indices(weights, rf"^stage{stage}\.0\.branches\.{b}\.(\d+)\."))
                   for b in branches)
    channels = tuple(int(weights[f"stage{stage}.0.branches.{b}.0.conv1.weight"].shape[0])
                     for b in branches)
    return StageConfig(len(modules), blocks, channels)


def infer_config(weights: dict[str, torch.Tensor], *, align_corners: bool = True) -> OcrConfig:
    """Every hyper-parameter of the network, read back from tensor shapes."""
    backbone = BackboneConfig(
        stage1_blocks=len(_indices(weights, r"^layer1\.(\d+)\.")),
        stage1_channels=int(weights["layer1.0.conv1.weight"].shape[0]),
        stage2=_infer_stage(weights, 2), stage3=_infer_stage(weights, 3),
        stage4=_infer_stage(weights, 4))
    branch0 = int(weights["transition1.0.0.weight"].shape[0])
    if branch0 != backbone.stage2.channels[0]:
        raise CheckpointError(f"inconsistent checkpoint: transition1 makes {branch0} channels but "
                              f"stage2 branch 0 has {backbone.stage2.channels[0]}")
    return OcrConfig(
        backbone=backbone,
        num_classes=int(weights["cls_head.weight"].shape[0]),
        mid_channels=int(weights["conv3x3_ocr.0.weight"].shape[0]),
        key_channels=int(weights["ocr_distri_head.object_context_block.f_pixel.0.weight"].shape[0]),
        align_corners=align_corners)


def convert_batch_norm(weights: dict[str, torch.Tensor],
                       mode: BatchNormMode) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Make BatchNorm entries loadable by plain BatchNorm2d, converting InPlaceABN scales.

    InPlaceABN computes scale = |weight| + eps. Files saved by torch 0.4.0 (the reference's
    *_torch04.pth releases, trained with InPlaceABN) carry no num_batches_tracked, which is how
    `auto` recognises them. num_batches_tracked is unused in eval, so a missing one is filled in.
    """
    import torch

    norms = [key[: -len(".running_mean")] for key in weights if key.endswith(".running_mean")]
    lacking = [name for name in norms if f"{name}.num_batches_tracked" not in weights]
    legacy = bool(norms) and len(lacking) == len(norms)
    converted = dict(weights)
    for name in lacking:
        converted[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    negative = sum(int((weights[f"{name}.weight"] < 0).any()) for name in norms
                   if f"{name}.weight" in weights)
    apply_abn = mode is BatchNormMode.inplace_abn or (mode is BatchNormMode.auto and legacy)
    notes = []
    if apply_abn:
        for name in norms:
            converted[f"{name}.weight"] = weights[f"{name}.weight"].abs() + INPLACE_ABN_EPS
        reason = "no num_batches_tracked: a torch 0.4 InPlaceABN-era file" if legacy else "asked"
        notes.append(f"InPlaceABN scales converted to |w|+{INPLACE_ABN_EPS:g} in {len(norms)} "
                     f"BatchNorm layers ({reason}); pass --batch-norm plain to keep them as stored")
    elif negative and mode is BatchNormMode.auto:
        notes.append(f"warning: {negative} BatchNorm layers have negative scales; if this model "
                     "was trained with InPlaceABN, export again with --batch-norm inplace-abn")
    return converted, notes


def check_fit(weights: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
              config: OcrConfig) -> None:
    """Raise a readable error listing missing, unexpected and mis-shaped keys."""
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    misshaped = [f"{key} {list(weights[key].shape)} vs {list(expected[key].shape)}"
                 for key in expected if key in weights and weights[key].shape != expected[key].shape]
    if not (missing or unexpected or misshaped):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("mis-shaped (file vs network)", misshaped)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
    raise CheckpointError(f"weights do not fit HRNet-OCR {describe(config)}; " + "; ".join(parts))


def describe(config: OcrConfig) -> str:
    return (f"{config.variant} (K={config.num_classes}, MID/KEY "
            f"{config.mid_channels}/{config.key_channels})")
