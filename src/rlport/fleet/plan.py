"""The jobs of a fleet evaluation (every bundle x env x seed) and the chunks they travel in.

A job is what ``rlport run BUNDLE --env ENV --seed S --episodes N`` does: N episodes, episode ``i``
seeded ``S + i``. Jobs are sent to workers in chunks of jobs of one bundle, sized from the time the
bundle's jobs took so far so that a task holds at least :data:`MIN_TASK_SECONDS` of work (the
per-task overhead of either engine is a few milliseconds: docs/SCALE.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlport.bundle.bundle import Bundle
from rlport.bundle.container import MAX_BUNDLE_SIZE, read_regular_file, sha256
from rlport.errors import BundleError, short

__all__ = [
    "Job",
    "FleetBundle",
    "Chunker",
    "bundle_paths",
    "load_fleet",
    "plan_jobs",
    "seeds_for",
    "MIN_TASK_SECONDS",
    "MAX_CHUNK_JOBS",
    "MAX_JOBS",
    "MAX_BUNDLES",
]

MIN_TASK_SECONDS = 0.1
"""The least work one task (a chunk of jobs) should hold, in seconds: far above the per-task overhead."""
MAX_CHUNK_JOBS = 1_000
"""Most jobs in one chunk, however short they are."""
MAX_JOBS = 1_000_000
"""Most jobs (bundles x envs x seeds) one evaluation plans."""
MAX_BUNDLES = 100_000
"""Most bundles one evaluation reads (a folder argument counts every ``.rlp`` below it)."""


@dataclass(frozen=True)
class Job:
    """One (bundle, env, seed): ``episodes`` episodes, episode ``i`` seeded ``seed + i``.

    ``index`` is the job's place in the plan (results are reported in that order), ``env`` the env id
    the user chose (None: the bundle's), ``attempt`` how many times it was sent already.
    """

    index: int
    bundle: str
    digest: str
    env: str | None
    seed: int
    episodes: int
    attempt: int = 0


@dataclass(frozen=True)
class FleetBundle:
    """A bundle of the fleet: its path as given, the bytes sent to workers, and what the summary needs."""

    path: str
    digest: str
    data: bytes
    algorithm: str
    env_id: str | None
    reference: Any  # (returns or (mean, std, n), source) from verify, or None


def bundle_paths(arguments: list[str]) -> list[str]:
    """The bundles named: files as given, folders expanded to the ``.rlp`` files below them (sorted).

    Raises:
        BundleError: a path does not exist, a folder holds no ``.rlp`` file, or there are too many.
    """
    paths: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*.rlp") if p.is_file())
            if not found:
                raise BundleError(f"the folder {short(argument)} holds no bundle (*.rlp); pass bundles or their folder")
            paths += found
        elif path.exists():
            paths.append(argument)
        else:
            raise BundleError(f"no such bundle or folder: {short(argument)}")
        if len(paths) > MAX_BUNDLES:
            raise BundleError(f"more than {MAX_BUNDLES:,} bundles; evaluate them in several runs")
    return list(dict.fromkeys(paths))  # a bundle named twice is evaluated once


def load_fleet(paths: list[str]) -> list[FleetBundle]:
    """Read and validate every bundle before any work starts (a bad file is an input error, exit 2)."""
    from rlport.verify.checks import reference_returns

    fleet = []
    for path in paths:
        bundle = Bundle.load(path)
        data = read_regular_file(path, f"bundle {path}", MAX_BUNDLE_SIZE)
        algorithm = str(bundle.provenance.get("algorithm") or "?")
        env_id = bundle.env.id if isinstance(bundle.env.id, str) else None
        fleet.append(FleetBundle(path, sha256(data), data, algorithm, env_id, reference_returns(bundle)))
    return fleet


def seeds_for(seed: int, count: int, episodes: int) -> list[int]:
    """``count`` seeds from ``seed``, ``episodes`` apart, so that no two jobs replay the same episode.

    Example:
        >>> seeds_for(0, 3, 10)
        [0, 10, 20]
    """
    return [seed + k * episodes for k in range(count)]


def plan_jobs(fleet: list[FleetBundle], envs: list[str | None], seeds: list[int], episodes: int) -> list[Job]:
    """Every bundle x env x seed, in that order.

    Raises:
        BundleError: more than :data:`MAX_JOBS` jobs.
    """
    total = len(fleet) * len(envs) * len(seeds)
    if total > MAX_JOBS:
        raise BundleError(f"{total:,} jobs is over the limit of {MAX_JOBS:,}; evaluate the fleet in several runs")
    jobs = []
    for member in fleet:
        for env in envs:
            for seed in seeds:
                jobs.append(Job(len(jobs), member.path, member.digest, env, seed, episodes))
    return jobs


class Chunker:
    """Hands out chunks of jobs of one bundle, each sized to hold about :data:`MIN_TASK_SECONDS` of work.

    A bundle's first chunk is one job (its probe); its next chunks wait for the probe's time. Chunks
    are also kept small enough that every worker gets at least two while work remains.

    Example:
        >>> chunker = Chunker([Job(i, "a.rlp", "d", None, i, 1) for i in range(50)], workers=2)
        >>> len(chunker.next())
        1
        >>> chunker.observe("d", 0.01)
        >>> len(chunker.next())
        10
    """

    def __init__(self, jobs: list[Job], workers: int, min_seconds: float = MIN_TASK_SECONDS) -> None:
        self.queues: dict[str, deque[Job]] = {}
        for job in jobs:
            self.queues.setdefault(job.digest, deque()).append(job)
        self.workers = max(1, workers)
        self.min_seconds = min_seconds
        self.seconds: dict[str, list[float]] = {}
        self.probing: set[str] = set()

    def pending(self) -> int:
        """The jobs not handed out yet."""
        return sum(len(queue) for queue in self.queues.values())

    def next(self) -> list[Job] | None:
        """The next chunk, or None when every remaining job waits for its bundle's probe (or none remain)."""
        for digest, queue in self.queues.items():
            if not queue:
                continue
            if digest not in self.seconds:
                if digest in self.probing:
                    continue
                self.probing.add(digest)
                return [queue.popleft()]
            times = self.seconds[digest]
            per_job = max(sum(times) / len(times), 1e-6)
            size = min(math.ceil(self.min_seconds / per_job), MAX_CHUNK_JOBS)
            size = max(1, min(size, math.ceil(self.pending() / (2 * self.workers))))
            return [queue.popleft() for _ in range(min(size, len(queue)))]
        return None

    def observe(self, digest: str, seconds: float) -> None:
        """Record how long one job of a bundle took (its chunks are sized from the mean)."""
        self.seconds.setdefault(digest, []).append(float(seconds))
        self.probing.discard(digest)

    def put_back(self, jobs: list[Job]) -> None:
        """Return jobs to the front of their queues (a retry), their attempt counted."""
        for job in reversed(jobs):
            self.queues.setdefault(job.digest, deque()).appendleft(job)
            self.probing.discard(job.digest)
