"""Import figures of the Stable Baselines 2 sample: agents imported, time per agent, a fresh process (issue 13).

Usage: python benchmarks/import_sb2.py [--sample PATH] [--repeats N] [--json]

The sample is --sample, else $RLPORT_SB2_SAMPLE, else ../shared/sb2-sample (the SB2 RL Zoo layout:
model files ALGO/ENV.pkl or ALGO/ENV.zip, with ALGO/ENV/ beside them where the zoo kept one). Every
agent is imported as `rlport import ALGO/ENV.pkl -o x.rlp --no-fingerprint` does it
(`rlport.import_sb2(path, fingerprint=False)` and `Bundle.save`), in this process after one warm-up
import (module imports are not counted), `--repeats` times; an agent that fails is counted with its
message. Reported: agents imported / total, time per agent (the median over agents of each one's
median, and the slowest agent), and the fresh-process figure of `rlport import` for one typical agent
(benchmarks/import_profile.py explains it). The SB2 import maps SB2-era env ids to today's by making
the candidate envs (their spaces are checked), so its time depends on the envs installed.
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
TYPICAL = "a2c/CartPole-v1.pkl"
"""The agent of the fresh-process figure when the sample has it (an MLP policy, no statistics); else the first."""


def sb2_sample(given: Path | None) -> Path:
    return given or Path(os.environ.get("RLPORT_SB2_SAMPLE") or ROOT.parent / "shared" / "sb2-sample")


def agents(sample: Path) -> list[Path]:
    """The model files of the zoo layout: ``ALGO/ENV.pkl`` and ``ALGO/ENV.zip``."""
    return sorted(p for p in sample.glob("*/*") if p.is_file() and p.suffix in (".pkl", ".zip"))


def _rlport_import(path: Path, output: Path) -> float:
    import rlport

    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rlport.import_sb2(path, fingerprint=False).save(output)
    return time.perf_counter() - began


def run(sample: Path, repeats: int, fresh_repeats: int) -> dict[str, Any]:
    import rlport

    files = agents(sample)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "x.rlp"
        for candidate in files:  # warm-up: module imports, file caches
            try:
                _rlport_import(candidate, output)
                break
            except rlport.RlportError:
                continue
        for path in files:
            name = path.relative_to(sample).as_posix()
            try:
                times = [_rlport_import(path, output) for _ in range(repeats)]
            except rlport.RlportError as exc:
                rows.append({"agent": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
                continue
            rows.append({"agent": name, "ok": True, "median_s": float(np.median(times)), "max_s": float(np.max(times))})
    done = [r for r in rows if r["ok"]]
    typical = sample / TYPICAL if (sample / TYPICAL).is_file() else (files[0] if files else None)
    return {
        "benchmark": "import_sb2",
        "sample": str(sample),
        "command": "rlport import ALGO/ENV.pkl -o x.rlp --no-fingerprint",
        "repeats": repeats,
        "imported": len(done),
        "total": len(rows),
        "per_agent_median_s": float(np.median([r["median_s"] for r in done])) if done else None,
        "per_agent_max_s": max((r["median_s"] for r in done), default=None),
        "slowest": max(done, key=lambda r: r["median_s"])["agent"] if done else None,
        "agents": rows,
        "fresh_process": fresh_process(typical, fresh_repeats) if typical is not None and done else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def render(r: dict[str, Any]) -> str:
    ms = lambda s: f"{s * 1e3:8.1f} ms" if s is not None else "-"  # noqa: E731
    lines = [f"{r['command']}, SB2 sample {r['sample']} (median of {r['repeats']} per agent; load average "
             f"{r['load_average']})", "", f"{'agent':40s} {'rlport import':>12s}"]  # fmt: skip
    for row in r["agents"]:
        text = ms(row["median_s"]) if row["ok"] else f"FAILED  {row['error'][:160]}"
        lines.append(f"{row['agent']:40s} {text}")
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
    parser.add_argument("--sample", type=Path, default=None, help="the sample (default: $RLPORT_SB2_SAMPLE, "
                        "else ../shared/sb2-sample)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="imports per agent (default 5)")
    parser.add_argument("--fresh-repeats", type=int, default=7, help="fresh processes (default 7)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    sample = sb2_sample(args.sample)
    if not agents(sample):
        print(f"no SB2 sample at {sample} (model files ALGO/ENV.pkl or ALGO/ENV.zip); set RLPORT_SB2_SAMPLE or "
              "pass --sample", file=sys.stderr)  # fmt: skip
        return 2
    result = run(sample, max(1, args.repeats), max(1, args.fresh_repeats))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
