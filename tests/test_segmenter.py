"""Segmenter on real exported models: equal to the raw graph, batch, stream, threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from ocr_deploy.segmenter import Segmenter
from ocr_deploy.sources import Frame
from ocr_deploy.testframes import synthetic_frame

SIZES = [(96, 160), (77, 131), (64, 64), (96, 160)]


def _frames() -> list[np.ndarray]:
    return [synthetic_frame(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]


def _graph_labels(path, frame) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": frame[None]})[0][0]


def test_segment_equals_the_graph(tiny_onnx):
    segmenter = Segmenter.open(tiny_onnx, device="cpu")
    for frame in _frames():
        result = segmenter.segment(frame)
        assert (result.labels == _graph_labels(tiny_onnx, frame)).all()
        assert result.color.shape == frame.shape and result.overlay.shape == frame.shape
        assert abs(result.class_fractions.sum() - 1.0) < 1e-9
        assert set(result.timings) == {"pre", "infer", "post"}


def test_batch_and_stream_equal_single_frames(tiny_onnx):
    segmenter = Segmenter.open(tiny_onnx, device="cpu")
    frames = _frames()
    single = [segmenter.segment(frame).labels for frame in frames]
    batched = [result.labels for result in segmenter.segment_batch(frames)]
    tagged = [Frame(frame, index, f"f{index}") for index, frame in enumerate(frames)]
    streamed = list(segmenter.stream(tagged, batch_size=2))
    assert [r.source.index for r in streamed] == [0, 1, 2, 3]
    for reference, other, stream_result in zip(single, batched, streamed, strict=True):
        assert (reference == other).all() and (reference == stream_result.labels).all()


def test_stream_stops_early_and_reports_bad_frames(tiny_onnx):
    segmenter = Segmenter.open(tiny_onnx, device="cpu")
    bad = []
    frames = [synthetic_frame(64, 64, seed=0), np.zeros((10, 10, 3), np.uint8),
              synthetic_frame(64, 64, seed=1)]
    results = list(segmenter.stream(frames, on_bad_frame=lambda item, error: bad.append(error)))
    assert len(results) == 2 and len(bad) == 1 and "at least 32 px" in str(bad[0])

    def endless():
        while True:
            yield synthetic_frame(64, 64)

    stream = segmenter.stream(endless())
    assert next(stream).labels.shape == (64, 64)
    import threading

    closer = threading.Thread(target=stream.close)  # must return, stopping the worker threads
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive()


def test_shared_across_threads(tiny_onnx):
    """As documented: one Segmenter may serve several threads at once."""
    segmenter = Segmenter.open(tiny_onnx, device="cpu", render=("color",))
    frames = [synthetic_frame(96, 128, seed=i) for i in range(16)]
    expected = [segmenter.segment(frame).labels for frame in frames]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            results = list(pool.map(segmenter.segment, frames))
            assert all((r.labels == e).all() for r, e in zip(results, expected, strict=True))


def test_fixed_size_model_letterboxes_back_to_frame_size(export_tiny, tiny_onnx):
    static = Segmenter.open(export_tiny(height=96, width=128, batch=2), device="cpu")
    frame = synthetic_frame(48, 64, seed=5)  # scale 2 fills the 96x128 input exactly
    result = static.segment(frame)
    assert result.labels.shape == (48, 64)
    upscaled = Segmenter.open(tiny_onnx, device="cpu", size=(96, 128)).segment(frame)
    assert (result.labels == upscaled.labels).all()
    assert len(static.segment_batch([frame] * 3)) == 3  # fixed batch 2: padded second call


def test_logits_model_gives_the_same_labels(export_tiny, tiny_onnx):
    frame = synthetic_frame(90, 150, seed=2)
    from_logits = Segmenter.open(export_tiny(output_kind="logits"), device="cpu").segment(frame)
    from_labels = Segmenter.open(tiny_onnx, device="cpu").segment(frame)
    assert (from_logits.labels == from_labels.labels).mean() >= 0.999


def test_model_without_our_metadata(foreign_onnx):
    from ocr_deploy.errors import ModelFileError

    with pytest.raises(ModelFileError, match="ocr-deploy export CHECKPOINT"):
        Segmenter.open(foreign_onnx)


def test_runtime_never_imports_torch(tiny_onnx):
    """In a fresh interpreter where importing torch fails, every runtime module imports and
    the runtime still segments."""
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        import ocr_deploy
        modules = [m.name for m in pkgutil.walk_packages(ocr_deploy.__path__, "ocr_deploy.")]
        for name in modules:
            importlib.import_module(name)
        assert len(modules) > 15, modules
        from ocr_deploy.segmenter import Segmenter
        from ocr_deploy.testframes import synthetic_frame
        result = Segmenter.open({str(tiny_onnx)!r}, device="cpu").segment(synthetic_frame(64, 96))
        assert result.labels.shape == (64, 96)
        assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
        assert not any(name.startswith("exporters") for name in sys.modules)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
