"""INT8 by NNCF post-training quantization: the float scope by structure, calibration frames,
and the trained demo model quantized for real (OpenVINO IR and QDQ ONNX) and proved on
held-out generated scenes."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

pytest.importorskip("nncf", reason="INT8 needs the [quantize] extra (nncf)")
ov = pytest.importorskip("openvino", reason="INT8 needs the [openvino] extra")

from exporters.fp16 import find_fp32_islands  # noqa: E402
from exporters.int8 import (  # noqa: E402
    MIN_CALIBRATION_FRAMES,
    CalibrationError,
    calibration_frames,
    qdq_agreement,
    quantize_to_ir,
    quantize_to_onnx,
    require_agreement,
)
from exporters.int8_scope import kept_in_float  # noqa: E402
from exporters.onnx_files import load_model  # noqa: E402
from ocr_deploy.assets import demo_model  # noqa: E402
from ocr_deploy.backends.openvino import inference_hint  # noqa: E402
from ocr_deploy.errors import VerificationError  # noqa: E402
from ocr_deploy.metrics import SegmentationScores, confusion_matrix  # noqa: E402
from ocr_deploy.vocabulary import Precision  # noqa: E402
from training.evaluate_demo import held_out_scenes  # noqa: E402

HELD_OUT = 6  # generated scenes, seeds 0..5 (the demo model's held-out set)


@pytest.fixture(scope="module")
def demo():
    return load_model(demo_model())


@pytest.fixture(scope="module")
def calibration(demo):
    return calibration_frames(demo[1], None, count=MIN_CALIBRATION_FRAMES)


@pytest.fixture(scope="module")
def scenes():
    return list(held_out_scenes(HELD_OUT))


@pytest.fixture(scope="module")
def held_out(scenes):
    return [(f"scene {seed}", image) for seed, (image, _) in enumerate(scenes)]


@pytest.fixture(scope="module")
def ir_int8(demo, calibration, held_out):
    return quantize_to_ir(demo_model(), demo[1], calibration, held_out)


def _attention_graph() -> onnx.ModelProto:
    """OCNet-like: conv, self-attention (MatMul, Div, Softmax, MatMul), classifier conv,
    upsampling and a probabilities softmax over classes."""
    rng = np.random.default_rng(0)

    def weights(name, *shape):
        return onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    def ints(name, values):
        return onnx.numpy_helper.from_array(np.array(values, np.int64), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["f"], name="features", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["f"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "flat"], ["q"], name="flatten"),
        helper.make_node("Transpose", ["q"], ["qt"], name="to_pixels", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["qt", "q"], ["sim"], name="similarity"),
        helper.make_node("Div", ["sim", "scale"], ["sim_s"], name="scale_sim"),
        helper.make_node("Softmax", ["sim_s"], ["attn"], name="attention", axis=-1),
        helper.make_node("MatMul", ["attn", "qt"], ["ctx"], name="context"),
        helper.make_node("Transpose", ["ctx"], ["ctx_t"], name="to_channels", perm=[0, 2, 1]),
        helper.make_node("Reshape", ["ctx_t", "square"], ["ctx_map"], name="unflatten"),
        helper.make_node("Conv", ["ctx_map", "w2", "b2"], ["small"], name="classifier"),
        helper.make_node("Resize", ["small", "", "", "sizes"], ["logits"], name="upsample",
                         mode="linear"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="probs_head", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4, 16, 16])],
        [weights("w1", 8, 3, 3, 3), weights("w2", 4, 8, 1, 1), weights("b2", 4),
         onnx.numpy_helper.from_array(np.array(2.8, np.float32), "scale"),
         ints("flat", [1, 8, 64]), ints("square", [1, 8, 8, 8]), ints("sizes", [1, 4, 16, 16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_attention_and_classifier_found_by_structure_on_both_graph_flavours(tmp_path):
    model = _attention_graph()
    kept = kept_in_float(model)
    assert kept.islands == (("attention", "context", "scale_sim", "similarity"),)
    assert kept.classifiers == ("classifier",)  # the probs softmax over classes is no island
    assert kept.inputs == ("features",)
    onnx.save(model, str(tmp_path / "attention.onnx"))
    on_openvino = kept_in_float(ov.Core().read_model(str(tmp_path / "attention.onnx")))
    assert on_openvino.islands == kept.islands
    assert on_openvino.classifiers == ("classifier/WithoutBiases",)  # the Conv without its bias Add
    assert on_openvino.inputs == ("features",)  # no bias, no Add: the ONNX name


def test_demo_scope_holds_the_ocr_islands_both_classifiers_and_the_stem(demo):
    model, _ = demo
    kept = kept_in_float(model)
    assert sorted(map(sorted, kept.islands)) == sorted(map(sorted, find_fp32_islands(model)))
    weights = {node.name: node.input[1] for node in model.graph.node if node.op_type == "Conv"}
    # the final classifier (before upsampling and ArgMax) and the soft-region classifier that
    # feeds the gather softmax
    assert {weights[name] for name in kept.classifiers} == {"network.cls_head.weight",
                                                            "network.aux_head.3.weight"}
    assert [weights[name] for name in kept.inputs] == ["network.conv1.weight"]
    on_openvino = kept_in_float(ov.Core().read_model(str(demo_model())))
    assert on_openvino.islands == kept.islands  # OpenVINO keeps the ONNX node names here
    assert on_openvino.classifiers == tuple(f"{name}/WithoutBiases" for name in kept.classifiers)
    assert on_openvino.inputs == tuple(f"{name}/WithoutBiases" for name in kept.inputs)


def test_built_in_calibration_frames_are_varied_and_distinct_from_held_out(demo, calibration,
                                                                           held_out):
    assert len(calibration) == MIN_CALIBRATION_FRAMES
    assert {frame.shape[:2] for _, frame in calibration} == {(256, 512), (512, 1024)}
    assert any("demo_street" in name for name, _ in calibration)
    assert all(frame.dtype == np.uint8 and frame.shape[2] == 3 for _, frame in calibration)
    held = {image.tobytes() for _, image in held_out}
    assert not any(frame.tobytes() in held for _, frame in calibration)


def test_int8_ir_agrees_with_fp32_on_held_out_scenes(demo, ir_int8, scenes):
    int8, check = ir_int8
    assert check.agreement >= 0.99
    assert (check.calibration_frames, check.held_out_frames) == (MIN_CALIBRATION_FRAMES, HELD_OUT)
    assert check.ignored_nodes == 9 and "OpenVINO" in check.runtime
    assert any("99." in text for _, text in check.rows())
    # the same claim measured here, with quality against the scenes' ground truth
    core = ov.Core()
    fp32 = core.compile_model(core.read_model(str(demo_model())), "CPU",
                              {"INFERENCE_PRECISION_HINT": "f32"})
    quantized = core.compile_model(int8, "CPU",  # as the OpenVINO backend runs an int8 IR
                                   {"INFERENCE_PRECISION_HINT": inference_hint(Precision.int8)})
    classes = demo[1].num_classes
    confusion = {name: np.zeros((classes, classes), np.int64) for name in ("fp32", "int8")}
    equal = []
    for image, truth in scenes:
        labels = {name: model(image[None])[0][0] for name, model in (("fp32", fp32),
                                                                      ("int8", quantized))}
        equal.append((labels["fp32"] == labels["int8"]).mean())
        for name, prediction in labels.items():
            confusion[name] += confusion_matrix(prediction, truth, classes)
    assert np.mean(equal) >= 0.99
    assert np.mean(equal) == pytest.approx(check.agreement, abs=1e-6)
    miou = {name: SegmentationScores(matrix).mean_iou_present for name, matrix in confusion.items()}
    assert miou["fp32"] - miou["int8"] <= 0.01


def test_int8_ir_quantizes_convolutions_but_not_the_float_scope(ir_int8):
    int8, check = ir_int8
    ops = {op.get_friendly_name(): op for op in int8.get_ordered_ops()}

    def weight_type(op) -> str:  # the stored constant behind a (de)quantized weight
        node = op.input_value(1).get_node()
        while node.get_type_name() != "Constant":
            node = node.input_value(0).get_node()
        return node.get_element_type().get_type_name()

    def fed_by_fake_quantize(op) -> bool:
        return any(port.get_source_output().get_node().get_type_name() == "FakeQuantize"
                   for port in op.inputs())

    convolutions = {name for name, op in ops.items() if op.get_type_name() == "Convolution"}
    int8_weights = {name for name in convolutions if weight_type(ops[name]) == "i8"}
    in_float = {*check.kept.classifiers, *check.kept.inputs}
    assert int8_weights == convolutions - in_float
    assert {weight_type(ops[name]) for name in in_float} == {"f32"}
    assert not any(fed_by_fake_quantize(ops[name]) for name in check.kept.names)
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops.values()) >= 40


def test_refused_below_the_threshold_with_the_figure(ir_int8):
    _, check = ir_int8
    with pytest.raises(VerificationError) as caught:
        require_agreement(check, 1.0)
    message = str(caught.value)
    assert f"{100 * check.agreement:.3f} %" in message and "--calib" in message
    assert "\n" not in message


@pytest.fixture(scope="module")
def qdq_int8(demo, calibration, held_out):
    return quantize_to_onnx(demo_model(), demo[1], calibration, held_out)


def test_qdq_onnx_runs_on_onnx_runtime_and_agrees(demo, qdq_int8):
    int8, check = qdq_int8
    ops = {node.op_type for node in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert check.onnxruntime_error is None and check.runtime == "ONNX Runtime CPU"
    assert check.agreement >= 0.99 and check.ignored_nodes == 9
    assert [out.name for out in int8.graph.output] == [out.name for out in demo[0].graph.output]
    float_inputs = {node.input[0] for node in int8.graph.node if node.op_type == "Conv"
                    and node.name in check.kept.names}
    producers = {out: node.op_type for node in int8.graph.node for out in node.output}
    assert {producers[name] for name in float_inputs} == {"Relu", "Add"}  # no DequantizeLinear


def test_qdq_onnx_says_when_onnx_runtime_cannot_run_it(demo, qdq_int8, held_out, monkeypatch):
    import ocr_deploy.backends.onnxrt as onnxrt

    real = onnxrt.cpu_session
    sessions = []

    def refusing(*args, **kwargs):  # the FP32 reference opens first; refuse the QDQ graph
        sessions.append(1)
        if len(sessions) > 1:
            raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : simulated\nsecond line")
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxrt, "cpu_session", refusing)
    comparison, runtime, failure = qdq_agreement(demo[0], qdq_int8[0], demo[1], held_out)
    assert runtime == "OpenVINO CPU" and "simulated second line" in failure
    assert comparison.agreement >= 0.99
    check = dataclasses.replace(qdq_int8[1], comparison=comparison, runtime=runtime,
                                onnxruntime_error=failure)
    assert any(label == "onnxruntime" and "cannot run" in text for label, text in check.rows())


def _write_images(folder, count: int, *, readable: bool = True) -> str:
    import cv2

    folder.mkdir()
    for index in range(count):
        path = folder / f"frame_{index}.png"
        if readable:
            cv2.imwrite(str(path), np.full((64, 96, 3), 40 * index % 255, np.uint8))
        else:
            path.write_bytes(b"not a png")
    return str(folder)


@pytest.mark.parametrize("case", ["too few", "unreadable", "missing"])
def test_bad_calibration_frames_give_one_line(demo, tmp_path, case):
    spec = {"too few": lambda: _write_images(tmp_path / "few", 3),
            "unreadable": lambda: _write_images(tmp_path / "bad", 10, readable=False),
            "missing": lambda: str(tmp_path / "nowhere")}[case]()
    with pytest.raises(CalibrationError) as caught:
        calibration_frames(demo[1], spec, count=16)
    message = str(caught.value)
    assert "\n" not in message and "--calib" in message
    if case == "too few":
        assert "only 3 " in message


def test_a_folder_gives_its_frames(demo, tmp_path):
    frames = calibration_frames(demo[1], _write_images(tmp_path / "ok", 12), count=10)
    assert len(frames) == 10 and frames[0][1].shape == (64, 96, 3)


def test_quantize_refuses_too_few_or_overlapping_frames_before_quantizing(demo, calibration,
                                                                         held_out):
    with pytest.raises(CalibrationError, match="only 5 calibration"):
        quantize_to_ir(demo_model(), demo[1], calibration[:5], held_out)
    with pytest.raises(CalibrationError, match="also a calibration frame"):
        quantize_to_onnx(demo_model(), demo[1], calibration, [calibration[0]])
