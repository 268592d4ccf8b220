"""`ocr-deploy serve`: one artifact as one model of a real Triton Inference Server (PyTriton).

PyTriton starts the tritonserver binary it ships; Triton's Python backend forwards each batch
of requests to SegmentHandler in this process, one handler (own backend session) per model
instance. Metadata (classes, palette, input format, variant) is published in the model config's
`parameters`, where `GET /v2/models/NAME/config` and clients (ocr_deploy.remote) read it.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sysconfig
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ocr_deploy.backends import open_backend
from ocr_deploy.errors import ModelFileError
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.serving.handler import RequestRefused, SegmentHandler
from ocr_deploy.serving.protocol import (
    INPUT_ENCODED,
    INPUT_IMAGE,
    OUTPUT_FRACTIONS,
    OUTPUT_LABELS,
    OUTPUT_OVERLAY,
    ServingError,
    check_model_name,
    labels_dtype,
    meta_parameters,
    model_name,
)

INSTALL_HINT = "pip install 'ocr-deploy[serve]'"


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    model: Path
    name: str | None = None  # None: from the metadata (protocol.model_name)
    backend: str | None = None  # None: from the file type
    device: str = "auto"
    size: tuple[int, int] | None = None  # network input size; None: the Segmenter's default
    instances: int = 1
    max_batch: int = 4
    max_queue_delay_us: int = 0
    host: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_pixels: int | None = None
    exit_timeout_s: int = 10  # how long in-flight requests may take to finish at shutdown


def serve(options: ServeOptions, *, log: Callable[[str], None] = print,
          stop: threading.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set); in-flight requests finish first."""
    _check_options(options)
    pytriton = _import_pytriton()
    quiet_pytriton_logs()
    stop = stop or threading.Event()
    segmenters = _open_segmenters(options)
    try:
        meta = segmenters[0].meta
        name = check_model_name(options.name) if options.name else model_name(meta)
        with _libpython_first(), _stop_on_signals(stop):
            triton = pytriton.Triton(config=pytriton.TritonConfig(
                http_address=options.host, http_port=options.http_port,
                grpc_address=options.host, grpc_port=options.grpc_port,
                metrics_port=options.metrics_port, exit_timeout_secs=options.exit_timeout_s,
                log_verbose=0))
            try:
                _bind(pytriton, triton, name, segmenters, options)
                _start(triton)
                log(_start_line(name, segmenters[0], options))
                while not stop.wait(0.5):
                    if not triton.is_alive():
                        raise ServingError("Triton Inference Server stopped on its own; see its log above")
                log("stopping: finishing the requests in flight")
            finally:
                triton.stop()
    finally:
        for segmenter in segmenters:
            segmenter.close()


def _start(triton: Any) -> None:
    from pytriton.exceptions import PyTritonError

    try:
        triton.run()
    except (PyTritonError, TimeoutError, RuntimeError) as error:
        raise ServingError(f"Triton Inference Server did not start: {' '.join(str(error).split())} "
                           "(its log is above)") from None


def _check_options(options: ServeOptions) -> None:
    if not options.model.is_file():
        raise ModelFileError(f"model file {options.model} not found; pass an .onnx, .engine or .xml "
                             "made by ocr-deploy")
    for option, value, low in (("--instances", options.instances, 1), ("--max-batch", options.max_batch, 1),
                               ("--max-queue-delay-us", options.max_queue_delay_us, 0)):
        if value < low:
            raise ServingError(f"{option} must be at least {low} (got {value})")
    ports = {"--http-port": options.http_port, "--grpc-port": options.grpc_port,
             "--metrics-port": options.metrics_port}
    if len(set(ports.values())) < len(ports):
        raise ServingError(f"the ports must differ: {', '.join(f'{k} {v}' for k, v in ports.items())}")
    for option, port in ports.items():
        _check_port_free(options.host, port, option)


def _check_port_free(host: str, port: int, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            why = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be bound ({error.strerror})"
            raise ServingError(f"port {port} on {host} {why}; pass another {option} "
                               "(or stop what listens there)") from None


def _import_pytriton() -> Any:
    """PyTriton's Triton and config classes, or one line on what to install."""
    try:
        from pytriton import model_config
        from pytriton.triton import Triton, TritonConfig
    except ImportError as error:
        raise ServingError(f"PyTriton is not installed ({error}); {INSTALL_HINT}") from None
    if int(np.__version__.split(".")[0]) >= 2:
        # The Python-backend stub PyTriton ships reads numpy arrays through the numpy 1 ABI:
        # under numpy 2 inputs arrive scrambled and outputs empty. PyTriton pins numpy<2.
        raise ServingError(f"PyTriton's Triton Python backend needs numpy 1.x, this environment has "
                           f"numpy {np.__version__}; pip install 'numpy<2' (or {INSTALL_HINT}, which pins it)")
    return _PyTriton(Triton, TritonConfig, model_config)


@dataclass(frozen=True)
class _PyTriton:
    Triton: Any
    TritonConfig: Any
    model_config: Any


def _open_segmenters(options: ServeOptions) -> list[Segmenter]:
    """One backend session per instance, the CPU's threads shared out between them."""
    threads = max(1, len(os.sched_getaffinity(0)) // options.instances)
    segmenters: list[Segmenter] = []
    try:
        for _ in range(options.instances):
            backend = open_backend(options.model, backend=options.backend, device=options.device,
                                   threads=threads)
            try:
                segmenters.append(Segmenter(backend, size=options.size))
            except BaseException:
                backend.close()
                raise
    except BaseException:
        for segmenter in segmenters:
            segmenter.close()
        raise
    return segmenters


def _bind(pytriton: _PyTriton, triton: Any, name: str, segmenters: list[Segmenter],
          options: ServeOptions) -> None:
    config, Tensor = pytriton.model_config, pytriton.model_config.Tensor
    meta = segmenters[0].meta
    triton.bind(
        model_name=name,
        infer_func=[SegmentHandler(segmenter, max_pixels=options.max_pixels) for segmenter in segmenters],
        inputs=[Tensor(name=INPUT_IMAGE, dtype=np.uint8, shape=(-1, -1, 3), optional=True),
                Tensor(name=INPUT_ENCODED, dtype=bytes, shape=(1,), optional=True)],
        outputs=[Tensor(name=OUTPUT_LABELS, dtype=labels_dtype(meta.num_classes), shape=(-1, -1)),
                 Tensor(name=OUTPUT_FRACTIONS, dtype=np.float32, shape=(meta.num_classes,)),
                 Tensor(name=OUTPUT_OVERLAY, dtype=bytes, shape=(1,))],
        config=config.ModelConfig(max_batch_size=options.max_batch, batcher=config.DynamicBatcher(
            max_queue_delay_microseconds=options.max_queue_delay_us)),
        strict=False)
    _publish_parameters(triton, name, {**meta_parameters(meta), "runtime": segmenters[0].describe()})


def _publish_parameters(triton: Any, name: str, parameters: dict[str, str]) -> None:
    """PyTriton's ModelConfig has no user parameters; its generated config carries backend
    parameters (the workspace path), so ours join those before the model is loaded."""
    try:
        models = triton._model_manager._models.values()
        model = next(model for model in models if model.model_name == name)
        model._get_triton_model_config().backend_parameters.update(parameters)
    except (AttributeError, StopIteration) as error:
        raise ServingError(f"this PyTriton version keeps its model config elsewhere ({error}); "
                           "install the version pyproject.toml names") from None


@contextmanager
def _libpython_first() -> Iterator[None]:
    """Triton's Python-backend stub links libpython3.X.so. When this interpreter has its own
    (pyenv, conda), the system's would be found first and the stub fails at load time
    ('_thread.RLock' object has no attribute '_recursion_count' is one symptom); the server,
    started with a copy of os.environ, must find ours first."""
    libdir = sysconfig.get_config_var("LIBDIR")
    before = os.environ.get("LD_LIBRARY_PATH")
    if libdir and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{before}" if before else libdir
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM ask for a graceful stop (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        signal.signal(number, lambda *_: stop.set())
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _start_line(name: str, segmenter: Segmenter, options: ServeOptions) -> str:
    host = "localhost" if options.host in ("0.0.0.0", "") else options.host
    batching = (f"dynamic batching up to {options.max_batch}, queue delay {options.max_queue_delay_us} us"
                if options.max_batch > 1 else "no batching")
    return (f"serving {name!r} ({segmenter.meta.network.describe()}) on {segmenter.describe()}, "
            f"{options.instances} instance(s), {batching}: http://{host}:{options.http_port} "
            f"grpc://{host}:{options.grpc_port} metrics http://{host}:{options.metrics_port}/metrics "
            f"(Ctrl-C or SIGTERM stops)")


def quiet_pytriton_logs() -> None:
    """PyTriton logs at INFO through `logging`; a server's console keeps warnings and up, and a
    refused request is one line there (the client gets the reason), not a traceback."""
    logging.getLogger("pytriton").setLevel(logging.WARNING)
    handler_log = logging.getLogger("pytriton.proxy.inference")
    if not any(isinstance(item, _RefusalsOnOneLine) for item in handler_log.filters):
        handler_log.addFilter(_RefusalsOnOneLine())


class _RefusalsOnOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.args[-1]) if isinstance(record.args, tuple) and record.args else ""
        marker = f"{RequestRefused.__name__}: "
        if marker in text:
            record.msg, record.args = "refused a request: %s", (text.rsplit(marker, 1)[1].strip(),)
        return True
