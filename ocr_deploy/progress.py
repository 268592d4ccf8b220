"""Progress of a run on stderr: tqdm's bar on a terminal, plain periodic lines anywhere else.

A bar redraws one line with carriage returns; written into a log file (or a CI log) that is a
hundred updates glued into one line, and its first "0%" draws in front of whatever comes next.
When stderr is not a terminal a line is written every tenth of the run (or every 30 s when the
length is unknown), each ending in a newline.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

_EVERY_S = 30.0


@dataclass
class LineProgress:
    """tqdm's update/close, as newline-terminated lines."""

    total: int | None
    unit: str = "frame"
    done: int = 0
    _start: float = field(default_factory=time.perf_counter)
    _last_line: float = field(default_factory=time.perf_counter)
    _last_tenth: int = 0

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if self.total:
            tenth = min(10, self.done * 10 // self.total)
            if tenth > self._last_tenth or now - self._last_line >= _EVERY_S:
                self._last_tenth = tenth
                self._line(now, f"{self.done}/{self.total} {self.unit}(s) "
                                f"({100 * self.done // self.total}%)")
        elif now - self._last_line >= _EVERY_S:
            self._line(now, f"{self.done} {self.unit}(s)")

    def _line(self, now: float, what: str) -> None:
        self._last_line = now
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        print(f"progress: {what}, {elapsed:.1f} s, {rate:.2f} {self.unit}/s", file=sys.stderr,
              flush=True)

    def close(self) -> None:
        """Nothing to clear: every line is complete."""


def progress_bar(total: int | None, *, unit: str = "frame", enabled: bool = True) -> Any:
    """A tqdm bar when stderr is a terminal; LineProgress otherwise; a no-op when disabled."""
    if enabled and not _is_terminal():
        return LineProgress(total, unit)
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_items(items: Sequence[T], *, unit: str = "item", enabled: bool = True) -> Iterator[T]:
    """The items, with progress_bar shown while they are taken."""
    bar = progress_bar(len(items), unit=unit, enabled=enabled)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
