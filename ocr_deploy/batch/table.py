"""OUT/results.parquet (one row per image or video frame) and OUT/errors.parquet, and what
they say about which inputs are done.

While a run goes, finished rows land in part files under OUT/.ocr-deploy-batch/parts/ (each
written under a temporary name, then renamed), so a run stopped at any point keeps what it
finished; the end of a run folds the parts into results.parquet. An input counts as done when
its rows are there for the current model and input size, and every output file they name exists
with the size recorded: a decision from the table and the files, never from a guess.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_deploy.batch.plan import WorkItem
from ocr_deploy.fileio import atomic_path

RESULTS_NAME = "results.parquet"
ERRORS_NAME = "errors.parquet"
STATE_FOLDER = ".ocr-deploy-batch"  # also the sign that OUT is a batch output folder
STAGE_COLUMNS = ("decode_ms", "pre_ms", "infer_ms", "post_ms", "write_ms")
Row = dict[str, Any]


def results_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("stem", pa.string()), ("kind", pa.string()),
        ("frame", pa.int64()), ("timestamp_ms", pa.float64()),
        ("class_fractions", pa.list_(pa.float32())),
        ("outputs", pa.list_(pa.string())), ("output_bytes", pa.list_(pa.int64())),
        ("input_bytes", pa.int64()), ("frames_in_item", pa.int64()),
        ("backend", pa.string()), ("model_sha256", pa.string()),
        *((name, pa.float64()) for name in STAGE_COLUMNS),
        ("worker", pa.string()),
    ])


def errors_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("stem", pa.string()), ("kind", pa.string()),
                      ("error", pa.string()), ("model_sha256", pa.string())])


@dataclass
class ResultStore:
    """The tables of one output folder: what earlier runs finished, and this run's rows."""

    out: Path
    previous: dict[str, list[Row]] = field(default_factory=dict)  # path -> rows, before this run
    previous_errors: list[Row] = field(default_factory=list)
    _pending: list[Row] = field(default_factory=list)
    _written: dict[str, list[Row]] = field(default_factory=dict)  # this run's rows
    _parts: int = 0
    _run: str = field(default_factory=lambda: f"{time.time_ns():020d}")

    @property
    def parts(self) -> Path:
        return self.out / STATE_FOLDER / "parts"

    @classmethod
    def open(cls, out: Path) -> ResultStore:
        store = cls(out)
        for table in store._stored_tables():
            for path, rows in _by_path(table.to_pylist()).items():
                store.previous[path] = rows  # a later part replaces an earlier record
        if (out / ERRORS_NAME).is_file():
            import pyarrow.parquet as pq

            store.previous_errors = pq.read_table(out / ERRORS_NAME, schema=errors_schema()).to_pylist()
        return store

    def done(self, items: Iterable[WorkItem], model_sha256: str) -> set[str]:
        """The paths of `items` whose outputs are complete for this model."""
        return {item.path for item in items
                if _complete(self.previous.get(item.path, []), item, model_sha256, self.out)}

    def add(self, rows: list[Row], *, flush_every: int = 256) -> None:
        for row in rows:
            self._written.setdefault(row["path"], []).append(row)
        self._pending += rows
        if len(self._pending) >= flush_every:
            self.flush()

    def flush(self) -> None:
        """This run's new rows into a part file of their own (temporary name, then renamed)."""
        if not self._pending:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        self._parts += 1
        _write(self.parts / f"{self._run}-{self._parts:06d}.parquet", self._pending, results_schema())
        self._pending = []

    def finish(self, errors: list[Row]) -> None:
        """Fold earlier results and this run's rows into results.parquet; errors.parquet gets this
        run's failures and the earlier ones of inputs this run did not reach (it is removed when
        none are left); then drop the parts."""
        self.flush()
        merged = {**self.previous, **self._written}
        failed = {row["path"] for row in errors}
        errors = errors + [row for row in self.previous_errors
                           if row["path"] not in failed and row["path"] not in self._written]
        rows = [row for path in sorted(merged) if path not in failed for row in merged[path]]
        _write(self.out / RESULTS_NAME, rows, results_schema())
        if errors:
            _write(self.out / ERRORS_NAME, errors, errors_schema())
        else:
            (self.out / ERRORS_NAME).unlink(missing_ok=True)
        for part in sorted(self.parts.glob("*.parquet")) if self.parts.is_dir() else []:
            part.unlink(missing_ok=True)

    def _stored_tables(self) -> list[Any]:
        import pyarrow.parquet as pq

        files = [self.out / RESULTS_NAME]
        if self.parts.is_dir():
            files += sorted(self.parts.glob("*.parquet"))
        return [pq.read_table(path, schema=results_schema()) for path in files if path.is_file()]


def _by_path(rows: list[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row["path"], []).append(row)
    return grouped


def _complete(rows: list[Row], item: WorkItem, model_sha256: str, out: Path) -> bool:
    if not rows:
        return False
    first = rows[0]
    if (first["model_sha256"] != model_sha256 or first["input_bytes"] != item.size
            or len(rows) != first["frames_in_item"]):
        return False
    return all(_size(out / name) == size for name, size in zip(first["outputs"], first["output_bytes"],
                                                                strict=True))


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _write(final: Path, rows: list[Row], schema: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(final) as temporary:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), temporary)
