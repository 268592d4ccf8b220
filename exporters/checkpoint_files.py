"""Reading weights files safely: tensors only, never arbitrary pickled objects."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from ocr_deploy.errors import CheckpointError

# Longest first: 'x.pth.tar' ends in both '.pth.tar' and '.tar'.
CHECKPOINT_SUFFIXES = (".pth.tar", ".safetensors", ".pth", ".pt", ".tar", ".bin", ".ckpt")


def is_checkpoint(path: Path) -> bool:
    return path.name.lower().endswith(CHECKPOINT_SUFFIXES)


def checkpoint_stem(path: Path) -> str:
    """'weights.pth.tar' -> 'weights'."""
    name = path.name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2 = b"\x80\x02"


def save_release_checkpoint(state_dict: dict, path: Path, *, loss_weights: Any = None) -> Path:
    """The reference's release layout: a flat dict of 'model.<name>' tensors, plus the loss's
    class weights as 'loss.criterion.weight' when given. Written atomically."""
    import torch

    from ocr_deploy.fileio import atomic_path

    state = {f"model.{key}": value for key, value in state_dict.items()}
    if loss_weights is not None:
        state["loss.criterion.weight"] = loss_weights
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
    return path


def read_weights_file(path: Path) -> Any:
    """The object stored in a checkpoint (a dict of tensors, possibly nested in containers)."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; pass the path of a .pth, .pth.tar, .pt or "
                              ".safetensors checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); download or copy the checkpoint again")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch_file(path)


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable .safetensors file ({_first_line(error)}); "
                              "it may be truncated: copy it again") from None


def _read_torch_file(path: Path) -> Any:
    import torch

    with path.open("rb") as stream:
        head = stream.read(4)
    if head == _ZIP_MAGIC:
        _check_torch_zip(path)
    elif not head.startswith(_PICKLE_PROTOCOL_2):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a "
                              "pickle); pass the .pth/.pth.tar file the trainer saved")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Weights only load failed" in str(error):
            raise CheckpointError(
                f"{path} stores Python objects besides tensors and would need unsafe unpickling, "
                "which ocr-deploy never does; re-save it where it was made with "
                "torch.save(model.state_dict(), 'weights.pth')") from None
        raise _truncated(path, error) from None
    except (EOFError, RuntimeError, ValueError, OSError) as error:
        raise _truncated(path, error) from None


def _check_torch_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path} is a damaged zip archive (probably truncated by an "
                              "interrupted download); copy the checkpoint again") from None
    if not any(name.endswith("data.pkl") for name in names):
        raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl "
                              "inside); pass the .pth file the trainer saved")


def _truncated(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(f"{path} could not be read as a PyTorch checkpoint "
                           f"({_first_line(error)}); it is probably truncated or corrupt: copy it "
                           "again")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]
