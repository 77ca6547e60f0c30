"""Import speed: every run of the RL Zoo sample, rlport's torch-free import vs SB3's custom_objects load.

Usage: python benchmarks/import_zoo.py [--zoo PATH] [--json]

Each run is timed in this process after one warm-up import (so module imports are not counted),
rlport and SB3 alternating. SB3 needs the run's env to build its spaces (the usual workaround);
runs whose env cannot be created here have no SB3 figure. A fresh-process figure for one run
(`rlport import` from the command line, imports included) is printed as well.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZOO = ROOT.parent / "shared" / "zoo-sample"


def _rlport_import(run: Path) -> float:
    import rlport

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rlport.import_zoo(run)
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
        algo = getattr(stable_baselines3, name, None) or getattr(sb3_contrib, name)
        constant = lambda _: 0.0  # noqa: E731
        custom = {"observation_space": env.observation_space, "action_space": env.action_space,
                  "lr_schedule": constant, "learning_rate": 0.0, "clip_range": constant,
                  "exploration_schedule": constant}  # fmt: skip
        began = time.perf_counter()
        algo.load(next(run.glob("*.zip")), custom_objects=custom, device="cpu")
        return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=DEFAULT_ZOO)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs = sorted(p.parent for p in args.zoo.glob("*/*/evaluations.npz"))
    if not runs:
        print(f"no RL Zoo sample at {args.zoo}", file=sys.stderr)
        return 2
    _rlport_import(runs[0])
    rows = []
    for run in runs:
        ours = [_rlport_import(run) for _ in range(args.repeats)]
        theirs = [t for t in (_sb3_load(run) for _ in range(args.repeats)) if t is not None]
        rows.append({"run": f"{run.parent.name}/{run.name}", "rlport_s": float(np.median(ours)),
                     "sb3_s": float(np.median(theirs)) if theirs else None})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rlport", "import", str(runs[0]), "-o", f"{tmp}/x.rlp"],
                       check=True, capture_output=True)  # fmt: skip
        fresh = time.perf_counter() - began
    total = sum(r["rlport_s"] for r in rows)
    result = {"runs": rows, "total_rlport_s": total, "fresh_process_s": fresh, "fresh_run": rows[0]["run"]}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'run':36s} {'rlport import':>14s} {'SB3 load':>12s} {'ratio':>8s}")
    for r in rows:
        sb3 = f"{r['sb3_s'] * 1000:9.1f} ms" if r["sb3_s"] else "   (no env)"
        ratio = f"{r['sb3_s'] / r['rlport_s']:7.1f}x" if r["sb3_s"] else ""
        print(f"{r['run']:36s} {r['rlport_s'] * 1000:11.1f} ms {sb3:>12s} {ratio:>8s}")
    print(f"\nwhole sample ({len(rows)} runs): {total:.2f} s with rlport (median of {args.repeats} per run)")
    print(f"fresh process `rlport import {rows[0]['run']}` (imports included): {fresh:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
