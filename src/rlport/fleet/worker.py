"""What a worker does with a chunk of jobs, the same in a local process and in a Ray task.

A worker gets a bundle's bytes (once per process locally, from Ray's object store with Ray),
builds its numpy policy once, and for each job makes a fresh env and plays the episodes exactly as
``rlport run`` does; with ``verify`` it runs ``rlport verify``'s checks instead. A job that fails
on its input (an env that cannot be made here, spaces that differ) becomes a result with an
``error``, not an exception: it would fail again anywhere, so it is not retried.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rlport.fleet.plan import Job

__all__ = ["run_chunk", "init_worker", "run_local_chunk", "ONE_THREAD"]

ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}  # fmt: skip
"""The environment of a worker: one BLAS thread each, so that W workers use W cores, not W x cores."""

_BLOBS: dict[str, bytes] = {}
_BUNDLES: dict[str, tuple[Any, Any, str]] = {}  # digest -> (bundle, numpy policy, path of the bytes)


def init_worker(blobs: dict[str, bytes]) -> None:
    """A local worker's initializer: keep every bundle's bytes (sent once per process)."""
    _BLOBS.clear()
    _BLOBS.update(blobs)


def run_local_chunk(jobs: list[Job], env_module: str | None, verify: bool) -> list[dict[str, Any]]:
    """:func:`run_chunk` with the bytes the initializer kept."""
    return run_chunk(jobs, _BLOBS[jobs[0].digest], env_module, verify)


def run_chunk(jobs: list[Job], data: bytes, env_module: str | None, verify: bool) -> list[dict[str, Any]]:
    """Run every job of a chunk (all of one bundle, whose bytes are ``data``); one result each."""
    return [_run_job(job, data, env_module, verify) for job in jobs]


def _loaded(digest: str, data: bytes) -> tuple[Any, Any, str]:
    """The bundle, its numpy policy and a file holding its bytes, made once per process."""
    if digest not in _BUNDLES:
        from rlport.backends.numpy import NumpyPolicy
        from rlport.bundle.bundle import Bundle
        from rlport.bundle.container import sha256
        from rlport.errors import IntegrityError

        if sha256(data) != digest:
            raise IntegrityError("the bundle's bytes changed on their way to the worker; run the evaluation again")
        folder = Path(tempfile.mkdtemp(prefix="rlport-fleet-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / f"{digest[:16]}.rlp"
        path.write_bytes(data)
        bundle = Bundle.load(path)
        _BUNDLES[digest] = (bundle, NumpyPolicy(bundle), str(path))
    return _BUNDLES[digest]


def _run_job(job: Job, data: bytes, env_module: str | None, verify: bool) -> dict[str, Any]:
    began = time.perf_counter()
    result: dict[str, Any] = {"bundle": job.bundle, "digest": job.digest, "env": job.env, "requested_env": job.env,
                              "seed": job.seed, "episodes": job.episodes}  # fmt: skip
    try:
        bundle, policy, path = _loaded(job.digest, data)
        result["env"] = job.env or bundle.env.id
        result.update(_verified(job, path, env_module) if verify else _played(job, bundle, policy, env_module))
        result["error"] = None
    except Exception as exc:  # noqa: BLE001 - any failure of this job's input or env is its result
        result["error"] = {"type": type(exc).__name__, "message": " ".join(str(exc).split())[:2000]}
    result["seconds"] = time.perf_counter() - began
    result["worker"] = os.getpid()
    return result


def _played(job: Job, bundle: Any, policy: Any, env_module: str | None) -> dict[str, Any]:
    """``rlport run``'s episodes: a fresh env (so that a job does not depend on the ones before it)."""
    from rlport.envs import check_spaces, make_env, run_episodes

    env = make_env(bundle.env, env_id=job.env, env_module=env_module)
    try:
        check_spaces(policy, env, exact=False)
        stats = run_episodes(policy, env, job.episodes, seed=job.seed)
    finally:
        env.close()
    data = stats.to_json()
    return {**data, "episodes": job.episodes, "steps": int(sum(data["lengths"]))}


def _verified(job: Job, path: str, env_module: str | None) -> dict[str, Any]:
    """``rlport verify``'s checks; the returns check's mean and std when it ran."""
    from rlport.verify.checks import verify

    report = verify(path, env_id=job.env, episodes=job.episodes, seed=job.seed, env_module=env_module).to_json()
    for check in report["checks"]:  # the temporary file's name means nothing to the user
        for key in ("measured", "detail"):
            check[key] = check[key].replace(path, job.bundle)
    returns = next((c["data"] for c in report["checks"] if c["name"] == "returns" and "mean" in c["data"]), {})
    return {"ok": report["ok"], "verify": report, "mean_return": returns.get("mean"),
            "std_return": returns.get("std")}  # fmt: skip
