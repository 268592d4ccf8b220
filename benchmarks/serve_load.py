"""Load test: a Triton server from `ocr-deploy serve` under N concurrent clients, against the
same frames through a local Segmenter.

    python -m benchmarks.serve_load URL --model NAME --clients 4 --seconds 10 [--local MODEL.onnx]
    python -m benchmarks.serve_load --start MODEL.onnx --max-batch 1,4 --clients 1,4,8 --seconds 10

Each client is a thread with its own connection (RemoteSegmenter: frames sent, labels back,
class fractions computed locally, as `infer --server` does), sending one frame per request in a
loop bounded by --seconds (and --requests). Reported per run: requests/s, frames/s, p50/p95/p99
latency, errors, and frames/s over the local Segmenter's frames/s (one process segmenting the
same frames one after another). With --start, a server is started for each --max-batch and
--instances value (subprocesses on free ports) and the whole matrix is measured in one command.
Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ocr_deploy.preprocess import parse_size
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.testframes import synthetic_frame

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LoadResult:
    server: str
    clients: int
    seconds: float
    requests: int
    errors: int
    requests_per_s: float
    frames_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    ratio_to_local: float | None

    def row(self) -> str:
        ratio = f"{self.ratio_to_local:5.2f}" if self.ratio_to_local is not None else "    -"
        return (f"{self.server:<28} {self.clients:>7} {self.requests_per_s:7.2f} {self.frames_per_s:8.2f} "
                f"{self.p50_ms:7.1f} {self.p95_ms:7.1f} {self.p99_ms:7.1f} {self.errors:6} {ratio}")


HEADER = (f"{'server':<28} {'clients':>7} {'req/s':>7} {'frames/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'errors':>6} ratio")


def local_frames_per_s(model: Path, frames: list[np.ndarray], seconds: float) -> float:
    """One local Segmenter, the frames one after another (the backend uses every core)."""
    with Segmenter.open(model) as segmenter:
        segmenter.segment(frames[0])  # warm-up
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            segmenter.segment(frames[done % len(frames)])
            done += 1
        return done / (time.perf_counter() - start)


def load(url: str, model: str | None, frames: list[np.ndarray], *, clients: int, seconds: float,
         max_requests: int | None, encoding: str | None, label: str, local_fps: float | None) -> LoadResult:
    from ocr_deploy.remote import RemoteSegmenter

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    remote = RemoteSegmenter(url, model=model, encoding=encoding)
    for frame in frames[:2]:  # warm-up: connections, first-call allocations
        remote.segment(frame)
    ready = threading.Barrier(clients + 1)
    budget = max_requests or sys.maxsize

    def client(index: int) -> None:
        ready.wait()
        deadline = time.perf_counter() + seconds
        sent = 0
        while time.perf_counter() < deadline and sent * clients < budget:
            start = time.perf_counter()
            try:
                remote.segment(frames[(index + sent) % len(frames)])
                latencies[index].append((time.perf_counter() - start) * 1000.0)
            except Exception:  # counted: a load test reports errors, it does not stop at one
                errors[index] += 1
            sent += 1

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    remote.close()
    done = np.array([value for values in latencies for value in values] or [np.nan])
    served = int(np.isfinite(done).sum())
    fps = served / elapsed
    return LoadResult(label, clients, round(elapsed, 2), served, sum(errors), served / elapsed, fps,
                      *(float(np.percentile(done, q)) for q in (50, 95, 99)),
                      fps / local_fps if local_fps else None)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@contextmanager
def started_server(model: Path, *, instances: int, max_batch: int, delay_us: int,
                   timeout_s: float = 180.0) -> Iterator[tuple[str, str]]:
    """`ocr-deploy serve` in a subprocess on free ports: (gRPC URL, model name). Its output goes
    to a file (a pipe nobody reads fills up and blocks the server), shown if it fails to start."""
    http, grpc, metrics = _free_ports(3)
    command = [sys.executable, "-m", "cli", "serve", str(model), "--host", "127.0.0.1",
               "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
               "--instances", str(instances), "--max-batch", str(max_batch),
               "--max-queue-delay-us", str(delay_us), "--exit-timeout", "3"]
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            name = _wait_for_start(process, log, timeout_s)
            yield f"grpc://127.0.0.1:{grpc}", name
        finally:
            process.terminate()
            process.wait(60)


def _wait_for_start(process: subprocess.Popen, log: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("serving '"):
                return line.split("'")[1]
        if process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"ocr-deploy serve exited with {process.returncode}:\n{tail}")
        time.sleep(0.2)
    raise RuntimeError(f"ocr-deploy serve did not start in {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="a running server (http://HOST:8000, grpc://HOST:8001)")
    parser.add_argument("--model", help="served model name (with URL); the server's only model if omitted")
    parser.add_argument("--start", type=Path, help="start servers for this model file instead of URL")
    parser.add_argument("--local", type=Path, help="model file for the local figure (default: --start's)")
    parser.add_argument("--clients", default="1,4,8", help="comma list of concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="per run")
    parser.add_argument("--requests", type=int, help="stop a run after this many requests")
    parser.add_argument("--size", default="256x512", help="frame size HxW")
    parser.add_argument("--encoding", choices=("png", "jpeg"), help="send encoded frames, not raw")
    parser.add_argument("--instances", default="1", help="--start: comma list")
    parser.add_argument("--max-batch", default="1,4", help="--start: comma list (1: no batching)")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000, help="--start, batching servers")
    parser.add_argument("--json", help="also write the results as JSON to PATH ('-' = stdout)")
    args = parser.parse_args()
    if (args.url is None) == (args.start is None):
        parser.error("give a server URL or --start MODEL (not both)")
    height, width = parse_size(args.size)
    frames = [synthetic_frame(height, width, seed=seed) for seed in range(4)]
    clients = [int(part) for part in args.clients.split(",")]
    local_model = args.local or args.start
    local_fps = local_frames_per_s(local_model, frames, args.seconds) if local_model else None
    print(f"frames {height}x{width}; local Segmenter: "
          + (f"{local_fps:.2f} frames/s ({local_model.name})" if local_fps else "not measured (--local)"))
    print(HEADER)
    results: list[LoadResult] = []

    def run(url: str, model: str | None, label: str) -> None:
        for count in clients:
            result = load(url, model, frames, clients=count, seconds=args.seconds, max_requests=args.requests,
                          encoding=args.encoding, label=label, local_fps=local_fps)
            print(result.row(), flush=True)
            results.append(result)

    if args.url:
        run(args.url, args.model, args.url)
    else:
        for instances in (int(part) for part in args.instances.split(",")):
            for max_batch in (int(part) for part in args.max_batch.split(",")):
                delay = args.max_queue_delay_us if max_batch > 1 else 0
                settings = {"instances": instances, "max_batch": max_batch, "delay_us": delay}
                with started_server(args.start, **settings) as (url, name):
                    label = f"{instances} inst, batch {max_batch}" + (f", {delay} us" if delay else "")
                    run(url, name, label)
    if local_model:  # the machine may be busier or quieter by now: say so
        after = local_frames_per_s(local_model, frames, args.seconds)
        print(f"local Segmenter again after the runs: {after:.2f} frames/s (ratios above use the first)")
    if args.json:
        text = json.dumps({"local_frames_per_s": local_fps, "size": [height, width],
                           "runs": [asdict(result) for result in results]}, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
