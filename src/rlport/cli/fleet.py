"""``rlport eval``: many bundles x envs x seeds on local processes or Ray (``rlport.fleet.evaluate``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rlport.cli import args as types
from rlport.cli.output import EXIT_CHECK_FAILED, EXIT_OK, emit

__all__ = ["register", "cmd_eval", "MAX_SEEDS", "MAX_WORKERS"]

MAX_SEEDS = 100_000
"""Most seeds ``rlport eval --seeds`` takes."""
MAX_WORKERS = 4_096
"""Most workers ``rlport eval --workers`` takes."""
_CSV_FIELDS = ("bundle", "digest", "env", "seed", "episodes", "mean_return", "std_return", "steps", "seconds",
               "attempts", "error", "returns")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rlport eval`` to ``rlport``'s parser."""
    p = sub.add_parser(
        "eval",
        help="evaluate many bundles x seeds (x envs) on local processes or a Ray cluster, with a summary table",
        description="Every bundle x env x seed is a job (N episodes, episode i seeded SEED + i, as `rlport run`); "
        "jobs run in chunks of at least ~0.1 s of work. Results stream to --output as JSON lines as they finish.",
    )
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundles (.rlp), or folders of them")
    p.add_argument(
        "--env", action="append", metavar="ID", help="run in this env id instead of each bundle's (repeat: x envs)"
    )
    p.add_argument("--env-module", type=types.module_name, metavar="MODULE",
                   help="allow recorded env ids MODULE:EnvName to import MODULE")  # fmt: skip
    p.add_argument("--episodes", type=types.count(1, types.MAX_EPISODES), default=10, help="episodes per job")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=types.count(1, MAX_SEEDS), default=1,
                       help="K seeds per bundle: 0, N, 2N, ... (N = --episodes: no episode played twice)")  # fmt: skip
    seeds.add_argument("--seed", type=types.seed, default=None, help="one seed (episodes SEED, SEED+1, ...)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: a process pool on this machine (default); ray: Ray core tasks")  # fmt: skip
    p.add_argument("--address", default=None, help="ray: the cluster's address (default: start a local Ray)")
    p.add_argument("--workers", type=types.count(1, MAX_WORKERS), default=None,
                   help="worker processes (local, default: one per core) or CPUs of a local Ray")  # fmt: skip
    p.add_argument("--retries", type=types.count(0, 100), default=2, help="retries of a chunk whose worker was lost")
    p.add_argument("--verify", action="store_true", help="run rlport verify's checks per job instead of episodes")
    p.add_argument("-o", "--output", metavar="FILE.jsonl", help="write each result as a JSON line as it arrives")
    p.add_argument("--resume", action="store_true", help="with --output: skip the jobs the file has results for")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help='print one JSON object: {"results": [...], "summary": ...}')
    out.add_argument("--csv", metavar="FILE", help="also write one CSV row per result")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """``rlport eval``: run the fleet, print the summary table (or JSON); exit 1 when a job or a check failed."""
    from pathlib import Path

    from rlport.bundle.atomic import check_destination
    from rlport.cli.progress import Progress
    from rlport.errors import RlportError
    from rlport.fleet import evaluate

    if args.resume and not args.output:
        raise RlportError("--resume goes on with a results file: add --output FILE.jsonl")
    if args.csv:
        check_destination(Path(args.csv), "the CSV results")
    seeds: Any = [args.seed] if args.seed is not None else args.seeds
    began = time.monotonic()
    bar: Progress | None = None

    def on_result(result: dict[str, Any], done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(total, "jobs").__enter__()
            bar.done = done - 1  # resumed results count as done
        elapsed = time.monotonic() - began
        eta = elapsed / max(done, 1) * (total - done)
        bar.update(note=f"ETA {eta:.0f}s" + (", 1 failed" if result.get("error") else ""))

    try:
        result = evaluate(args.bundles, envs=args.env, seeds=seeds, seed=0, episodes=args.episodes,
                          engine=args.engine, workers=args.workers, address=args.address, verify=args.verify,
                          env_module=args.env_module, retries=args.retries, output=args.output,
                          resume=args.resume, on_result=on_result)  # fmt: skip
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if args.csv:
        _write_csv(Path(args.csv), result["results"])
    emit(result, args.json, _render)
    verified = all(row.get("verified", True) for row in result["summary"])
    reproduced = all(row["reproduced"] != "no" for row in result["summary"])
    return EXIT_OK if result["failed"] == 0 and verified and reproduced else EXIT_CHECK_FAILED


def _render(r: dict[str, Any]) -> str:
    from rlport.fleet.summary import render_markdown

    lines = [render_markdown(r["summary"]), ""]
    rate = f", {r['jobs_per_second']:.2f} jobs/s" if r["jobs_per_second"] else ""
    resumed = f" ({r['resumed']} from the results file)" if r["resumed"] else ""
    lines.append(
        f"{r['jobs']} jobs{resumed} on {r['engine']} with {r['workers']} workers in {r['seconds']:.1f} s{rate}"
    )
    failed = [x for x in r["results"] if x.get("error")]
    for x in failed[:10]:
        lines.append(f"failed: {x['bundle']} seed {x['seed']}: {x['error']['type']}: {x['error']['message']}")
    if len(failed) > 10:
        lines.append(f"... and {len(failed) - 10} more failed jobs (--json or --csv lists them all)")
    if any(row["reproduced"] == "no" for row in r["summary"]):
        lines.append("not reproduced: the returns differ from the reference (z > 3 and more than 5% apart)")
    if r["verify"]:
        bad = [row["bundle"] for row in r["summary"] if not row.get("verified", True)]
        lines.append(f"verify: FAILED for {', '.join(bad)}" if bad else "verify: no check failed")
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _write_csv(path: Any, results: list[dict[str, Any]]) -> None:
    """One row per result, written all at once (atomically); returns as space-separated numbers."""
    import csv
    import io

    from rlport.bundle.atomic import write_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        row = dict(result)
        row["returns"] = " ".join(repr(float(x)) for x in result.get("returns") or [])
        row["error"] = f"{result['error']['type']}: {result['error']['message']}" if result.get("error") else ""
        writer.writerow(row)
    write_atomic(path, buffer.getvalue().encode("utf-8"), what="the CSV results")
