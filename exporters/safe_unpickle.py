"""Unpickling a checkpoint without running any of it.

A pickle names the functions it calls ("globals"). Ours resolve only to a short table of harmless
tensor-rebuilding functions and plain containers; the training bookkeeping of known frameworks
(mmengine's HistoryBuffer in a message hub, numpy arrays in a logger's history) resolves to an inert
stand-in that swallows its arguments, so the real class is never imported or called; every other
global refuses the file. The table is ours, so PyTorch's weights-only reader is not needed: the same
guarantee holds for pickle protocols 2 to 5, zip and legacy files alike.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import IO, Any

# Frameworks whose checkpoints carry non-tensor bookkeeping next to the weights. Their objects are
# replaced by InertObject: nothing of them is imported, nothing of them runs.
BOOKKEEPING_PREFIXES = ("mmengine.", "mmcv.", "mmseg.", "mmdet.", "numpy.")
# Globals of these modules are code execution (os.system, builtins.eval, subprocess.Popen, ...).
_CODE_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "importlib", "runpy",
    "shutil", "socket", "pty", "webbrowser", "pickle", "_pickle", "marshal", "types", "code",
    "codeop", "ctypes", "multiprocessing", "platform", "operator", "functools", "io", "pathlib",
    "tempfile", "commands", "pdb", "timeit", "signal", "asyncio", "urllib", "http", "ftplib"})
_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
               "_rebuild_parameter_with_state")
_ITEMSIZE = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
             "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16}


class RefusedGlobal(Exception):
    """A pickle names a global outside the table; `name` is 'module.qualname'."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    @property
    def runs_code(self) -> bool:
        return self.name.split(".", 1)[0] in _CODE_MODULES


class InertObject:
    """Stands in for a bookkeeping object: accepts any construction and state, keeps nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<inert stand-in for {type(self).__qualname__}>"


def _allowed_globals() -> dict[str, Any]:
    """The real objects a weights pickle may call: tensor rebuilders, containers, dtypes."""
    import codecs
    import collections

    import torch

    table: dict[str, Any] = {f"torch._utils.{name}": getattr(torch._utils, name)
                             for name in _REBUILDERS if hasattr(torch._utils, name)}
    table.update({"collections.OrderedDict": collections.OrderedDict, "builtins.set": set,
                  "builtins.frozenset": frozenset, "_codecs.encode": codecs.encode,
                  "torch.Size": torch.Size, "torch.device": torch.device})
    table.update({f"torch.{name}": value for name, value in vars(torch).items()
                  if isinstance(value, torch.dtype)})
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals through the table only; everything else raises RefusedGlobal."""

    def __init__(self, file: IO[bytes], **kwargs: Any):
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals()
        self._stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full in self._allowed:
            return self._allowed[full]
        if full.startswith(BOOKKEEPING_PREFIXES):
            if full not in self._stand_ins:  # a named subclass, so messages and reprs say which
                self._stand_ins[full] = type(full, (InertObject,), {"__qualname__": full})
            return self._stand_ins[full]
        raise RefusedGlobal(full)


class RestrictedPickle:
    """What torch.load(pickle_module=...) needs of a pickle module, restricted."""

    __name__ = "ocr_deploy_restricted_pickle"
    Unpickler = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()


class _ClaimSurvey(RestrictedUnpickler):
    """Reads a legacy file's pickles, building nothing: records the bytes each storage claims."""

    def __init__(self, file: IO[bytes], claims: dict[str, int]):
        super().__init__(file, encoding="utf-8")
        self.claims = claims

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name.endswith("Storage"):
            return _ITEMSIZE.get(name[: -len("Storage")], 1)
        resolved = super().find_class(module, name)
        return resolved if isinstance(resolved, type) and issubclass(resolved, InertObject) \
            else InertObject

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            itemsize = pid[1] if isinstance(pid[1], int) else 1
            self.claims[str(pid[2])] = int(pid[4]) * itemsize
        return InertObject()


def legacy_storage_bytes(path: Path) -> int:
    """The bytes a legacy (non-zip) torch.save file says its storages hold, read without
    allocating them: PyTorch allocates that much before it reads a byte of the data."""
    claims: dict[str, int] = {}
    with path.open("rb") as stream:
        for _ in range(3):  # magic number, protocol version, system info
            _ClaimSurvey(stream, claims).load()
        _ClaimSurvey(stream, claims).load()
    return sum(claims.values())
