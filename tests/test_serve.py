"""`ocr-deploy serve` on a real Triton Inference Server (PyTriton, CPU), its client and CLI.

One server (the shipped demo model, two instances, dynamic batching) runs in a subprocess for
the session; small frames keep the file to seconds of CPU. Labels must equal the local
Segmenter's on the same frames, over HTTP and gRPC, raw and encoded.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from ocr_deploy.assets import demo_model
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.testframes import synthetic_frame

pytest.importorskip("pytriton", reason="PyTriton is not installed (pip install 'ocr-deploy[serve]')")
pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
if int(np.__version__.split(".")[0]) >= 2:
    pytest.skip("PyTriton's Python backend needs numpy<2 (its own pin); this environment has "
                f"numpy {np.__version__}", allow_module_level=True)

from ocr_deploy.remote import RemoteSegmenter, parse_server  # noqa: E402  (after the skips)

REPO = Path(__file__).resolve().parents[1]
RUNNER = CliRunner()
MAX_PIXELS = 20_000  # a 160x160 frame is over it
SIZES = ((64, 128), (96, 96), (64, 64))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Server:
    def __init__(self, log: Path, *options: str):
        self.http, self.grpc, self.metrics = _free_ports(3)
        self.log = log
        command = [sys.executable, "-m", "cli", "serve", str(demo_model()), "--host", "127.0.0.1",
                   "--http-port", str(self.http), "--grpc-port", str(self.grpc),
                   "--metrics-port", str(self.metrics), "--exit-timeout", "3", *options]
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ocr-deploy serve exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            if "serving 'demo_street_w18s1'" in self.output():
                return
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"ocr-deploy serve did not start in {timeout_s} s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc}"

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("serve") / "server.log", "--instances", "2",
                     "--max-batch", "4", "--max-queue-delay-us", "2000", "--max-pixels", str(MAX_PIXELS))
    yield started
    assert started.stop() == 0, started.output()[-3000:]


@pytest.fixture(scope="session")
def local() -> Iterator[Segmenter]:
    with Segmenter.open(demo_model(), render=("color",)) as segmenter:
        yield segmenter


@pytest.fixture()
def client(server):
    import tritonclient.http as http

    opened = http.InferenceServerClient(f"127.0.0.1:{server.http}")
    yield opened
    opened.close()  # an open keep-alive connection holds a server's shutdown to its exit timeout


def _frames() -> list[np.ndarray]:
    return [synthetic_frame(height, width, seed=index) for index, (height, width) in enumerate(SIZES)]


def test_urls_pick_the_protocol():
    assert parse_server("localhost:8001").protocol == "grpc"
    assert parse_server("localhost:8000").protocol == "http"
    assert parse_server("grpc://10.0.0.2:9000").host_port == "10.0.0.2:9000"


@pytest.mark.parametrize("protocol,encoding", [("http", None), ("http", "png"), ("grpc", None), ("grpc", "png")])
def test_labels_equal_local_segmenter(server, local, protocol, encoding):
    url = server.http_url if protocol == "http" else server.grpc_url
    frames = _frames()
    with RemoteSegmenter(url, model="demo_street_w18s1", encoding=encoding, render=("color",)) as remote:
        assert remote.meta.dataset.classes == local.meta.dataset.classes
        got = remote.segment_batch(frames)
    for frame, result, expected in zip(frames, got, local.segment_batch(frames), strict=True):
        assert result.labels.shape == frame.shape[:2]
        np.testing.assert_array_equal(result.labels, expected.labels)
        np.testing.assert_allclose(result.class_fractions, expected.class_fractions, atol=1e-7)
        np.testing.assert_array_equal(result.color, expected.color)  # palette published, rendered here
        assert result.labels.max() > 0  # a street, not one class


def test_metadata_in_model_config(client, local):

    config = client.get_model_config("demo_street_w18s1")
    parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
    assert parameters["variant"] == local.meta.network.variant
    assert parameters["num_classes"] == "19"
    assert '"road"' in parameters["classes"]
    assert config["max_batch_size"] == 4 and config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert len(config["instance_group"]) == 1 and config["instance_group"][0]["count"] == 2
    outputs = {item["name"]: item["datatype"] for item in client.get_model_metadata("demo_street_w18s1")["outputs"]}
    assert outputs == {"labels": "UINT8", "class_fractions": "FP32", "overlay": "BYTES"}


def test_overlay_on_request(client, local):
    import tritonclient.http as http

    frame = _frames()[0]
    tensor = http.InferInput("encoded", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[cv2.imencode(".png", frame)[1].tobytes()]], dtype=object))
    result = client.infer("demo_street_w18s1", [tensor], parameters={"overlay": True})
    overlay = cv2.imdecode(np.frombuffer(result.as_numpy("overlay")[0, 0], np.uint8), cv2.IMREAD_COLOR)
    expected = local.segment(frame).overlay
    assert overlay.shape == expected.shape and np.abs(overlay.astype(int) - expected).mean() < 8  # JPEG q85
    np.testing.assert_allclose(result.as_numpy("class_fractions")[0], local.segment(frame).class_fractions,
                               atol=1e-7)


def test_concurrent_clients_mixed_sizes(server, local):
    frames = _frames()
    expected = [result.labels for result in local.segment_batch(frames)]

    def client(seed: int) -> list[bool]:
        order = np.random.default_rng(seed).permutation(len(frames) * 2) % len(frames)
        url = server.grpc_url if seed % 2 else server.http_url
        with RemoteSegmenter(url, model="demo_street_w18s1") as remote:
            return [np.array_equal(remote.segment(frames[index]).labels, expected[index]) for index in order]

    with ThreadPoolExecutor(6) as pool:
        outcomes = [ok for result in pool.map(client, range(6)) for ok in result]
    assert len(outcomes) == 36 and all(outcomes)


def _refused(client, name: str, tensor) -> str:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as caught:
        client.infer(name, [tensor])
    return str(caught.value)


def test_bad_requests_rejected_server_keeps_serving(client, local):
    import tritonclient.http as http

    name = "demo_street_w18s1"

    def image(array: np.ndarray, datatype: str = "UINT8"):
        tensor = http.InferInput("image", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        return tensor

    assert "expects 'UINT8'" in _refused(client, name, image(np.zeros((1, 64, 64, 3), np.float32), "FP32"))
    assert "unexpected shape" in _refused(client, name, image(np.zeros((1, 64, 64, 4), np.uint8)))
    assert "at least 32 px" in _refused(client, name, image(np.zeros((1, 8, 8, 3), np.uint8)))
    assert "over the limit" in _refused(client, name, image(np.zeros((1, 160, 160, 3), np.uint8)))
    junk = http.InferInput("encoded", [1, 1], "BYTES")
    junk.set_data_from_numpy(np.array([[b"not an image at all"]], dtype=object))
    assert "not an image" in _refused(client, name, junk)
    assert "unknown model" in _refused(client, "no_such_model", image(np.zeros((1, 64, 64, 3), np.uint8)))
    frame = _frames()[0]
    result = client.infer(name, [image(frame[None])])  # still serving
    np.testing.assert_array_equal(result.as_numpy("labels")[0], local.segment(frame).labels)


def test_remote_errors_are_one_line(server):
    from ocr_deploy.serving import ServingError

    with RemoteSegmenter(server.http_url, model="demo_street_w18s1") as remote:
        with pytest.raises(ServingError, match="over the limit of 0.02 MP"):
            remote.segment(np.zeros((160, 160, 3), np.uint8))
    with pytest.raises(ServingError, match="unknown model"):
        RemoteSegmenter(server.http_url, model="no_such_model")


def test_infer_server_writes_the_local_outputs(server, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index, frame in enumerate(_frames()):
        cv2.imwrite(str(images / f"frame{index}.png"), frame)
    local_run = RUNNER.invoke(app, ["infer", str(images), "-o", str(tmp_path / "local"), "--no-progress"])
    assert local_run.exit_code == 0, local_run.output
    remote_run = RUNNER.invoke(app, ["infer", str(images), "-o", str(tmp_path / "remote"), "--no-progress",
                                     "--server", server.grpc_url, "--server-model", "demo_street_w18s1"])
    assert remote_run.exit_code == 0, remote_run.output
    written = sorted(path.relative_to(tmp_path / "local") for path in (tmp_path / "local").rglob("*")
                     if path.is_file())
    assert written and written == sorted(path.relative_to(tmp_path / "remote")
                                         for path in (tmp_path / "remote").rglob("*") if path.is_file())
    for relative in written:
        if relative.suffix == ".png":  # labels, colours, overlays: pixel for pixel
            local_image = cv2.imread(str(tmp_path / "local" / relative), cv2.IMREAD_UNCHANGED)
            remote_image = cv2.imread(str(tmp_path / "remote" / relative), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(local_image, remote_image, err_msg=str(relative))


def test_unreachable_server_is_one_line(tmp_path):
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), _frames()[0])
    port = _free_ports(1)[0]
    result = RUNNER.invoke(app, ["infer", str(frame), "-o", str(tmp_path / "out"), "--no-progress",
                                 "--server", f"http://127.0.0.1:{port}", "--server-model", "m"])
    assert result.exit_code == 1
    assert "cannot reach a Triton server at http://127.0.0.1:" in result.output
    assert "Traceback" not in result.output


def test_serve_start_errors_are_one_line(tmp_path):
    missing = RUNNER.invoke(app, ["serve", str(tmp_path / "missing.onnx")])
    assert missing.exit_code == 1 and "not found" in missing.output and "Traceback" not in missing.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = RUNNER.invoke(app, ["serve", str(demo_model()), "--host", "127.0.0.1", "--http-port", str(port)])
    assert taken.exit_code == 1 and f"port {port} on 127.0.0.1 is in use" in taken.output


def test_sigterm_finishes_requests_in_flight(tmp_path):
    stopping = Server(tmp_path / "server.log", "--max-batch", "1")
    frame = synthetic_frame(128, 256)
    outcomes: list[object] = []

    def request() -> None:
        try:
            with RemoteSegmenter(stopping.http_url, model="demo_street_w18s1") as remote:
                outcomes.append(remote.segment(frame).labels.shape)
        except Exception as error:  # recorded, asserted below
            outcomes.append(error)

    threads = [threading.Thread(target=request) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the requests reach the server; the first is being segmented
    assert stopping.stop() == 0, stopping.output()[-3000:]
    for thread in threads:
        thread.join(30)
    assert "stopping: finishing the requests in flight" in stopping.output()
    assert outcomes == [(128, 256)] * 3, outcomes
