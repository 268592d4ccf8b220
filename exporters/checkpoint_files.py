"""Reading weights files safely: tensors only, never arbitrary pickled objects."""

from __future__ import annotations

import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

from exporters.safe_unpickle import RefusedGlobal, RestrictedPickle, legacy_storage_bytes
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
_PICKLE_PROTO = 0x80  # a pickle of protocol 2 or later starts PROTO, version
_PICKLE_PROTOCOLS = range(2, 6)


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
    """The object stored in a checkpoint (a dict of tensors, possibly nested in containers).
    Pickled files are read without running any pickled code (exporters.safe_unpickle)."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; pass the path of a .pth, .pth.tar, .pt or "
                              ".safetensors checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); download or copy the checkpoint again")
    if path.name.lower().endswith(".safetensors"):
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
    try:
        if head == _ZIP_MAGIC:
            _check_torch_zip(path)
        elif len(head) > 1 and head[0] == _PICKLE_PROTO and head[1] in _PICKLE_PROTOCOLS:
            _check_legacy_claims(path)
        else:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor "
                                  "a pickle); pass the .pth/.pth.tar file the trainer saved")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=False,
                              pickle_module=RestrictedPickle)
    except RefusedGlobal as refused:
        raise CheckpointError(_refusal(path, refused)) from None
    except MemoryError:
        raise CheckpointError(f"{path} claims more memory than this machine has; it is damaged or "
                              "crafted: copy the checkpoint again from its source") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError, TypeError,
            AttributeError, IndexError, KeyError, struct.error) as error:
        raise _truncated(path, error) from None


def _refusal(path: Path, refused: RefusedGlobal) -> str:
    if refused.runs_code:
        return (f"{path} is not plain weights: its pickle calls {refused.name}, which would run "
                "code when loaded; ocr-deploy never runs pickled code. Do not load this file "
                "anywhere (it may be malicious); get the checkpoint again from its source")
    return (f"{path} stores Python objects besides tensors ({refused.name}) and would need unsafe "
            "unpickling, which ocr-deploy never does; re-save it where it was made with "
            "torch.save(model.state_dict(), 'weights.pth')")


def _check_legacy_claims(path: Path) -> None:
    """A legacy file's storages must fit in it: PyTorch allocates what they claim first."""
    claimed, size = legacy_storage_bytes(path), path.stat().st_size
    if claimed > size:
        raise CheckpointError(f"{path} claims {claimed / 1e6:.1f} MB of tensor data but the file "
                              f"holds {size / 1e6:.1f} MB; it is truncated or crafted: copy the "
                              "checkpoint again")


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
