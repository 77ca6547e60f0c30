"""The two engines that run chunks: a local process pool, and Ray core tasks.

Both have the same four calls: ``submit(chunk)`` returns a handle, ``wait(handles)`` the handles
done, ``result(handle)`` the chunk's results (or :class:`WorkerLost` when the worker or the task
was lost: the scheduler retries those), ``close()``. What a worker does is the same in both
(:mod:`rlport.fleet.worker`), so both give the same returns for the same seeds.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

from rlport.errors import RlportError, require
from rlport.fleet.plan import FleetBundle, Job
from rlport.fleet.worker import ONE_THREAD, init_worker, run_chunk, run_local_chunk

__all__ = ["LocalEngine", "RayEngine", "WorkerLost", "make_engine", "ENGINES"]

ENGINES = ("local", "ray")
"""The engines ``rlport eval --engine`` takes (local first: the default)."""
_WAIT_SECONDS = 0.5


class WorkerLost(RlportError):
    """A chunk's worker or task was lost (a crash, a killed process, a lost node); its jobs are retried."""


@contextmanager
def _environment(values: dict[str, str]):
    """``os.environ`` with ``values`` set inside the block (workers started there inherit them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalEngine:
    """A pool of ``workers`` processes (spawned, one BLAS thread each); every bundle's bytes sent once to each."""

    name = "local"

    def __init__(self, fleet: list[FleetBundle], workers: int, env_module: str | None, verify: bool) -> None:
        self.workers = workers
        self.blobs = {member.digest: member.data for member in fleet}
        self.options = (env_module, verify)
        self.pool: Any = None

    def _pool(self) -> Any:
        if self.pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker, initargs=(self.blobs,),
            )  # fmt: skip
        return self.pool

    def submit(self, chunk: list[Job]) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        with _environment(ONE_THREAD):  # a worker spawned now inherits these
            try:
                return self._pool().submit(run_local_chunk, chunk, *self.options)
            except BrokenProcessPool:
                self._restart()
                return self._pool().submit(run_local_chunk, chunk, *self.options)

    def wait(self, handles: list[Any]) -> list[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(handles, timeout=_WAIT_SECONDS, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> list[dict[str, Any]]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return handle.result()
        except BrokenProcessPool as exc:
            self._restart()
            raise WorkerLost(f"a worker process died ({exc})") from exc
        except Exception as exc:  # noqa: BLE001 - the task itself broke (pickling, an import): a lost chunk
            raise WorkerLost(f"{type(exc).__name__}: {exc}") from exc

    def _restart(self) -> None:
        """After a worker died the pool is broken: the next submit starts a new one."""
        if self.pool is not None and getattr(self.pool, "_broken", False):
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


class RayEngine:
    """Ray core tasks: ``ray.init(address)`` (a local Ray of ``workers`` CPUs without one), each bundle put once.

    Tasks are not retried by Ray (``max_retries=0``): the scheduler retries lost chunks itself, so that
    a chunk that keeps failing is reported with its error instead of hanging or vanishing.
    """

    name = "ray"

    def __init__(self, fleet: list[FleetBundle], workers: int | None, address: str | None, env_module: str | None,
                 verify: bool) -> None:  # fmt: skip
        self.ray = require("ray", "ray", "rlport eval --engine ray")
        self.started = not self.ray.is_initialized()
        if self.started:
            runtime_env = {"env_vars": {**ONE_THREAD, **_passed_on()}}
            kwargs: dict[str, Any] = {"num_cpus": workers} if address is None and workers else {}
            try:
                self.ray.init(address=address, runtime_env=runtime_env, include_dashboard=False,
                              log_to_driver=False, configure_logging=False, **kwargs)  # fmt: skip
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RlportError(f"cannot start or reach Ray at {address or 'a new local Ray'}: {exc}") from exc
        self.workers = workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        self.task = self.ray.remote(num_cpus=1, max_retries=0)(run_chunk)
        self.refs = {member.digest: self.ray.put(member.data) for member in fleet}  # once per bundle
        self.options = (env_module, verify)

    def submit(self, chunk: list[Job]) -> Any:
        return self.task.remote(chunk, self.refs[chunk[0].digest], *self.options)

    def wait(self, handles: list[Any]) -> list[Any]:
        done, _ = self.ray.wait(handles, num_returns=1, timeout=_WAIT_SECONDS)
        return list(done)

    def result(self, handle: Any) -> list[dict[str, Any]]:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayError as exc:
            first = " ".join(str(exc).split())[:300]
            raise WorkerLost(f"{type(exc).__name__}: {first}") from exc

    def close(self) -> None:
        self.refs.clear()
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


def _passed_on() -> dict[str, str]:
    """Variables a Ray worker needs as the driver has them (where modules are found)."""
    return {name: os.environ[name] for name in ("PYTHONPATH",) if os.environ.get(name)}


def make_engine(name: str, fleet: list[FleetBundle], workers: int | None, address: str | None,
                env_module: str | None, verify: bool) -> LocalEngine | RayEngine:  # fmt: skip
    """The engine called ``name`` (:data:`ENGINES`); ``address`` is for Ray only."""
    if name == "local":
        if address is not None:
            raise RlportError("--address is the Ray cluster's address; add --engine ray")
        return LocalEngine(fleet, workers or os.cpu_count() or 1, env_module, verify)
    if name == "ray":
        return RayEngine(fleet, workers, address, env_module, verify)
    raise RlportError(f"unknown engine {name!r:.100}; supported: {', '.join(ENGINES)}")
