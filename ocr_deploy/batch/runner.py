"""A batch run on Ray: plan the inputs, skip the finished ones, hand the rest as work units
(each video alone, images a few at a time) through Ray Data into one pool of Segmenter actors,
and put the rows that come back into the result tables.

Videos go first, beside the images on the same pool: the long tasks start early instead of
trailing the run, and no worker waits for another kind's phase to end.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from ocr_deploy.batch.cluster import cluster_resources, ray_session
from ocr_deploy.batch.plan import BatchInputError, plan_items
from ocr_deploy.batch.table import STATE_FOLDER, ResultStore, Row
from ocr_deploy.batch.workers import SegmentWorker, WorkerConfig, error_row, probe_model, work_units
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.fileio import PartialFile, ensure_output_folder, remove_empty_folders, sha256_of

STOP_AFTER_ENV = "OCR_DEPLOY_BATCH_STOP_AFTER"  # test hook: stop after N finished inputs


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """Everything `ocr-deploy batch` can be told, beyond the worker's own WorkerConfig."""

    address: str | None = None  # None: start a local Ray; 'auto' or 'ray://host:port': join
    workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
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
        PartialFile.remove_stale(out)  # of a run killed mid-write
        store = ResultStore.open(out)
        finished = store.done(items, config.model_sha256)
        todo = [item for item in items if item.path not in finished]
        run = _Run(store, options.stop_after)
        try:
            if todo:
                _run_units(ray, work_units(todo, workers, config.batch), config, options, workers, run)
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


def _run_units(ray: ModuleType, units: list[Row], config: WorkerConfig, options: BatchOptions,
               workers: int, run: _Run) -> None:
    """Every unit through the workers. A unit whose worker crashed on every attempt never comes
    back: a unit of several images is tried once more one image per unit, to tell the input at
    fault from its neighbours, and what still does not come back is recorded as failed."""
    lost = _lost(units, _run_pass(ray, units, config, options, workers, run))
    split = [_single(unit, index) for unit in lost if len(unit["paths"]) > 1
             for index in range(len(unit["paths"]))]
    lost = [unit for unit in lost if len(unit["paths"]) == 1]
    if split and not run.stopped:
        lost += _lost(split, _run_pass(ray, split, config, options, workers, run))
    if lost and not run.stopped:
        run.take([_crashed(unit, config) for unit in lost])


def _lost(units: list[Row], returned: set[str]) -> list[Row]:
    return [unit for unit in units if not set(unit["paths"]) <= returned]


def _run_pass(ray: ModuleType, units: list[Row], config: WorkerConfig, options: BatchOptions,
              workers: int, run: _Run) -> set[str]:
    """One Ray Data run over `units`; the paths whose rows came back."""
    # An input that fails to decode or segment comes back as a row with its error. A worker
    # that crashes is restarted and its unit tried again (--retries times); a unit that still
    # crashes it is dropped by Ray Data (max_errored_blocks, set in ray_session) instead of
    # failing the whole run, and the caller sees it missing.
    # One unit per block and per call, one call in flight per actor: a worker that is done takes
    # the next unit, instead of units queued behind a busy worker at the end of the run.
    with warnings.catch_warnings():
        # The retries go through the remote arguments, deprecated since Ray 2.60 with no named
        # replacement yet (pyproject.toml keeps ray below 2.64, which removes them).
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = (ray.data.from_items(units, override_num_blocks=len(units))
                   .map_batches(SegmentWorker, fn_constructor_kwargs={"config": config},
                                batch_size=1, batch_format="pyarrow",
                                compute=ray.data.ActorPoolStrategy(size=min(workers, len(units)),
                                                                   max_tasks_in_flight_per_actor=1),
                                num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker,
                                max_restarts=-1, max_task_retries=max(0, config.retries)))
    returned: set[str] = set()
    batches = iter(dataset.iter_batches(batch_format="pyarrow", batch_size=None))
    try:
        for batch in batches:
            rows = batch.to_pylist()
            returned.update(row["path"] for row in rows)
            run.take(rows)
            if run.stopped:
                break
    except Exception as error:
        raise OcrDeployError(f"the workers failed: {_cause(error)}") from None
    finally:
        # Closing the iterator shuts Ray Data's executor down now; left to the garbage collector,
        # a stopped run would go on segmenting the rest in the background.
        getattr(batches, "close", lambda: None)()
    return returned


def _single(unit: Row, index: int) -> Row:
    return {"kind": unit["kind"], "paths": [unit["paths"][index]], "stems": [unit["stems"][index]],
            "sizes": [unit["sizes"][index]]}


def _crashed(unit: Row, config: WorkerConfig) -> Row:
    """The failure row of a one-input unit that crashed its worker on every attempt."""
    tries = 1 + max(0, config.retries)
    return {"path": unit["paths"][0], "stem": unit["stems"][0], "kind": unit["kind"],
            "model_sha256": config.model_sha256,
            "error": f"the worker segmenting it crashed, {tries} time(s) (see Ray's log above)"}


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


def _cause(error: BaseException) -> str:
    """The worker's own message from inside Ray's wrapping (RayTaskError keeps it as `cause`)."""
    cause = getattr(error, "cause", None) or error
    text = " ".join(str(cause).split())
    name = type(cause).__name__
    return text if isinstance(cause, OcrDeployError) else f"{name}: {text}"


def model_digest(model: Path) -> str:
    return sha256_of(model)
