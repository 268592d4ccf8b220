"""Overlapping pipeline stages: each stage runs in its own thread behind a bounded queue.

Bounded queues keep memory flat on long videos; results keep their order; an exception in a
stage re-raises in the consumer; closing the consumer stops every stage upstream.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

_DONE = object()
_POLL_SECONDS = 0.1
# A stopped worker finishes at most the item in hand (one inference); this only bounds the wait
# for a worker stuck in a device read that never returns.
_JOIN_SECONDS = 60.0


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def threaded_map(items: Iterable[In], function: Callable[[In], Iterable[Out]], *,
                 maxsize: int = 4, name: str = "stage",
                 abandon: threading.Event | None = None) -> Iterator[Out]:
    """Apply `function` (which yields zero or more outputs per item) in a background thread.

    Closing the consumer waits for the worker to stop (it finishes the item in hand), unless
    `abandon` is set meanwhile (a second Ctrl-C): then the worker is left to itself."""
    results: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                results.put(value, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if stop.is_set():  # never start work for a consumer that has gone
                    return
                for output in function(item):
                    if not put(output):
                        return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(_Failure(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()  # stops the stages upstream, from the thread that iterated them
                except Exception:  # an abandoned upstream failing to clean up has no one to tell
                    pass

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            value = results.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.error
            yield value
    finally:
        stop.set()
        deadline = time.monotonic() + _JOIN_SECONDS
        # Joined in short steps: signal handlers run in between, and may set `abandon`.
        while worker.is_alive() and time.monotonic() < deadline and not (
                abandon is not None and abandon.is_set()):
            worker.join(timeout=_POLL_SECONDS)
