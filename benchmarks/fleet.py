"""``rlport eval`` at scale on this machine: jobs per second and efficiency, and the per-task overhead.

Imports runs of the RL Zoo sample (``../shared/zoo-sample`` or ``$RLPORT_ZOO_SAMPLE``) into a temporary
folder, then evaluates bundles x seeds with the local engine (1 and 2 workers) and with a local Ray
of 2 CPUs (``--no-ray`` leaves it out), checking that every engine gives the same returns. The
per-task overhead is the round trip of an empty task (``os.getpid``) through each engine.

    .venv/bin/python benchmarks/fleet.py [--quick] [--json] [--seeds K] [--no-ray]

Efficiency = the summed time of the jobs / (wall time x workers): 100% means no worker ever idles
and the engine costs nothing. Wall time includes starting the workers (and Ray).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import add_common_args, emit, machine_info, progress, table  # noqa: E402

RUNS = ("ppo/CartPole-v1_1", "qrdqn/Acrobot-v1_1", "a2c/Pendulum-v1_1", "sac/Pendulum-v1_1")


def _sample() -> Path:
    value = os.environ.get("RLPORT_ZOO_SAMPLE", "").strip()
    return Path(value) if value else Path(__file__).resolve().parents[1].parent / "shared" / "zoo-sample"


def _import(folder: Path) -> list[str]:
    from rlport.cli.main import main

    paths = []
    for run in RUNS:
        path = folder / (run.replace("/", "-") + ".rlp")
        with contextlib.redirect_stdout(io.StringIO()):
            if main(["import", str(_sample() / run), "-o", str(path), "--no-fingerprint"]) != 0:
                raise SystemExit(f"cannot import {run} from {_sample()}")
        paths.append(str(path))
    return paths


def _noop(*_: object) -> int:
    return os.getpid()


def local_overhead(tasks: int) -> float:
    """Median seconds of one empty task's round trip through a 2-process pool (started and warm)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_noop, range(4)))
        times = []
        for _ in range(tasks):
            began = time.perf_counter()
            pool.submit(_noop).result()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def ray_overhead(tasks: int) -> tuple[float, float]:
    """(seconds to start a local Ray of 2 CPUs, median seconds of one empty task's round trip)."""
    import ray

    began = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    start = time.perf_counter() - began
    noop = ray.remote(num_cpus=1)(_noop)
    ray.get([noop.remote() for _ in range(4)])
    times = []
    for _ in range(tasks):
        began = time.perf_counter()
        ray.get(noop.remote())
        times.append(time.perf_counter() - began)
    ray.shutdown()
    return start, statistics.median(times)


def fleet_run(paths: list[str], engine: str, workers: int, seeds: int, episodes: int) -> dict:
    from rlport.fleet import evaluate

    began = time.perf_counter()
    result = evaluate(paths, seeds=seeds, episodes=episodes, engine=engine, workers=workers)
    wall = time.perf_counter() - began
    work = sum(r["seconds"] for r in result["results"] if r["seconds"])
    return {"engine": engine, "workers": workers, "jobs": result["jobs"], "wall_s": wall,
            "jobs_per_s": result["jobs"] / wall, "work_s": work, "efficiency": work / (wall * workers),
            "failed": result["failed"], "returns": [r["returns"] for r in result["results"]]}  # fmt: skip


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--seeds", type=int, default=None, help="seeds per bundle (default 20, --quick 6)")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per job (default 5)")
    parser.add_argument("--no-ray", action="store_true", help="leave the Ray engine out")
    args = parser.parse_args()
    seeds = args.seeds or (6 if args.quick else 20)
    with tempfile.TemporaryDirectory() as folder:
        progress("importing the zoo runs")
        paths = _import(Path(folder))
        progress("per-task overhead")
        overhead = {"local": local_overhead(50 if args.quick else 300)}
        if not args.no_ray:
            overhead["ray_start_s"], overhead["ray"] = ray_overhead(50 if args.quick else 300)
        runs = []
        for engine, workers in [("local", 1), ("local", 2)] + ([] if args.no_ray else [("ray", 2)]):
            progress(f"{engine}, {workers} workers: {len(paths)} bundles x {seeds} seeds x {args.episodes} episodes")
            runs.append(fleet_run(paths, engine, workers, seeds, args.episodes))
    same = all(run["returns"] == runs[0]["returns"] for run in runs)
    for run in runs:
        del run["returns"]
    result = {"runs": runs, "overhead_s": overhead, "same_returns": same, "machine": machine_info()}

    def render(r: dict) -> str:
        rows = [(x["engine"], x["workers"], x["jobs"], f"{x['wall_s']:.1f}", f"{x['jobs_per_s']:.1f}",
                 f"{x['efficiency']:.0%}") for x in r["runs"]]  # fmt: skip
        lines = [table(["engine", "workers", "jobs", "wall s", "jobs/s", "efficiency"], rows), ""]
        cost = r["overhead_s"]
        ray = f", ray {cost['ray'] * 1e3:.2f} ms (ray start {cost['ray_start_s']:.1f} s)" if "ray" in cost else ""
        lines.append(f"empty task round trip: local {cost['local'] * 1e3:.2f} ms{ray}")
        lines.append(f"same returns in every engine: {r['same_returns']}")
        return "\n".join(lines)

    emit(result, args.json, render)


if __name__ == "__main__":
    main()
