"""Segment on a Triton server started by `ocr-deploy serve`, with the local Segmenter's API.

RemoteBackend satisfies the runtime's Backend protocol: its metadata is the served model's
(classes, palette), published in the Triton model config, with a dynamic raw uint8 input and a
labels output, so a Segmenter over it (RemoteSegmenter), `ocr_deploy.pipeline.segment_source`
and `ocr-deploy infer --server` work unchanged: frames go to the server, labels come back, and
class fractions, colours and overlays are computed here from the published palette.
tritonclient (HTTP or gRPC, from the URL) is imported only when a RemoteBackend is made.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ocr_deploy.meta import InputSpec, ModelMeta, OutputSpec
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.serving.protocol import (
    INPUT_ENCODED,
    INPUT_IMAGE,
    OUTPUT_LABELS,
    ServingError,
    labels_dtype,
    meta_from_parameters,
)

GRPC_PORT = 8001  # Triton's default gRPC port: a bare host:8001 means gRPC
ENCODINGS = ("png", "jpeg")  # what `encoding` may send instead of raw frames
INSTALL_HINT = "pip install 'tritonclient[http,grpc]' (or 'ocr-deploy[serve]')"


@dataclass(frozen=True)
class ServerAddress:
    protocol: str  # "http" or "grpc"
    host_port: str
    ssl: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else self.protocol}://{self.host_port}"


def parse_server(url: str) -> ServerAddress:
    """'grpc://host:8001', 'http://host:8000', 'https://...', or 'host:port' (gRPC on 8001,
    else HTTP)."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    scheme = parts.scheme.lower()
    if scheme not in ("", "http", "https", "grpc"):
        raise ServingError(f"--server {url!r}: use http://HOST:PORT or grpc://HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ServingError(f"--server {url!r} needs a host and a port, e.g. http://localhost:8000 "
                           "or grpc://localhost:8001")
    protocol = scheme or ("grpc" if port == GRPC_PORT else "http")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return ServerAddress("grpc" if protocol == "grpc" else "http", f"{host}:{port}", ssl=scheme == "https")


def _client_module(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as error:
        raise ServingError(f"tritonclient is not installed ({error}); {INSTALL_HINT}") from None
    return module


def refusal(error: BaseException) -> str:
    """The reason in a Triton error: our handler's own message when the server refused a
    request (PyTriton wraps it in a traceback), else Triton's message, on one line."""
    text = str(error)
    found = re.findall(r"(?:RequestRefused|FrameError|ServingError): (.+)", text)
    if found:
        return found[-1].strip()
    return " ".join(text.split())[:300]


class RemoteBackend:
    """A model served by `ocr-deploy serve`, as a Backend: `run` sends a batch of uint8 BGR
    frames (raw, or PNG/JPEG encoded) and returns their labels. Thread-safe: one tritonclient
    connection per calling thread."""

    name = "triton"

    def __init__(self, url: str, *, model: str | None = None, encoding: str | None = None,
                 timeout_s: float = 60.0):
        if encoding is not None and encoding not in ENCODINGS:
            raise ServingError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
        self.address = parse_server(url)
        self.encoding = encoding
        self.timeout_s = timeout_s
        self._module = _client_module(self.address.protocol)
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        try:
            self._check_live()
            self.model = model or self._only_model()
            config = self._config()
        except BaseException:
            self.close()
            raise
        self.max_batch = max(1, int(config.get("max_batch_size", 1) or 1))
        parameters = config.get("parameters", {})
        served = meta_from_parameters(parameters, source=f"model {self.model!r} at {self.address.url}")
        runtime = parameters.get("runtime", {})
        self.runtime = runtime.get("string_value", "") if isinstance(runtime, dict) else ""
        self.meta = _as_served(served)

    # The Backend protocol.
    def run(self, graph_input: np.ndarray) -> dict[str, np.ndarray]:
        chunks = [self._infer(graph_input[start:start + self.max_batch])
                  for start in range(0, len(graph_input), self.max_batch)]
        return {OUTPUT_LABELS: np.concatenate(chunks) if len(chunks) > 1 else chunks[0]}

    def describe(self) -> str:
        served = f", which runs {self.runtime}" if self.runtime else ""
        sent = f"{self.encoding.upper()} frames" if self.encoding else "raw frames"
        return f"Triton at {self.address.url} ({self.address.protocol}, {sent}){served}"

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # closing a dead connection: nothing left to release
                pass

    # Requests.
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.address.protocol == "grpc":
                client = self._module.InferenceServerClient(self.address.host_port, ssl=self.address.ssl)
            else:
                client = self._module.InferenceServerClient(
                    self.address.host_port, ssl=self.address.ssl, connection_timeout=10.0,
                    network_timeout=self.timeout_s)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """One tritonclient call; any failure becomes one line that says what failed."""
        from tritonclient.utils import InferenceServerException

        try:
            return getattr(self._client(), method)(*args, **kwargs)
        except InferenceServerException as error:
            raise ServingError(f"{what} at {self.address.url}: {refusal(error)}") from None
        except (OSError, TimeoutError) as error:  # refused, unreachable, reset
            raise ServingError(f"cannot reach a Triton server at {self.address.url} ({error}); "
                               "is `ocr-deploy serve` running there?") from None
        except Exception as error:  # an answer in another protocol (gRPC port asked over HTTP, ...)
            other = "http://" if self.address.protocol == "grpc" else "grpc://"
            raise ServingError(f"{what} at {self.address.url}: no {self.address.protocol} answer "
                               f"({type(error).__name__}: {error}); is it the server's "
                               f"{self.address.protocol} port? (or use {other}HOST:PORT)") from None

    def _check_live(self) -> None:
        if not self._call("asking whether the server is live", "is_server_live"):
            raise ServingError(f"the Triton server at {self.address.url} says it is not live")

    def _only_model(self) -> str:
        try:
            index = self._call("listing the models", "get_model_repository_index", **self._json())
        except ServingError as error:
            if "restricted" not in str(error):
                raise
            raise ServingError(f"the server at {self.address.url} does not list its models to clients; "
                               "name one with --server-model NAME (the server's start-up line says it)") from None
        models = index.get("models", index) if isinstance(index, dict) else index
        names = sorted({item["name"] for item in models if item.get("state", "READY") == "READY"})
        if len(names) != 1:
            raise ServingError(f"the server at {self.address.url} serves {len(names)} models "
                               f"({', '.join(names) or 'none'}); pick one with --server-model NAME")
        return names[0]

    def _config(self) -> dict[str, Any]:
        config = self._call(f"reading the config of model {self.model!r}", "get_model_config",
                            self.model, **self._json())
        return config.get("config", config)

    def _json(self) -> dict[str, Any]:
        return {"as_json": True} if self.address.protocol == "grpc" else {}

    def _infer(self, frames: np.ndarray) -> np.ndarray:
        module = self._module
        if self.encoding is None:
            tensor = module.InferInput(INPUT_IMAGE, list(frames.shape), "UINT8")
            tensor.set_data_from_numpy(np.ascontiguousarray(frames, dtype=np.uint8))
        else:
            blobs = np.array([[_encode(frame, self.encoding)] for frame in frames], dtype=object)
            tensor = module.InferInput(INPUT_ENCODED, list(blobs.shape), "BYTES")
            tensor.set_data_from_numpy(blobs)
        timeout = {"client_timeout": self.timeout_s} if self.address.protocol == "grpc" else {}
        result = self._call(f"segmenting on model {self.model!r}", "infer", self.model, [tensor],
                            outputs=[module.InferRequestedOutput(OUTPUT_LABELS)], **timeout)
        return result.as_numpy(OUTPUT_LABELS)


def _as_served(served: ModelMeta) -> ModelMeta:
    """What a client sees: the served model's classes and palette, behind an input of any size
    (the server sizes frames for its network) and a labels output."""
    return replace(
        served,
        input=InputSpec(format="raw", name=INPUT_IMAGE, min_side=served.input.min_side),
        output=OutputSpec(kind="labels", name=OUTPUT_LABELS,
                          dtype=np.dtype(labels_dtype(served.num_classes)).name))


def _encode(frame: np.ndarray, encoding: str) -> bytes:
    import cv2

    ok, data = cv2.imencode(f".{'jpg' if encoding == 'jpeg' else 'png'}", frame)
    if not ok:
        raise ServingError(f"OpenCV could not encode a {frame.shape} frame as {encoding}")
    return data.tobytes()


class RemoteSegmenter(Segmenter):
    """`Segmenter` whose network runs on a Triton server: the same SegResult (labels, class
    fractions, colour and overlay from the served model's palette). `model` None: the server's
    only model; `encoding` 'png' (lossless) or 'jpeg' sends encoded frames instead of raw ones;
    other options as for Segmenter."""

    def __init__(self, url: str, *, model: str | None = None, encoding: str | None = None,
                 timeout_s: float = 60.0, **options: Any):
        backend = RemoteBackend(url, model=model, encoding=encoding, timeout_s=timeout_s)
        try:
            super().__init__(backend, **options)
        except BaseException:
            backend.close()
            raise


@dataclass(frozen=True)
class RemoteOpener:
    """Opens a RemoteBackend when a run's source has opened (ocr_deploy.pipeline's ModelSpec)."""

    url: str
    model: str | None = None
    encoding: str | None = None

    @property
    def name(self) -> str:
        return self.model or "the server's only model"

    def __call__(self) -> RemoteBackend:
        return RemoteBackend(self.url, model=self.model, encoding=self.encoding)
