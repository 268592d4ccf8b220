"""Ray itself: imported only here and only when a batch runs; joined or started locally."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from ocr_deploy.errors import OcrDeployError

INSTALL_HINT = "pip install 'ocr-deploy[cluster]' (or: pip install 'ray[data]')"


class RayUnavailable(OcrDeployError):
    """Ray is not installed, or the cluster cannot be reached."""


def require_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] part of the extra)
    except ImportError as error:
        raise RayUnavailable(f"ocr-deploy batch needs Ray Data ({error.name} is missing): "
                             f"{INSTALL_HINT}") from None
    return ray


@contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None,
                progress: bool = True) -> Iterator[ModuleType]:
    """An initialised Ray: the one this process already has (tests, notebooks), the cluster at
    `address` ('auto', 'host:port', 'ray://host:port'), or a local one started here and shut
    down at the end."""
    ray = require_ray()
    started = False
    _check_reachable(address)
    if not ray.is_initialized():
        try:
            ray.init(address=address, num_cpus=num_cpus if address is None else None,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as error:
            where = f"--address {address}" if address else "a local Ray"
            raise RayUnavailable(f"cannot reach {where}: {' '.join(str(error).split())}; start "
                                 "the cluster (ray start --head) or check the address") from None
        started = True
    context = ray.data.DataContext.get_current()
    settings = {"enable_progress_bars": progress, "verbose_stats_logs": False,
                # A unit that crashes its worker on every retry is dropped, not the whole run:
                # runner.py records its inputs as failed.
                "max_errored_blocks": -1}
    before = {name: getattr(context, name) for name in settings}
    for name, value in settings.items():
        setattr(context, name, value)
    try:
        yield ray
    finally:
        for name, value in before.items():  # a Ray this process had before is left as it was
            setattr(context, name, value)
        if started:
            ray.shutdown()


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A TCP connect to host:port first: Ray itself waits minutes for a head that is not there."""
    if not address or address == "auto":
        return
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"--address {address} is not auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise RayUnavailable(f"cannot reach --address {address} ({error.strerror or error}); start "
                             "the cluster (ray start --head) or check the address") from None


def cluster_resources(ray: ModuleType) -> dict[str, float]:
    resources = ray.cluster_resources()
    return {"CPU": float(resources.get("CPU", os.cpu_count() or 1)),
            "GPU": float(resources.get("GPU", 0.0))}
