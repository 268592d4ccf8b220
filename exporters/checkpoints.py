"""From a checkpoint file to a loaded network: unwrap, strip, recognise the family, infer its
configuration, convert BatchNorm, load strictly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporters.checkpoint_files import read_weights_file
from exporters.containers import CheckpointSource, unwrap
from exporters.models import FAMILIES, rank_families
from exporters.models.base import FamilyMatch, ModelFamily, OutputContract
from ocr_deploy.errors import CheckpointError
from ocr_deploy.fileio import sha256_of
from ocr_deploy.meta import NetworkSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

# Longest first, so 'module.model.' wins over 'module.'.
KNOWN_PREFIXES = ("module.model.", "model.", "module.")
_LOSS_KEY = re.compile(r"^(module\.)?loss\.")
INPLACE_ABN_EPS = 1e-5


class BatchNormMode(str, Enum):
    """How to read BatchNorm scales: InPlaceABN-era files store w where the scale is |w|+eps."""

    auto = "auto"
    plain = "plain"
    inplace_abn = "inplace-abn"


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """Network weights ready for strict loading, their family and configuration, and where they
    came from."""

    path: Path
    sha256: str
    family: ModelFamily[Any]
    config: Any  # the family's configuration type, e.g. OcrConfig
    state_dict: dict[str, torch.Tensor]
    layout: str
    source: CheckpointSource
    notes: tuple[str, ...] = ()

    def build_model(self) -> nn.Module:
        """An eval-mode network of the family holding these weights, loaded strictly."""
        return self.family.load(self.config, self.state_dict)

    def network_spec(self) -> NetworkSpec:
        return self.family.network_spec(self.config)

    def output_contract(self) -> OutputContract:
        return self.family.output_contract(self.network_spec())


def load_checkpoint(path: Path, *, align_corners: bool | None = None,
                    batch_norm: BatchNormMode = BatchNormMode.auto) -> Checkpoint:
    """Read a checkpoint of any known family; no config file needed. `align_corners` None: the
    family's default (True for HRNet-OCR, like every released model). Weights are checked
    (exporters.weight_checks) and the container's statements cross-checked against them
    (exporters.source_checks) before anything is built."""
    from exporters.source_checks import check_source
    from exporters.weight_checks import check_num_classes, check_weights

    stored = read_weights_file(path)
    tensors, source = unwrap(stored, path)
    weights, prefix, dropped = strip_prefix(tensors, path)
    check_weights(weights, path)
    family = identify_family(weights, path)
    config = family.infer_config(weights, align_corners=align_corners)
    spec = family.network_spec(config)
    check_num_classes(spec.num_classes, path)
    check_source(source, family, spec, path)
    mode, reason = _stated_batch_norm(batch_norm, source)
    weights, bn_notes = convert_batch_norm(weights, mode, reason=reason)
    container = source.container
    layout = f"{container}, keys prefixed {prefix!r}" if prefix else f"{container}, no key prefix"
    notes = source.notes + tuple(bn_notes)
    if dropped:
        notes = (f"dropped {len(dropped)} training-only key(s): {', '.join(dropped)}",) + notes
    return Checkpoint(path=path, sha256=sha256_of(path), family=family, config=config,
                      state_dict=weights, layout=layout, source=source, notes=notes)


# A container's stated normalisation layer (openseg's config_dict['network']['bn_type']).
_STATED_BATCH_NORM = {"inplace_abn": BatchNormMode.inplace_abn, "torchbn": BatchNormMode.plain,
                      "torchsyncbn": BatchNormMode.plain, "syncbn": BatchNormMode.plain}


def _stated_batch_norm(mode: BatchNormMode,
                       source: CheckpointSource) -> tuple[BatchNormMode, str | None]:
    """--batch-norm auto follows the container's bn_type when it states one."""
    stated = _STATED_BATCH_NORM.get(source.bn_type or "")
    if mode is not BatchNormMode.auto or stated is None:
        return mode, None
    return stated, f"the checkpoint's bn_type is {source.bn_type!r}"


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


def identify_family(weights: dict[str, torch.Tensor], path: Path) -> ModelFamily[Any]:
    """The one family whose required keys the state dict has; else say which came closest."""
    ranked = rank_families(weights)
    matches = [family for family, verdict in ranked if verdict.matched]
    if len(matches) > 1:
        names = " and ".join(family.title for family in matches)
        raise CheckpointError(f"{path} fits both {names}; ocr-deploy cannot tell which network "
                              "it is: please report this with the checkpoint's key names")
    if matches:
        return matches[0]
    raise CheckpointError(_no_family_message(path, ranked[0][1]))


def _no_family_message(path: Path, closest: FamilyMatch) -> str:
    known = ", ".join(f"{family.title} (keys like {family.example_key!r})"
                      for family in FAMILIES.values())
    return (f"{path} is not a checkpoint ocr-deploy can export: the closest model family is "
            f"{closest.title}, but {closest.reason}; pass a checkpoint of {known}")


def convert_batch_norm(weights: dict[str, torch.Tensor], mode: BatchNormMode, *,
                       reason: str | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
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
        if reason is None:
            reason = "no num_batches_tracked: a torch 0.4 InPlaceABN-era file" if legacy else "asked"
        notes.append(f"InPlaceABN scales converted to |w|+{INPLACE_ABN_EPS:g} in {len(norms)} "
                     f"BatchNorm layers ({reason}); pass --batch-norm plain to keep them as stored")
    elif negative and mode is BatchNormMode.auto and reason is None:
        notes.append(f"warning: {negative} BatchNorm layers have negative scales; if this model "
                     "was trained with InPlaceABN, export again with --batch-norm inplace-abn")
    return converted, notes
