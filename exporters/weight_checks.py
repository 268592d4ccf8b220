"""Checks on a state dict's tensors before anything is built from them.

A weights file can be well-formed and still wrong: integer weights (a cast would make a
constant-class model that "verifies" perfectly), NaN/Inf (every later step fails far from the
cause), or views whose shapes claim far more elements than the file stores (a zero stride makes a
4-byte storage look like a [100000, 512, 1, 1] classifier, and building the network allocates
gigabytes). These are refused here, whatever --no-verify says, before any network is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_deploy.errors import CheckpointError

if TYPE_CHECKING:
    import torch

# The widest layer of any supported family is ASP-OC's 5 x 512 concatenation (2560 channels);
# ResNet-101's widest is 2048. Far above both, far below a crafted allocation.
MAX_CHANNELS = 16384
# Segmentation datasets stop well short of this (ADE20K-full: 847 classes); at 1024x2048 the
# float32 logits of 1024 classes already take 8 GiB.
MAX_CLASSES = 1024
MAX_DIMENSIONS = 5
# Integer buffers a network legitimately keeps (BatchNorm's step counter, unused in eval).
INTEGER_BUFFERS = ("num_batches_tracked",)


def check_weights(weights: Mapping[str, torch.Tensor], path: Path) -> None:
    """Dtypes, storage backing and shape bounds of every tensor, then finiteness."""
    for key, tensor in weights.items():
        _check_kind(key, tensor, path)
        _check_backed(key, tensor, path)
        _check_bounds(key, tensor, path)
    for key, tensor in weights.items():
        if tensor.is_floating_point() and tensor.numel() and not _all_finite(tensor):
            bad = tensor.numel() - int(tensor.isfinite().sum())
            raise CheckpointError(f"{path}: tensor {key!r} holds {bad} non-finite value(s) (NaN or "
                                  "Inf), the first such tensor in the file; the training diverged or "
                                  "the file is damaged: use an earlier checkpoint")


def _all_finite(tensor: torch.Tensor) -> bool:
    import numpy as np
    import torch

    if tensor.dtype in (torch.float16, torch.float32, torch.float64):
        # numpy: a fraction of torch's per-call cost over the ~1600 small tensors of a network.
        return bool(np.isfinite(tensor.detach().numpy()).all())
    return bool(tensor.isfinite().all())


def check_num_classes(num_classes: int, path: Path) -> None:
    if not 1 <= num_classes <= MAX_CLASSES:
        raise CheckpointError(f"{path}: the classifier predicts {num_classes} classes, outside "
                              f"1..{MAX_CLASSES} that ocr-deploy exports; the file is damaged or "
                              "not a segmentation checkpoint")


def _check_kind(key: str, tensor: torch.Tensor, path: Path) -> None:
    import torch

    if tensor.layout is not torch.strided or tensor.device.type != "cpu" or tensor.is_quantized:
        raise CheckpointError(f"{path}: tensor {key!r} is not a dense tensor ({tensor.layout}, "
                              f"{tensor.device.type}); ocr-deploy reads plain dense weights only")
    if tensor.is_floating_point():
        return
    if key.rsplit(".", 1)[-1] in INTEGER_BUFFERS and not tensor.is_complex() \
            and tensor.dtype is not torch.bool:
        return
    raise CheckpointError(f"{path}: tensor {key!r} has dtype {str(tensor.dtype).removeprefix('torch.')}"
                          "; network weights must be floating point (converting them would make "
                          "a model that predicts one class); re-save the float weights")


def _check_backed(key: str, tensor: torch.Tensor, path: Path) -> None:
    """The storage must really hold every element: no zero strides, no overlapping views."""
    if tensor.numel() <= 1:
        return
    zero = any(stride == 0 and size > 1 for size, stride in zip(tensor.shape, tensor.stride(),
                                                                  strict=True))
    stored = tensor.untyped_storage().nbytes() // tensor.element_size()
    if zero or tensor.numel() > stored:
        raise CheckpointError(f"{path}: tensor {key!r} claims shape {list(tensor.shape)} "
                              f"({tensor.numel()} values) but the file stores only {stored} for it "
                              f"(strides {list(tensor.stride())}); the file is damaged or crafted")


def _check_bounds(key: str, tensor: torch.Tensor, path: Path) -> None:
    if tensor.dim() > MAX_DIMENSIONS or any(side > MAX_CHANNELS for side in tensor.shape):
        raise CheckpointError(f"{path}: tensor {key!r} has shape {list(tensor.shape)}, beyond any "
                              f"layer of a segmentation network (at most {MAX_DIMENSIONS} "
                              f"dimensions of at most {MAX_CHANNELS}); the file is damaged or not a "
                              "segmentation checkpoint")
