"""`ocr-deploy batch` on a real local Ray: outputs equal to `infer`, corrupt input recorded,
stop and restart without recomputing, same stems in different folders kept apart.

One Ray session (num_cpus=2) serves every test: the CLI runs in-process with CliRunner and
joins the Ray this process already has, so Ray starts once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from ocr_deploy.batch import ERRORS_NAME, RESULTS_NAME, STOP_AFTER_ENV
from ocr_deploy.testframes import synthetic_frame

pytest.importorskip("ray.data", reason="needs the [cluster] extra (ray[data])")
pq = pytest.importorskip("pyarrow.parquet")

RUNNER = CliRunner()
HEIGHT, WIDTH, VIDEO_FRAMES = 64, 128, 3
IMAGES = ("a/img0.png", "a/img1.png", "a/img2.jpg", "b/img0.png")  # a/img0 and b/img0: one stem


@pytest.fixture(scope="session")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batch_inputs")
    for seed, name in enumerate(IMAGES):
        (root / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(root / name), synthetic_frame(HEIGHT, WIDTH, seed=seed))
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for number in range(2):
        writer = cv2.VideoWriter(str(root / f"drive{number}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                 10.0, (WIDTH, HEIGHT))
        for index in range(VIDEO_FRAMES):
            writer.write(synthetic_frame(HEIGHT, WIDTH, seed=10 * number + index))
        writer.release()
    return root


def _batch(inputs: Path, out: Path, model: Path, *extra: object, workers: int = 1, env: dict | None = None):
    """The CLI in this process, joining the test session's Ray (one actor start-up per worker)."""
    return RUNNER.invoke(app, ["batch", str(inputs), "-o", str(out), "--model", str(model),
                               "--address", "auto", "--workers", str(workers), "--batch", "2",
                               "--no-progress", *map(str, extra)], env=env)


@pytest.fixture(scope="session")
def clean_run(local_ray, inputs, tiny_onnx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("batch_clean") / "out"
    result = _batch(inputs, out, tiny_onnx, workers=2)
    assert result.exit_code == 0, result.output
    assert "finished 7 of 7 input(s)" in result.stdout, result.stdout
    return out


def _labels(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def _rows(out: Path) -> dict[tuple[str, int], dict]:
    return {(row["path"], row["frame"]): row for row in pq.read_table(out / RESULTS_NAME).to_pylist()}


def test_outputs_equal_infer_and_corrupt_file_recorded(clean_run, inputs, tiny_onnx, tmp_path):
    for folder in ("a", "b"):
        result = RUNNER.invoke(app, ["infer", str(inputs / folder), "--model", str(tiny_onnx),
                                     "-o", str(tmp_path / folder), "--no-progress"])
        assert result.exit_code == 0, result.output
    for name in IMAGES:  # same stem in a/ and b/: two outputs, each equal to infer's
        stem = Path(name).with_suffix("")
        batch = _labels(clean_run / f"{stem}_labels.png")
        np.testing.assert_array_equal(batch, _labels(tmp_path / f"{stem}_labels.png"))
        assert (clean_run / f"{stem}_overlay.jpg").is_file()
    assert not np.array_equal(_labels(clean_run / "a/img0_labels.png"), _labels(clean_run / "b/img0_labels.png"))
    result = RUNNER.invoke(app, ["infer", str(inputs / "drive1.mp4"), "--model", str(tiny_onnx),
                                 "-o", str(tmp_path / "video"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert ((clean_run / "drive1_classes.csv").read_text()
            == (tmp_path / "video" / "drive1_classes.csv").read_text())
    assert (clean_run / "drive1_overlay.mp4").stat().st_size > 0

    rows = _rows(clean_run)
    assert len(rows) == len(IMAGES) + 2 * VIDEO_FRAMES
    video_rows = sorted(row["frame"] for (path, _), row in rows.items() if path.endswith("drive0.mp4"))
    assert video_rows == list(range(VIDEO_FRAMES))
    image_row = rows[(str(inputs / "b" / "img0.png"), 0)]
    fractions = np.bincount(_labels(clean_run / "b/img0_labels.png").ravel(), minlength=19) / (HEIGHT * WIDTH)
    np.testing.assert_allclose(image_row["class_fractions"], fractions, atol=1e-6)
    assert image_row["outputs"] == ["b/img0_labels.png", "b/img0_overlay.jpg"]
    errors = pq.read_table(clean_run / ERRORS_NAME).to_pylist()
    assert [row["path"] for row in errors] == [str(inputs / "a" / "broken.png")]
    assert "not a readable image" in errors[0]["error"]


def test_stop_and_restart_equal_a_clean_run(local_ray, clean_run, inputs, tiny_onnx, tmp_path):
    out = tmp_path / "out"
    stopped = _batch(inputs, out, tiny_onnx, env={STOP_AFTER_ENV: "3"})
    assert stopped.exit_code == 130, stopped.output
    first = _rows(out)
    done_first = {path for path, _ in first}
    assert 3 <= len(done_first) < 7
    stamps = {path: [(out / name).stat().st_mtime_ns for name in row["outputs"]]
              for (path, _), row in first.items()}

    restarted = _batch(inputs, out, tiny_onnx, "--fail-on-error")
    assert restarted.exit_code == 1, restarted.output  # broken.png failed again; the clean run said 0
    assert f"{len(done_first)} done before" in restarted.stdout, restarted.stdout
    assert f"finished {7 - len(done_first)} of 7" in restarted.stdout and "1 failure(s)" in restarted.stdout
    for (path, _), row in first.items():  # not recomputed: the same files, untouched
        assert [(out / name).stat().st_mtime_ns for name in row["outputs"]] == stamps[path]
    final, clean = _rows(out), _rows(clean_run)
    assert final.keys() == clean.keys()
    for key, row in clean.items():
        np.testing.assert_array_equal(final[key]["class_fractions"], row["class_fractions"])
        assert final[key]["outputs"] == row["outputs"]
    for name in IMAGES:
        labels = f"{Path(name).with_suffix('')}_labels.png"
        np.testing.assert_array_equal(_labels(out / labels), _labels(clean_run / labels))


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_bad_inputs_are_one_line_and_write_nothing(inputs, tiny_onnx, tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("file\na/img0.png\n")
    out = tmp_path / "out"
    _one_line_error(_batch(manifest, out, tiny_onnx), "no 'path' column")
    _one_line_error(_batch(inputs, inputs / "a" / "out", tiny_onnx), "inside the input folder")
    unreachable = RUNNER.invoke(app, ["batch", str(inputs), "-o", str(out), "--model", str(tiny_onnx),
                                      "--address", "127.0.0.1:1"])
    _one_line_error(unreachable, "cannot reach --address 127.0.0.1:1")
    assert not out.exists() and not (inputs / "a" / "out").exists()


def test_without_ray_says_how_to_install(inputs, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = _batch(inputs, tmp_path / "out", tiny_onnx)
    _one_line_error(result, "pip install 'ocr-deploy[cluster]'")
    assert not os.path.exists(tmp_path / "out")


def test_model_that_fails_on_the_workers_is_one_line(local_ray, inputs, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    out = tmp_path / "out"
    _one_line_error(_batch(inputs, out, broken), "the model failed to load on a worker")
    assert not out.exists()


def test_manifest_and_output_names(inputs, tmp_path):
    """No Ray: a Parquet manifest's relative paths, mirrored names, one stem in two folders."""
    import pyarrow as pa

    from ocr_deploy.batch import plan_items

    manifest = inputs / "list.parquet"
    pq.write_table(pa.table({"path": ["b/img0.png", "a/img0.png", "drive0.mp4"], "note": [1, 2, 3]}),
                   manifest)
    try:
        items = plan_items([str(manifest), str(inputs / "b" / "img0.png")], tmp_path / "out")
    finally:
        manifest.unlink()
    assert [(item.stem, item.kind) for item in items] == [
        ("a/img0", "image"), ("b/img0", "image"), ("drive0", "video")]


def test_worker_rows_past_bad_images_without_ray(tiny_onnx, tmp_path):
    """The actor's code called directly: a good image, one too small for the network and a
    corrupt one give rows in input order, two errors, and the good image's outputs."""
    import pyarrow as pa

    from ocr_deploy.batch import WorkerConfig, model_digest, plan_items
    from ocr_deploy.batch.workers import SegmentWorker, work_units

    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), synthetic_frame(HEIGHT, WIDTH, seed=3))
    cv2.imwrite(str(folder / "small.png"), synthetic_frame(8, 8, seed=4))
    (folder / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n torn")
    config = WorkerConfig(model=str(tiny_onnx), model_sha256=model_digest(tiny_onnx),
                          out=str(tmp_path / "out"), image_save=("labels",), video_save=("csv",),
                          threads=1, batch=2)
    units = work_units(plan_items([str(folder)], tmp_path / "out"), workers=1, batch=8)
    assert len(units) == 1 and units[0]["stems"] == ["good", "small", "torn"]
    rows = SegmentWorker(config)(pa.Table.from_pylist(units)).to_pylist()
    assert [(Path(row["path"]).name, bool(row["error"])) for row in rows] == [
        ("good.png", False), ("small.png", True), ("torn.png", True)]
    assert "at least" in rows[1]["error"] and "not a readable image" in rows[2]["error"]
    assert rows[0]["frame"] == 0 and rows[0]["outputs"] == ["good_labels.png"]
    assert (tmp_path / "out" / "good_labels.png").is_file()


def test_work_units_put_videos_first_and_spread_images():
    from ocr_deploy.batch import WorkItem
    from ocr_deploy.batch.workers import IMAGES_PER_UNIT, work_units

    items = ([WorkItem(f"/in/{n}.png", str(n), "image", 10) for n in range(40)]
             + [WorkItem("/in/short.mp4", "short", "video", 100), WorkItem("/in/long.mp4", "long", "video", 900)])
    units = work_units(items, workers=2, batch=1)
    assert [unit["stems"] for unit in units[:2]] == [["long"], ["short"]]
    assert [len(unit["paths"]) for unit in units[2:]] == [IMAGES_PER_UNIT] * 5
    few = work_units(items[:6], workers=2, batch=1)  # 6 images, 2 workers: units of 2
    assert [len(unit["paths"]) for unit in few] == [2, 2, 2]
    assert [len(unit["paths"]) for unit in work_units(items[:6], workers=2, batch=4)] == [4, 2]


def test_input_that_crashes_its_worker_is_recorded_and_the_rest_goes_on(local_ray, tiny_onnx, tmp_path):
    """A worker process that dies (as in a decoder's segfault) on one input: the unit is tried
    again, then its images one per unit; only the input at fault is recorded, exit status 0."""
    from ocr_deploy.batch import CRASH_ON_ENV

    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(3):
        cv2.imwrite(str(folder / f"x{seed}.png"), synthetic_frame(HEIGHT, WIDTH, seed=seed))
    out = tmp_path / "out"
    result = _batch(folder, out, tiny_onnx, "--retries", "0", workers=2, env={CRASH_ON_ENV: "x1.png"})
    assert result.exit_code == 0, result.output
    assert "finished 3 of 3 input(s)" in result.stdout and "1 failure(s)" in result.stdout, result.stdout
    assert sorted(Path(path).name for path, _ in _rows(out)) == ["x0.png", "x2.png"]
    errors = pq.read_table(out / ERRORS_NAME).to_pylist()
    assert [Path(row["path"]).name for row in errors] == ["x1.png"] and "crashed" in errors[0]["error"]
