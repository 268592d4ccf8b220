"""A batch run on Ray: plan the inputs, skip the finished ones, images through Ray Data into a
pool of Segmenter actors, videos one task each on video actors, rows into the result tables.

Images and videos run one after the other, so each phase may use every worker's resources
(an image pool and a video pool side by side would wait on each other's CPUs or GPUs).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ocr_deploy.batch.cluster import cluster_resources, ray_session
from ocr_deploy.batch.plan import BatchInputError, WorkItem, plan_items
from ocr_deploy.batch.table import STATE_FOLDER, ResultStore, Row
from ocr_deploy.batch.workers import ImageWorker, VideoWorker, WorkerConfig, decode_row, error_row, probe_model
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.fileio import ensure_output_folder, remove_empty_folders, sha256_of

STOP_AFTER_ENV = "OCR_DEPLOY_BATCH_STOP_AFTER"  # test hook: stop after N finished inputs


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """Everything `ocr-deploy batch` can be told, beyond the worker's own WorkerConfig."""

    address: str | None = None  # None: start a local Ray; 'auto' or 'ray://host:port': join
    workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    retries: int = 1  # further attempts of a failed video (images: Ray Data's own retries)
    recursive: bool = True
    progress: bool = True
    stop_after: int | None = None  # finished inputs after which the run stops (test hook)


@dataclass
class BatchSummary:
    inputs: int
    skipped: int  # finished by an earlier run
    done: int  # finished by this run
    frames: int
    failures: list[Row]
    seconds: float
    frames_by_worker: Counter[str]
    stopped: bool = False
    backend: str = ""
    out: Path = Path()

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        how = "stopped early after" if self.stopped else "finished"
        lines = [f"{how} {self.done} of {self.inputs} input(s) in {self.seconds:.1f} s "
                 f"({self.skipped} done before, skipped): {self.frames} frame(s), "
                 f"{self.fps:.2f} frames/s overall, {len(self.failures)} failure(s)"]
        if self.backend:
            lines.append(f"  model on {self.backend}")
        for worker, frames in sorted(self.frames_by_worker.items()):
            rate = frames / self.seconds if self.seconds > 0 else 0.0
            lines.append(f"  worker {worker}: {frames} frame(s), {rate:.2f} frames/s")
        for row in self.failures[:3]:
            lines.append(f"  failed {row['path']}: {row['error']}")
        if len(self.failures) > 3:
            lines.append(f"  ... and {len(self.failures) - 3} more in {self.out / 'errors.parquet'}")
        return lines


def run_batch(inputs: list[str], config: WorkerConfig, options: BatchOptions, *,
              log: Callable[[str], None] = lambda _: None) -> BatchSummary:
    """Segment every input into config.out; see the module docstring."""
    start = time.perf_counter()
    out = Path(config.out)
    items = plan_items(inputs, out, recursive=options.recursive)
    _check_output_folder(out)
    local_cpus = None if options.address else max(1, os.cpu_count() or 1)
    with ray_session(options.address, num_cpus=local_cpus, progress=options.progress) as ray:
        workers = _worker_count(ray, options)
        backend = _probe(ray, config, options)
        log(f"model on the workers: {backend}; {workers} worker(s)")
        created = ensure_output_folder(out)
        try:
            (out / STATE_FOLDER).mkdir(exist_ok=True)
        except OSError as error:
            remove_empty_folders(created)
            raise OcrDeployError(f"cannot write into {out} ({error.strerror})") from None
        _remove_stale_temporaries(out)
        store = ResultStore.open(out)
        finished = store.done(items, config.model_sha256)
        todo = [item for item in items if item.path not in finished]
        run = _Run(store, options.stop_after)
        try:
            images = [item for item in todo if item.kind == "image"]
            videos = [item for item in todo if item.kind == "video"]
            if images:
                _run_images(ray, images, config, options, workers, run)
            if videos and not run.stopped:
                _run_videos(ray, videos, config, options, workers, run)
        finally:
            store.finish(run.errors)
    return BatchSummary(inputs=len(items), skipped=len(finished), done=run.items, frames=run.frames,
                        failures=run.errors, seconds=time.perf_counter() - start,
                        frames_by_worker=run.by_worker, stopped=run.stopped, backend=backend, out=out)


@dataclass
class _Run:
    """What the driver has been handed back so far, and whether to stop taking more."""

    store: ResultStore
    stop_after: int | None
    items: int = 0
    frames: int = 0
    errors: list[Row] = field(default_factory=list)
    by_worker: Counter[str] = field(default_factory=Counter)
    stopped: bool = False

    def take(self, rows: list[Row]) -> None:
        good = [row for row in rows if not row.get("error")]
        self.errors += [error_row(row, row["error"], row.get("model_sha256") or "")
                        for row in rows if row.get("error")]
        for row in good:
            row.pop("error", None)
        self.store.add(good)
        self.frames += len(good)
        self.by_worker.update(row["worker"] for row in good)
        self.items += len({row["path"] for row in rows})
        if self.stop_after is not None and self.items >= self.stop_after:
            self.stopped = True


def _run_images(ray: ModuleType, items: list[WorkItem], config: WorkerConfig, options: BatchOptions,
                workers: int, run: _Run) -> None:
    rows = [{"path": item.path, "stem": item.stem, "size": item.size} for item in items]
    # Blocks of about one batch each: decoding spreads over tasks and results stream back.
    blocks = max(1, min(len(rows), math.ceil(len(rows) / max(1, config.batch))))
    # Ray Data restarts a crashed actor and retries its tasks; a file that fails to decode or
    # segment comes back as a row with its error, so the dataset itself never fails on one input.
    dataset = (ray.data.from_items(rows, override_num_blocks=blocks)
               # Decoding asks for no CPU of its own: the actors hold the CPUs, and a task that
               # waited for one would starve them; the task pool's size bounds it instead.
               .map(decode_row, fn_kwargs={"max_pixels": config.max_pixels}, num_cpus=0,
                    compute=ray.data.TaskPoolStrategy(size=max(2, workers)))
               .map_batches(ImageWorker, fn_constructor_kwargs={"config": config},
                            batch_size=config.batch, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker))
    batches = iter(dataset.iter_batches(batch_format="pyarrow", batch_size=None))
    try:
        for batch in batches:
            run.take(batch.to_pylist())
            if run.stopped:
                break
    except Exception as error:
        raise OcrDeployError(f"the image workers failed: {_cause(error)}") from None
    finally:
        # Closing the iterator shuts Ray Data's executor down now; left to the garbage collector,
        # a stopped run would go on segmenting the rest in the background.
        getattr(batches, "close", lambda: None)()


def _run_videos(ray: ModuleType, items: list[WorkItem], config: WorkerConfig, options: BatchOptions,
                workers: int, run: _Run) -> None:
    remote = ray.remote(VideoWorker).options(num_cpus=options.cpus_per_worker,
                                             num_gpus=options.gpus_per_worker,
                                             max_restarts=options.retries,
                                             max_task_retries=options.retries)
    actors = [remote.remote(config) for _ in range(min(workers, len(items)))]
    queue = [_video_row(item) for item in items]
    running: dict[Any, tuple[Row, Any]] = {}
    try:
        while queue or running:
            for actor in actors:
                if queue and actor not in {a for _, a in running.values()}:
                    item = queue.pop(0)
                    # retry_exceptions: a corrupt video or a worker's error is tried again too
                    call = actor.run.options(retry_exceptions=True).remote(item)
                    running[call] = (item, actor)
            ready, _ = ray.wait(list(running), num_returns=1)
            item, _actor = running.pop(ready[0])
            try:
                run.take(ray.get(ready[0]))
            except Exception as error:
                run.take([{**item, "error": _cause(error), "model_sha256": config.model_sha256}])
            if run.stopped:
                break
    finally:
        for call in running:
            ray.cancel(call, force=True)
        for actor in actors:
            ray.kill(actor)


def _video_row(item: WorkItem) -> Row:
    return {"path": item.path, "stem": item.stem, "kind": item.kind, "size": item.size}


def _probe(ray: ModuleType, config: WorkerConfig, options: BatchOptions) -> str:
    """Load the model once on a worker with a worker's resources, before any output is made:
    a model that cannot load there is one error line, not a pool of crashing actors."""
    task = ray.remote(probe_model).options(num_cpus=options.cpus_per_worker,
                                           num_gpus=options.gpus_per_worker, max_retries=0)
    try:
        return ray.get(task.remote(config))
    except Exception as error:
        raise OcrDeployError(f"the model failed to load on a worker: {_cause(error)}") from None


def _worker_count(ray: ModuleType, options: BatchOptions) -> int:
    if options.cpus_per_worker <= 0 or options.gpus_per_worker < 0:
        raise BatchInputError("--cpus-per-worker must be above 0 and --gpus-per-worker at least 0")
    resources = cluster_resources(ray)
    if options.gpus_per_worker > resources["GPU"]:
        raise BatchInputError(f"--gpus-per-worker {options.gpus_per_worker:g} but the cluster has "
                              f"{resources['GPU']:g} GPU(s)")
    if options.workers is not None:
        if options.workers < 1:
            raise BatchInputError(f"--workers must be at least 1 (got {options.workers})")
        return options.workers
    by_cpu = int(resources["CPU"] // options.cpus_per_worker)
    by_gpu = int(resources["GPU"] // options.gpus_per_worker) if options.gpus_per_worker else by_cpu
    return max(1, min(by_cpu, by_gpu))


def _check_output_folder(out: Path) -> None:
    """OUT is new, empty, or an earlier batch's: files are replaced only in a batch's own folder."""
    if out.exists() and not out.is_dir():
        raise BatchInputError(f"-o {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_FOLDER).is_dir():
        raise BatchInputError(f"-o {out} holds files that ocr-deploy batch did not write; choose a "
                              "new or empty folder, or the folder of an earlier batch run")


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of a run that was killed mid-write (fileio.PartialFile's names)."""
    for path in out.rglob(".*.partial.*"):
        if path.is_file():
            path.unlink(missing_ok=True)


def _cause(error: BaseException) -> str:
    """The worker's own message from inside Ray's wrapping (RayTaskError keeps it as `cause`)."""
    cause = getattr(error, "cause", None) or error
    text = " ".join(str(cause).split())
    name = type(cause).__name__
    return text if isinstance(cause, OcrDeployError) else f"{name}: {text}"


def model_digest(model: Path) -> str:
    return sha256_of(model)
