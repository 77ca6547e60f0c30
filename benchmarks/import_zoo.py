"""Import figures of the RL Zoo sample: agents imported, time per agent, a fresh process (issues 12 and 13).

Usage: python benchmarks/import_zoo.py [--zoo PATH] [--repeats N] [--sb3] [--json]

The sample is --zoo, else $RLPORT_ZOO_SAMPLE, else ../shared/zoo-sample (run folders ALGO/ENV_N/ with
an evaluations.npz). Every run is imported as `rlport import RUN -o x.rlp --no-fingerprint` does it
(`rlport.import_zoo(run, fingerprint=False)` and `Bundle.save`), in this process after one warm-up
import (module imports are not counted), `--repeats` times; a run that fails is counted with its
message. Reported: agents imported / total, time per agent (the median over agents of each one's
median, and the slowest agent), and the fresh-process figure of `rlport import` for one typical run
(benchmarks/import_profile.py explains it and breaks it down). With --sb3, each run is also loaded
by SB3 with the usual `custom_objects` workaround (which needs the run's env) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from import_profile import fresh_line, fresh_process

ROOT = Path(__file__).resolve().parents[1]
TYPICAL = "ppo/CartPole-v1_1"
"""The run of the fresh-process figure when the sample has it (an MLP policy, no VecNormalize); else the first."""


def zoo_sample(given: Path | None) -> Path:
    return given or Path(os.environ.get("RLPORT_ZOO_SAMPLE") or ROOT.parent / "shared" / "zoo-sample")


def _rlport_import(run: Path, output: Path) -> float:
    import rlport

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rlport.import_zoo(run, fingerprint=False).save(output)
    return time.perf_counter() - began


def _sb3_load(run: Path) -> float | None:
    import sb3_contrib
    import stable_baselines3

    import rlport
    from rlport.envs import make_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = rlport.import_zoo(run, probes=0)
        try:
            env = make_env(bundle.env)
        except rlport.RlportError:
            return None
        name = {"qrdqn": "QRDQN", "ars": "ARS", "trpo": "TRPO", "tqc": "TQC"}.get(
            run.parent.name, run.parent.name.upper()
        )
        algo = getattr(stable_baselines3, name, None) or getattr(sb3_contrib, name, None)
        if algo is None:  # her/: the algorithm is in the run's args.yml
            return None
        constant = lambda _: 0.0  # noqa: E731
        custom = {"observation_space": env.observation_space, "action_space": env.action_space,
                  "lr_schedule": constant, "learning_rate": 0.0, "clip_range": constant,
                  "exploration_schedule": constant}  # fmt: skip
        began = time.perf_counter()
        algo.load(next(run.glob("*.zip")), custom_objects=custom, device="cpu")
        return time.perf_counter() - began


def run(zoo: Path, repeats: int, sb3: bool, fresh_repeats: int) -> dict[str, Any]:
    import rlport

    runs = sorted(p.parent for p in zoo.glob("*/*/evaluations.npz"))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "x.rlp"
        for candidate in runs:  # warm-up: module imports, file caches
            try:
                _rlport_import(candidate, output)
                break
            except rlport.RlportError:
                continue
        for folder in runs:
            name = f"{folder.parent.name}/{folder.name}"
            try:
                times = [_rlport_import(folder, output) for _ in range(repeats)]
            except rlport.RlportError as exc:
                rows.append({"run": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
                continue
            row = {"run": name, "ok": True, "median_s": float(np.median(times)), "max_s": float(np.max(times))}
            if sb3:
                theirs = [t for t in (_sb3_load(folder) for _ in range(repeats)) if t is not None]
                row["sb3_s"] = float(np.median(theirs)) if theirs else None
            rows.append(row)
    done = [r for r in rows if r["ok"]]
    typical = zoo / TYPICAL if (zoo / TYPICAL).is_dir() else (runs[0] if runs else None)
    return {
        "benchmark": "import_zoo",
        "sample": str(zoo),
        "command": "rlport import RUN -o x.rlp --no-fingerprint",
        "repeats": repeats,
        "imported": len(done),
        "total": len(rows),
        "per_agent_median_s": float(np.median([r["median_s"] for r in done])) if done else None,
        "per_agent_max_s": max((r["median_s"] for r in done), default=None),
        "slowest": max(done, key=lambda r: r["median_s"])["run"] if done else None,
        "runs": rows,
        "fresh_process": fresh_process(typical, fresh_repeats) if typical is not None and done else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def render(r: dict[str, Any]) -> str:
    ms = lambda s: f"{s * 1e3:8.1f} ms" if s is not None else "       -   "  # noqa: E731
    sb3 = any("sb3_s" in row for row in r["runs"])
    lines = [f"{r['command']}, RL Zoo sample {r['sample']} (median of {r['repeats']} per run; load average "
             f"{r['load_average']})", ""]  # fmt: skip
    header = f"{'run':36s} {'rlport import':>12s}" + (f" {'SB3 load':>11s} {'ratio':>7s}" if sb3 else "")
    lines.append(header)
    for row in r["runs"]:
        if not row["ok"]:
            lines.append(f"{row['run']:36s} FAILED  {row['error'][:160]}")
            continue
        line = f"{row['run']:36s} {ms(row['median_s'])}"
        if sb3:
            theirs = row.get("sb3_s")
            ratio = f"{theirs / row['median_s']:6.1f}x" if theirs else ""
            line += f" {ms(theirs) if theirs else '   (no env)':>11s} {ratio:>7s}"
        lines.append(line)
    lines += [
        "",
        f"agents imported: {r['imported']} / {r['total']}",
        f"time per agent: median {ms(r['per_agent_median_s']).strip()}, max {ms(r['per_agent_max_s']).strip()} "
        f"({r['slowest']}), module imports not counted",
    ]
    if r["fresh_process"]:
        lines.append(fresh_line(r["fresh_process"], Path(r["sample"])))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=None, help="the sample (default: $RLPORT_ZOO_SAMPLE, "
                        "else ../shared/zoo-sample)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="imports per run (default 5)")
    parser.add_argument("--fresh-repeats", type=int, default=7, help="fresh processes (default 7)")
    parser.add_argument("--sb3", action="store_true", help="also time SB3's load of each run (needs the env)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    zoo = zoo_sample(args.zoo)
    if not any(zoo.glob("*/*/evaluations.npz")):
        print(f"no RL Zoo sample at {zoo} (run folders ALGO/ENV_N/ with evaluations.npz); set RLPORT_ZOO_SAMPLE "
              "or pass --zoo", file=sys.stderr)  # fmt: skip
        return 2
    result = run(zoo, max(1, args.repeats), args.sb3, max(1, args.fresh_repeats))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
