"""The model families ocr-deploy exports: one module per family, one row per family here.

Adding a family: write `exporters/models/<family>.py` with a `ModelFamily` subclass (see base.py)
and add its FAMILY below. Checkpoint loading, metadata, export and the shared family tests go
through this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporters.models import (
    hrnet_ocr,
    mmseg_hrnet_ocr,
    mmseg_resnet_ocr,
    ocnet_resnet,
    openseg_hrnet_ocr,
    openseg_resnet,
)
from exporters.models.base import FamilyMatch, ModelFamily
from ocr_deploy.errors import ModelFileError

FAMILIES: dict[str, ModelFamily[Any]] = {family.key: family for family in (
    hrnet_ocr.FAMILY,
    openseg_hrnet_ocr.FAMILY,
    openseg_hrnet_ocr.ASP_FAMILY,
    mmseg_hrnet_ocr.FAMILY,
    mmseg_resnet_ocr.FAMILY,
    openseg_resnet.FAMILY,
    ocnet_resnet.FAMILY,
)}

__all__ = ["FAMILIES", "family_named", "family_of", "rank_families"]


def family_named(key: str) -> ModelFamily[Any]:
    """The family a NetworkSpec names."""
    if key not in FAMILIES:
        raise ModelFileError(f"the model belongs to family {key!r}, which this ocr-deploy does not "
                             f"know (known: {', '.join(FAMILIES)}); upgrade ocr-deploy")
    return FAMILIES[key]


def family_of(config: object) -> ModelFamily[Any]:
    """The family whose configuration type `config` is."""
    for family in FAMILIES.values():
        if isinstance(config, family.config_type):
            return family
    raise TypeError(f"{type(config).__name__} is the configuration of no model family")


def rank_families(weights: Mapping[str, Any]) -> list[tuple[ModelFamily[Any], FamilyMatch]]:
    """Every family's verdict on a prefix-stripped state dict, best first (table order on ties)."""
    verdicts = [(family, family.match(weights)) for family in FAMILIES.values()]
    return sorted(verdicts, key=lambda verdict: -verdict[1].score)
