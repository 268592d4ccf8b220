"""Random weights that behave like a trained network's, for tests and benchmarks (any family).

Plain random init leaves BatchNorm at mean 0 / var 1, so activations drift by orders of
magnitude across the network. Calibrating the running statistics on a few frames keeps every
layer normalised, as in a trained model, without any training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exporters.checkpoint_files import save_release_checkpoint
from exporters.models import family_of
from exporters.models.base import ChannelOrder, ModelFamily
from ocr_deploy.meta import InputSpec
from ocr_deploy.preprocess import normalize_frames
from ocr_deploy.testframes import synthetic_frame


def _normalised(frames_bgr: np.ndarray, family: ModelFamily[Any], config: Any) -> torch.Tensor:
    """Frames as the family's network reads them (its mean/std and channel order)."""
    normalisation = family.output_contract(family.network_spec(config)).normalisation
    spec = InputSpec(format="normalized", mean=normalisation.mean, std=normalisation.std)
    images = torch.from_numpy(normalize_frames(frames_bgr, spec))  # RGB
    return images.flip(1) if normalisation.channels is ChannelOrder.bgr else images


def synthetic_model(config: Any, *, seed: int = 0, calibrate: bool = True,
                    calibration_size: tuple[int, int] = (128, 256)) -> nn.Module:
    """An eval-mode network of `config`'s family with seeded random weights and (optionally)
    calibrated BN stats."""
    family = family_of(config)
    torch.manual_seed(seed)
    model = family.build(config)
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.1)
    if calibrate:
        for norm in norms:
            norm.momentum = None  # cumulative average over the calibration frames
        height, width = calibration_size
        frames = np.stack([synthetic_frame(height, width, seed=seed + index) for index in range(2)])
        images = _normalised(frames, family, config)
        model.train()
        with torch.no_grad():
            model(images)
        for norm in norms:
            norm.momentum = 0.1
        _scale_classifiers(model.eval(), family, images)
    return model.eval()


def _scale_classifiers(model: nn.Module, family: ModelFamily[Any], images: torch.Tensor,
                       target_std: float = 3.0) -> None:
    """Give logits the spread of a trained network's (a few units), not hundreds."""
    with torch.no_grad():
        for index, head in family.classifiers(model).items():
            spread = float(model(images)[index].std())
            head.weight.mul_(target_std / spread)
            if head.bias is not None:  # openseg's ASP-OCR classifiers have none
                head.bias.mul_(target_std / spread)


def save_release(model: nn.Module, path: Path) -> Path:
    """Save in the reference's release layout ('model.' keys, uniform loss weights)."""
    config = model.config
    classes = family_of(config).network_spec(config).num_classes
    return save_release_checkpoint(model.state_dict(), path, loss_weights=torch.ones(classes))
