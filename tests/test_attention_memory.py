"""The memory of all-pairs self-attention (OCNet's OC blocks) that `export` and `infer` state, and
the sliding-window advice above the limit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cli import app
from ocr_deploy.attention import (
    ATTENTION_LIMIT_BYTES,
    AttentionMemory,
    attention_memory,
    attention_note,
    attention_rows,
)
from ocr_deploy.meta import META_KEY, DatasetSpec, InputSpec, ModelMeta, NetworkSpec, OutputSpec, Provenance
from ocr_deploy.preprocess import plan_size
from ocr_deploy.presets import load_preset
from ocr_deploy.testframes import synthetic_frame

GIB, MIB = 1 << 30, 1 << 20


def _meta(stride: int | None = 8, *, kind: str = "logits", precision: str = "fp32",
          islands: bool = True, title: str = "OCNet Base-OC", **input_options) -> ModelMeta:
    preset = load_preset("cityscapes")
    settings = {"key_channels": 256} | ({"self_attention_stride": stride} if stride else {})
    return ModelMeta(
        network=NetworkSpec(family="ocnet_resnet", title=title, variant="resnet101",
                            num_classes=19, align_corners=True, settings=settings),
        dataset=DatasetSpec(preset.name, preset.classes, preset.palette, preset.test_policy),
        input=InputSpec(**input_options),
        output=OutputSpec(kind=kind, name=kind, dtype="uint8" if kind == "labels" else "float32"),
        provenance=Provenance("base_oc.pth", "0" * 64, "test", precision=precision,
                              fp32_islands=islands))


def test_base_oc_at_cityscapes_size_is_4_gib():
    memory = attention_memory(_meta(), 1024, 2048)
    assert memory == AttentionMemory("OCNet Base-OC", 1024, 2048, 8, 4)
    assert memory.positions == 128 * 256 == 32768 and memory.bytes == 4 * GIB
    assert "32768 x 32768" in memory.describe() and "4 GiB per frame in FP32" in memory.describe()
    assert attention_memory(_meta(16), 1024, 2048).bytes == 256 * MIB  # ASP-OC pools by 2
    assert attention_memory(_meta(), 512, 1024).bytes == 256 * MIB
    assert attention_memory(_meta(), 1000, 1000).positions == 125 * 125
    assert attention_memory(_meta(), 1001, 1000).positions == 126 * 125  # partial cells count
    assert attention_memory(_meta(None, title="HRNet-OCR"), 1024, 2048) is None  # K regions only


def test_element_size_follows_the_artifact_precision():
    """An FP16 graph keeps the similarity map in its FP32 island; without islands it is FP16."""
    assert attention_memory(_meta(precision="fp16"), 1024, 2048).bytes == 4 * GIB
    assert attention_memory(_meta(precision="fp16", islands=False), 1024, 2048).bytes == 2 * GIB
    assert attention_memory(_meta(precision="bf16"), 1024, 2048).bytes == 2 * GIB


def test_note_suggests_a_tile_that_fits_the_limit():
    note = attention_note(_meta(), (1024, 2048))
    assert note.startswith("OCNet Base-OC self-attention at 1024x2048: 32768 positions (1/8)")
    assert "above 1 GiB: run with --policy sliding --tile 1024x1024 --overlap 0.33" in note
    assert "--output logits" not in note  # this export has logits already
    assert attention_memory(_meta(), 1024, 1024).bytes <= ATTENTION_LIMIT_BYTES
    labels = attention_note(_meta(kind="labels"), (1024, 2048))
    assert labels.endswith("(needs a logits or probs export: ocr-deploy export CHECKPOINT "
                           "--output logits)")
    small = attention_note(_meta(), (512, 1024))
    assert small.endswith("256 MiB per frame in FP32") and "--policy" not in small
    tight = attention_note(_meta(), (1024, 2048), limit_bytes=64 * MIB)
    assert "--tile 512x512" in tight and attention_memory(_meta(), 512, 512).bytes <= 64 * MIB
    wide = AttentionMemory("x", 300, 4000, 8, 4).suggested_tile()
    assert (wide.height, wide.width) == (300, 1024)  # never taller than the frame
    assert attention_note(_meta(None), (1024, 2048)) is None


def test_note_at_the_size_each_policy_runs():
    meta = _meta()
    assert "(the cityscapes test size)" in attention_note(meta, None)
    assert "4 GiB" in attention_note(meta, None)
    tiled = plan_size(meta, policy="sliding", tile=(512, 512))
    note = attention_note(meta, tiled.network_size, tiled=True)
    assert note == ("OCNet Base-OC self-attention at 512x512: 4096 positions (1/8), a 4096 x 4096 "
                    "similarity map, 64 MiB per tile in FP32")
    letterboxed = plan_size(meta, size=(512, 1024))
    assert "at 512x1024" in attention_note(meta, letterboxed.network_size)
    fixed = _meta(height=256, width=512)
    assert "at 256x512" in attention_note(fixed, None) and "test size" not in attention_note(fixed, None)
    assert attention_rows(meta)[0][0] == "attention" and attention_rows(_meta(None)) == []
    no_size = dataclasses.replace(meta, dataset=dataclasses.replace(
        meta.dataset, name="custom", test_policy=load_preset("cityscapes").test_policy))
    assert attention_note(no_size, None) is None  # nothing to say without a size


def _pointwise_graph(path: Path, meta: ModelMeta) -> Path:
    """A real ONNX graph (raw frames -> 1x1 conv -> logits) carrying `meta`."""
    weight = numpy_helper.from_array(np.full((19, 3, 1, 1), 0.01, np.float32), "w")
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["x", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["n", "h", "w", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 19, "h", "w"])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("options,expected", [
    ((), "at 1024x2048: 32768 positions (1/8), a 32768 x 32768 similarity map, 4 GiB per frame "
         "in FP32 (the cityscapes test size); above 1 GiB: run with "
         "--policy sliding --tile 1024x1024 --overlap 0.33"),
    (("--policy", "sliding", "--tile", "64x64"), "at 64x64: 64 positions (1/8), a 64 x 64 "
                                                 "similarity map, 16 KiB per tile in FP32"),
])
def test_infer_states_the_attention_memory(tmp_path, options, expected):
    model = _pointwise_graph(tmp_path / "base_oc.onnx", _meta())
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), synthetic_frame(64, 96, seed=0))
    result = CliRunner().invoke(app, ["infer", str(image), "--model", str(model), "-o",
                                      str(tmp_path / "out"), "--save", "labels", "--no-progress",
                                      *options])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("attention: ")]
    assert lines == [f"attention: OCNet Base-OC self-attention {expected}"]
