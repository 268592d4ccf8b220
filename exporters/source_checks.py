"""What a checkpoint's container states, checked against what its weights say.

A config_dict from another run, class names of another dataset, or a normalisation the family
does not apply would export a model that runs and is wrong; each is refused with both sides named.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from exporters.containers import CheckpointSource
from exporters.models import FAMILIES
from exporters.models.base import ModelFamily, Normalisation
from ocr_deploy.errors import CheckpointError
from ocr_deploy.meta import NetworkSpec


def check_source(source: CheckpointSource, family: ModelFamily[Any], spec: NetworkSpec,
                 path: Path) -> None:
    """Raise CheckpointError at the first statement of `source` the weights contradict."""
    stated = f"{path}: the checkpoint's {source.framework or 'container'} metadata"
    k = spec.num_classes
    if source.num_classes is not None and source.num_classes != k:
        raise CheckpointError(f"{stated} says {source.num_classes} classes but the weights' "
                              f"classifier predicts {k}; the metadata and the weights come from "
                              "different runs: re-save the checkpoint from the run that trained it")
    for what, values in (("class names", source.classes), ("palette colours", source.palette)):
        if values is not None and len(values) != k:
            raise CheckpointError(f"{stated} lists {len(values)} {what} but the weights predict "
                                  f"{k} classes; pass --dataset to name the classes instead")
    if source.model_name is not None:
        _check_model_name(source.model_name, family, spec, stated)
    if source.bn_type is not None and "bn_type" in spec.settings \
            and _abn(source.bn_type) != _abn(str(spec.settings["bn_type"])):
        raise CheckpointError(f"{stated} says bn_type {source.bn_type!r} but the weights' key layout "
                              f"is that of bn_type {spec.settings['bn_type']!r}; the metadata and the "
                              "weights come from different runs")
    if source.normalisation is not None:
        expected = family.output_contract(spec).normalisation
        if not same_normalisation(source.normalisation.normalisation(), expected):
            raise CheckpointError(
                f"{stated} states input normalisation {source.normalisation.describe()}, but "
                f"ocr-deploy feeds {family.title} networks this way: {describe_normalisation(expected)}; "
                "an export would feed it frames normalised unlike its training; nothing was "
                "exported: please report this with the checkpoint's config")


def _check_model_name(name: str, family: ModelFamily[Any], spec: NetworkSpec, stated: str) -> None:
    """The stated model must be one the family reads, and the one its weights show when the
    family records which (openseg's heads in the variant or settings)."""
    recorded_names = set(spec.variant.replace(",", " ").split())
    recorded_names |= {str(value) for value in spec.settings.values()}
    recorded = [model for model in family.framework_models if model in recorded_names]
    if (not family.framework_models or name in family.framework_models) \
            and (not recorded or name in recorded):
        return
    owner = next((other.title for other in FAMILIES.values() if name in other.framework_models),
                 None)
    named = f"{name!r}" + (f" ({owner})" if owner else "")
    shown = f"{recorded[0]!r} of {family.title}" if recorded else family.title
    raise CheckpointError(f"{stated} names model {named} but the weights are {shown} (keys like "
                          f"{family.example_key!r}); the metadata and the weights come from "
                          "different runs")


def _abn(bn_type: str) -> bool:
    return bn_type.replace("-", "_").startswith("inplace_abn")


def same_normalisation(first: Normalisation, second: Normalisation) -> bool:
    close = all(math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6)
                for a, b in zip(first.mean + first.std, second.mean + second.std, strict=True))
    return close and first.channels is second.channels


def describe_normalisation(normalisation: Normalisation) -> str:
    """'the network reads BGR; (pixel - mean) / std on 0..255 values, mean (123.7, 116.3, 103.5)
    and std (58.4, 57.1, 57.4) in RGB order' (a Caffe-style ResNet shows std (1, 1, 1))."""
    mean, std = (", ".join(f"{value * 255:.4g}" for value in values)
                 for values in (normalisation.mean, normalisation.std))
    return (f"the network reads {normalisation.channels.value.upper()}; (pixel - mean) / std on "
            f"0..255 values, mean ({mean}) and std ({std}) in RGB order")
