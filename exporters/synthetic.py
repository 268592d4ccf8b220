"""Random HRNet-OCR weights that behave like a trained network's, for tests and benchmarks.

Plain random init leaves BatchNorm at mean 0 / var 1, so activations drift by orders of
magnitude across the network. Calibrating the running statistics on a few frames keeps every
layer normalised, as in a trained model, without any training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from exporters.checkpoint_files import save_release_checkpoint
from exporters.hrnet_ocr import HRNetOCR
from exporters.variants import OcrConfig
from ocr_deploy.meta import InputSpec
from ocr_deploy.preprocess import normalize_frames
from ocr_deploy.testframes import synthetic_frame


def _normalised(frames_bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(normalize_frames(frames_bgr, InputSpec()))


def synthetic_model(config: OcrConfig, *, seed: int = 0, calibrate: bool = True,
                    calibration_size: tuple[int, int] = (128, 256)) -> HRNetOCR:
    """An eval-mode HRNetOCR with seeded random weights and (optionally) calibrated BN stats."""
    torch.manual_seed(seed)
    model = HRNetOCR(config)
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
        model.train()
        with torch.no_grad():
            model(_normalised(frames))
        for norm in norms:
            norm.momentum = 0.1
        _scale_classifiers(model.eval(), _normalised(frames))
    return model.eval()


def _scale_classifiers(model: HRNetOCR, images: torch.Tensor, target_std: float = 3.0) -> None:
    """Give logits the spread of a trained network's (a few units), not hundreds."""
    with torch.no_grad():
        for head, index in ((model.aux_head[3], 0), (model.cls_head, 1)):
            spread = float(model(images)[index].std())
            head.weight.mul_(target_std / spread)
            head.bias.mul_(target_std / spread)


def save_release(model: HRNetOCR, path: Path) -> Path:
    """Save in the reference's release layout ('model.' keys, uniform loss weights)."""
    return save_release_checkpoint(model.state_dict(), path,
                                   loss_weights=torch.ones(model.config.num_classes))
