"""``rlport.fleet.evaluate``: every bundle x env x seed as jobs, on local processes or Ray, streamed as they finish.

Example:
    >>> result = evaluate(["zoo/"], seeds=2, episodes=10)              # doctest: +SKIP
    >>> [(r["bundle"], r["seed"], r["mean_return"]) for r in result["results"]]   # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rlport.errors import RlportError
from rlport.fleet.engines import WorkerLost, make_engine
from rlport.fleet.plan import Chunker, Job, bundle_paths, load_fleet, plan_jobs, seeds_for
from rlport.fleet.resume import done_results, open_stream
from rlport.fleet.summary import summarize

__all__ = ["evaluate", "DEFAULT_RETRIES"]

DEFAULT_RETRIES = 2
"""How many times a chunk whose worker was lost is sent again before its jobs are reported as failed."""


def evaluate(
    bundles: list[str],
    envs: list[str] | None = None,
    seeds: int | list[int] = 1,
    seed: int = 0,
    episodes: int = 10,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    verify: bool = False,
    env_module: str | None = None,
    retries: int = DEFAULT_RETRIES,
    output: str | Path | None = None,
    resume: bool = False,
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every bundle x env x seed; return ``{"results": [...], "summary": [...], ...}``.

    Args:
        bundles: bundle files, or folders (every ``.rlp`` below them).
        envs: env ids to run each bundle in (None: each bundle's own).
        seeds: how many seeds (``seed``, ``seed + episodes``, ... so that no episode is played twice),
            or the seeds themselves.
        episodes: episodes per job; episode ``i`` of the job of seed ``S`` is seeded ``S + i``, as ``rlport run``.
        engine: ``"local"`` (a process pool, ``workers`` processes, default one per core) or ``"ray"``
            (Ray core tasks on the cluster at ``address``, or a local Ray of ``workers`` CPUs).
        verify: run ``rlport verify``'s checks per job instead of plain episodes.
        env_module: the module a recorded ``module:EnvName`` id may import.
        retries: how often a chunk whose worker was lost is retried before its jobs are reported failed.
        output: a JSON lines file that gets each result as it arrives (an interrupted run keeps them).
        resume: with ``output``, skip the jobs it already holds a result for and keep those results.
        on_result: called as ``on_result(result, done, total)`` for each result as it arrives.

    Returns:
        ``results`` (one per job, in plan order, with the keys of ``rlport run --json`` and ``error``),
        ``summary`` (one row per bundle x env: mean, std, reference, reproduced), ``engine``, ``workers``,
        ``jobs``, ``failed``, ``seconds``, ``jobs_per_second``.

    Raises:
        RlportError: a bundle cannot be read, an argument is out of range, ``output`` cannot be written.
    """
    if retries < 0 or episodes < 1:
        raise RlportError("retries must be >= 0 and episodes >= 1")
    fleet = load_fleet(bundle_paths(list(bundles)))
    seed_list = seeds_for(seed, seeds, episodes) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise RlportError("no seed to run; pass --seeds 1 or more")
    jobs = plan_jobs(fleet, list(envs) if envs else [None], seed_list, episodes)
    kept = done_results(output, jobs, verify) if resume and output is not None else {}
    stream = open_stream(output, append=resume) if output is not None else None
    began = time.perf_counter()
    results: dict[int, dict[str, Any]] = dict(kept)
    todo = [job for job in jobs if job.index not in kept]
    try:
        used = _run(
            todo, fleet, engine, workers, address, env_module, verify, retries, results, stream, on_result, len(jobs)
        )
    finally:
        if stream is not None:
            stream.close()
    seconds = time.perf_counter() - began
    ordered = [results[job.index] for job in jobs]
    failed = sum(1 for r in ordered if r.get("error"))
    return {
        "results": ordered, "summary": summarize(fleet, ordered), "engine": engine, "workers": used,
        "jobs": len(jobs), "resumed": len(kept), "failed": failed, "seconds": seconds,
        "jobs_per_second": (len(todo) / seconds) if seconds > 0 and todo else None,
        "verify": verify, "episodes": episodes, "seeds": seed_list,
    }  # fmt: skip


def _run(todo: list[Job], fleet: list, engine_name: str, workers: int | None, address: str | None,
         env_module: str | None, verify: bool, retries: int, results: dict[int, dict[str, Any]], stream: Any,
         on_result: Callable | None, total: int) -> int:  # fmt: skip
    """The scheduling loop: keep 2 chunks per worker in flight, record each result as it arrives; the workers used."""
    if not todo:  # every result came from the results file: no engine to start
        return 0
    engine = make_engine(engine_name, fleet, workers, address, env_module, verify)
    chunker = Chunker(todo, engine.workers)
    in_flight: dict[Any, list[Job]] = {}

    def record(result: dict[str, Any], job: Job) -> None:
        result["attempts"] = job.attempt + 1
        results[job.index] = result
        if stream is not None:
            stream.write(json.dumps(result, sort_keys=True) + "\n")
            stream.flush()
        if on_result is not None:
            on_result(result, len(results), total)

    try:
        while chunker.pending() or in_flight:
            while len(in_flight) < 2 * engine.workers and (chunk := chunker.next()) is not None:
                in_flight[engine.submit(chunk)] = chunk
            for handle in engine.wait(list(in_flight)):
                chunk = in_flight.pop(handle)
                try:
                    answers = engine.result(handle)
                except WorkerLost as exc:
                    _lost(chunk, exc, retries, chunker, record)
                    continue
                for job, result in zip(chunk, answers, strict=True):
                    chunker.observe(job.digest, result["seconds"])
                    record(result, job)
    finally:
        engine.close()
    return engine.workers


def _lost(chunk: list[Job], exc: WorkerLost, retries: int, chunker: Chunker, record: Callable) -> None:
    """A lost chunk: sent again while it has retries left, else each job reported failed with the cause."""
    if chunk[0].attempt < retries:
        chunker.put_back([replace(job, attempt=job.attempt + 1) for job in chunk])
        return
    for job in chunk:
        message = f"{exc} (tried {job.attempt + 1} times)"
        record({"bundle": job.bundle, "digest": job.digest, "env": job.env, "requested_env": job.env, "seed": job.seed,
                "episodes": job.episodes, "error": {"type": "WorkerLost", "message": message},
                "seconds": None, "worker": None}, job)  # fmt: skip
