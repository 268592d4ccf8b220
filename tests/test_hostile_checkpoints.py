"""Weights files made by an attacker or broken by accident (issue 16's weight rows): each is built
here, small, then given to `ocr-deploy export` as a user would; each must end as one `error:`
line, exit code 1, nothing written, whatever --no-verify says. Plus the formats that must load:
legacy (non-zip) pickles of protocols 2 to 5 and an upper-case .SAFETENSORS suffix."""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from exporters.checkpoints import load_checkpoint
from exporters.weight_checks import MAX_CHANNELS, MAX_CLASSES

RUNNER = CliRunner()


def _export_refused(path: Path, tmp_path: Path, fragment: str, *options: str) -> str:
    out = tmp_path / "out.onnx"
    result = RUNNER.invoke(app, ["export", str(path), "-o", str(out), *options])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output and "unexpected" not in lines[0]
    assert not out.exists() and not list(tmp_path.glob("*.onnx*"))
    return lines[0]


@pytest.fixture(scope="module")
def tiny_state(tiny_model) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in tiny_model.state_dict().items()}


def _save(state: dict, path: Path, **options) -> Path:
    torch.save(state, path, **options)
    return path


# ---- weights that are well-formed pickles but wrong -------------------------------------------

def test_integer_weights_are_refused(tiny_state, tmp_path):
    state = dict(tiny_state, **{"cls_head.weight": tiny_state["cls_head.weight"].long()})
    path = _save(state, tmp_path / "int64.pth")
    _export_refused(path, tmp_path, "tensor 'cls_head.weight' has dtype int64", "--no-verify")


def test_integer_batch_norm_counters_are_fine(tiny_state, tmp_path):
    assert tiny_state["bn1.num_batches_tracked"].dtype == torch.int64
    load_checkpoint(_save(tiny_state, tmp_path / "ok.pth"))


def test_non_finite_weights_are_refused_even_without_verification(tiny_state, tmp_path):
    state = dict(tiny_state)
    keys = [key for key, value in state.items() if value.is_floating_point()]
    for key, value in ((keys[5], float("inf")), (keys[40], float("nan"))):
        tensor = state[key].clone()
        tensor.view(-1)[0] = value
        state[key] = tensor
    path = _save(state, tmp_path / "nan.pth")
    line = _export_refused(path, tmp_path, f"tensor {keys[5]!r} holds 1 non-finite value",
                           "--no-verify")
    assert keys[40] not in line  # the first such tensor is named


def test_zero_stride_view_is_refused_before_any_allocation(tiny_state, tmp_path):
    width = tiny_state["cls_head.weight"].shape[1]
    state = dict(tiny_state)
    state["cls_head.weight"] = torch.zeros(1).expand(100_000, width, 1, 1)  # 4 bytes stored
    path = _save(state, tmp_path / "stride0.pth")
    assert path.stat().st_size < 2_000_000
    _export_refused(path, tmp_path, "tensor 'cls_head.weight' claims shape [100000", "--no-verify")


def test_overlapping_view_is_refused(tiny_state, tmp_path):
    stored = torch.zeros(128)  # 64 x 64 values read from 127 stored ones
    state = dict(tiny_state, **{"bn1.running_var": stored.as_strided((64, 64), (1, 1))})
    _export_refused(_save(state, tmp_path / "overlap.pth"), tmp_path,
                    "claims shape [64, 64] (4096 values) but the file stores only 128")


def test_too_many_classes_are_refused(tiny_state, tmp_path):
    width = tiny_state["cls_head.weight"].shape[1]
    state = dict(tiny_state)
    state["cls_head.weight"] = torch.zeros(MAX_CLASSES + 1, width, 1, 1)
    state["cls_head.bias"] = torch.zeros(MAX_CLASSES + 1)
    _export_refused(_save(state, tmp_path / "k.pth"), tmp_path,
                    f"predicts {MAX_CLASSES + 1} classes, outside 1..{MAX_CLASSES}")


def test_absurd_channel_width_is_refused(tiny_state, tmp_path):
    state = dict(tiny_state, **{"bn1.running_mean": torch.zeros(MAX_CHANNELS + 1)})
    _export_refused(_save(state, tmp_path / "wide.pth"), tmp_path,
                    f"tensor 'bn1.running_mean' has shape [{MAX_CHANNELS + 1}]")


# ---- pickles that would run code ---------------------------------------------------------------

class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_files(folder: Path, tiny_state: dict) -> dict[str, Path]:
    marker = folder / "PWNED"
    payload = {"state_dict": tiny_state, "meta": {"x": _RunsCode(marker)}}
    files = {"zip": _save(payload, folder / "zip.pth"),
             "legacy": _save(payload, folder / "legacy.pth", _use_new_zipfile_serialization=False,
                             pickle_protocol=4)}
    raw = folder / "raw.pth"
    raw.write_bytes(pickle.dumps({"x": _RunsCode(marker)}, protocol=5))
    files["raw"] = raw
    # Hidden behind a bookkeeping object of a known framework: still refused.
    hub = {"state_dict": tiny_state, "message_hub": collections.OrderedDict(x=_RunsCode(marker))}
    files["nested"] = _save(hub, folder / "nested.pth")
    return files


@pytest.mark.parametrize("case", ["zip", "legacy", "raw", "nested"])
def test_pickle_that_would_run_code_is_refused(tiny_state, tmp_path, case):
    path = _malicious_files(tmp_path, tiny_state)[case]
    _export_refused(path, tmp_path, f"its pickle calls {os.system.__module__}.system, which would "
                                    "run code", "--no-verify")
    info = RUNNER.invoke(app, ["info", str(path)])
    assert info.exit_code == 1 and "would run code" in info.stderr
    assert not (tmp_path / "PWNED").exists()


def test_unknown_objects_are_refused_without_being_built(tiny_state, tmp_path):
    import argparse

    path = _save({"args": argparse.Namespace(lr=0.01), "state_dict": tiny_state},
                 tmp_path / "args.pth")
    _export_refused(path, tmp_path, "(argparse.Namespace) and would need unsafe unpickling")


# ---- damaged files -----------------------------------------------------------------------------

@pytest.mark.parametrize("keep,fragment", [(0.5, "it is truncated or crafted"),
                                           (0.001, "it is probably truncated or corrupt")])
def test_truncated_legacy_pickle(tiny_state, tmp_path, keep, fragment):
    data = _save(tiny_state, tmp_path / "whole.pth", _use_new_zipfile_serialization=False).read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: int(len(data) * keep)])
    _export_refused(path, tmp_path, fragment)


def _legacy_claiming(path: Path, numel: int) -> Path:
    """A legacy torch.save file whose one storage claims `numel` floats but holds 4."""

    class Claim:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (_Storage(), 0, (4,), (1,), False, collections.OrderedDict()))

    class _Storage:
        pass

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) \
                if isinstance(obj, _Storage) else None

    stream = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001,
                                                   "little_endian": True}):
        pickle.dump(header, stream, protocol=2)
    Pickler(stream, protocol=2).dump({"cls_head.weight": Claim()})
    pickle.dump(["0"], stream, protocol=2)
    stream.write((4).to_bytes(8, "little") + bytes(16))
    path.write_bytes(stream.getvalue())
    return path


def test_legacy_storage_claiming_more_than_the_file_holds(tmp_path):
    path = _legacy_claiming(tmp_path / "claims.pth", 10**10)
    _export_refused(path, tmp_path, "claims 40000.0 MB of tensor data but the file holds")


def test_truncated_mmseg_checkpoint(family_checkpoint, tmp_path):
    data = family_checkpoint("mm_ocrnet_hr18_k19", "mmseg1-training").read_bytes()
    path = tmp_path / "mm_cut.pth"
    path.write_bytes(data[: len(data) * 2 // 3])
    _export_refused(path, tmp_path, "damaged zip archive")


# ---- formats that must load --------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legacy_pickles_load(tiny_state, tmp_path, protocol):
    path = _save({f"model.{k}": v for k, v in tiny_state.items()}, tmp_path / "legacy.pth",
                 _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    assert path.read_bytes()[:2] == bytes([0x80, protocol])
    checkpoint = load_checkpoint(path)
    assert all(torch.equal(checkpoint.state_dict[k], v) for k, v in tiny_state.items())


def test_legacy_claim_survey_reads_real_files(tiny_state, tmp_path):
    from exporters.safe_unpickle import legacy_storage_bytes

    path = _save(tiny_state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    expected = sum(t.untyped_storage().nbytes() for t in tiny_state.values())
    assert legacy_storage_bytes(path) == expected
    assert legacy_storage_bytes(_legacy_claiming(tmp_path / "c.pth", 7)) == 28


def test_uppercase_safetensors_suffix_loads(tiny_state, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "WEIGHTS.SAFETENSORS"
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, path)
    checkpoint = load_checkpoint(path)
    assert torch.equal(checkpoint.state_dict["cls_head.weight"], tiny_state["cls_head.weight"])


def test_zip_with_protocol_4_pickle_loads(tiny_state, tmp_path):
    path = _save(tiny_state, tmp_path / "p4.pth", pickle_protocol=4)
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert data[:2] == b"\x80\x04"
    assert torch.equal(load_checkpoint(path).state_dict["bn1.weight"], tiny_state["bn1.weight"])
