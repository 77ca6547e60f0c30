"""The compression table (issue 14): every RL Zoo sample agent as float, fp16 and int8 bundles, side by side.

Usage: python benchmarks/compress.py [--zoo PATH] [--episodes N] [--calibrate N] [--quick] [--json]

The sample is --zoo, else $RLPORT_ZOO_SAMPLE, else ../shared/zoo-sample (run folders ALGO/ENV_N/ with an
evaluations.npz). Each run is imported (`rlport.import_zoo`), then compressed three ways: fp16 weights,
int8 weights, int8 weights and int8 activations (calibrated on --calibrate observations of env
rollouts). For each, `rlport.compression.compare` gives: file size and weight bytes against the float
bundle; action agreement on the float policy's own rollouts (discrete: % identical actions;
continuous: max and mean error as a fraction of the action range); returns on paired episodes (episode
i of each policy reset with seed i) with the mean difference and its 95% confidence interval. An agent
whose env cannot be made here is compared on its probes only (no return), and says why.

Targets (issue 14): int8 weight bytes <= 0.3x the float ones for the larger policies; int8 returns
within the paired interval of the float ones on every agent whose env exists; fp16 >= 99.9% identical
discrete actions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMES = {"fp16": ("fp16", None), "int8": ("int8", None), "int8+act": ("int8", "int8")}
"""Row label -> (weights, activations) given to rlport.compress."""


def zoo_sample(given: Path | None) -> Path:
    return given or Path(os.environ.get("RLPORT_ZOO_SAMPLE") or ROOT.parent / "shared" / "zoo-sample")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure_run(run: Path, episodes: int, calibrate: int) -> list[dict[str, Any]]:
    """One row per scheme for the agent in ``run`` (or one row saying why it could not be imported)."""
    import rlport
    from rlport.compression import compare, compress
    from rlport.errors import RlportError

    name = f"{run.parent.name}/{run.name}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original = rlport.import_zoo(run, fingerprint=False)
    except RlportError as exc:
        return [{"agent": name, "scheme": "-", "error": str(exc)[:200]}]
    rows = []
    for label, (weights, activations) in SCHEMES.items():
        began = time.perf_counter()
        try:
            compressed = compress(original, weights, activations, calibrate=calibrate, seed=1000)
            report = compare(original, compressed, episodes=episodes, seed=0)
        except RlportError as exc:
            rows.append({"agent": name, "scheme": label, "error": str(exc)[:200]})
            continue
        rows.append({"agent": name, "scheme": label, "seconds": time.perf_counter() - began, **report.to_json()})
        progress(f"{name} {label}: {_agreement(rows[-1])}, {_returns(rows[-1])}")
    return rows


def _agreement(row: dict[str, Any]) -> str:
    a = row["agreement"]
    if a["kind"] == "discrete":
        return f"{100 * a['identical']:.2f}% identical"
    return f"max {a['max_error']:.1e} / mean {a['mean_error']:.1e}"


def _returns(row: dict[str, Any]) -> str:
    r = row["returns"]
    if r is None:
        return "no env here"
    low, high = r["ci95"]
    inside = "DROPPED" if r["dropped"] else "kept, drop < 1%" if r["significant_drop"] else "kept"
    ci = "-" if high is None else f"[{low:+.1f}, {high:+.1f}]"
    return f"{r['float_mean']:.1f} -> {r['compressed_mean']:.1f} ({r['difference']:+.1f}, CI {ci}, {inside})"


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['episodes']} paired episodes per agent and scheme; activations calibrated on "
        f"{result['calibrate']} observations",
        "",
        "| agent | scheme | file (x float) | weights (x float) | agreement on rollouts | return float -> compressed "
        "(difference, 95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['agent']} | {row['scheme']} | - | - | - | error: {row['error']} |")
            continue
        sizes = row["sizes"]
        file_ = f"{sizes['compressed']['file_bytes'] / 1024:.1f} KiB ({sizes['ratio']['file_bytes']:.2f}x)"
        weights = f"{sizes['compressed']['weight_bytes'] / 1024:.1f} KiB ({sizes['ratio']['weight_bytes']:.2f}x)"
        lines.append(
            f"| {row['agent']} | {row['scheme']} | {file_} | {weights} | {_agreement(row)} | {_returns(row)} |"
        )
    lines += ["", *(f"- {line}" for line in result["summary"])]
    return "\n".join(lines)


def summarise(rows: list[dict[str, Any]]) -> list[str]:
    ok = [row for row in rows if "error" not in row]
    int8 = [row for row in ok if row["scheme"] == "int8"]
    larger = [row for row in int8 if row["sizes"]["float"]["weight_bytes"] >= 16 * 1024]
    played = [row for row in int8 if row["returns"] is not None]
    kept = [row for row in played if not row["returns"]["significant_drop"]]
    small = [row for row in played if row["returns"]["significant_drop"] and not row["returns"]["dropped"]]
    fp16 = [row for row in ok if row["scheme"] == "fp16" and row["agreement"]["kind"] == "discrete"]
    return [
        "int8 weight bytes, policies of 16 KiB or more: "
        + ", ".join(f"{r['agent']} {r['sizes']['ratio']['weight_bytes']:.3f}x" for r in larger),
        f"int8 returns within the paired 95% interval (or above): {len(kept)} of {len(played)} agents with an env"
        + "".join(f"; {r['agent']} {100 * r['returns']['relative_difference']:+.2f}% (under 1%)" for r in small),
        "fp16 identical discrete actions: "
        + ", ".join(f"{r['agent']} {100 * r['agreement']['identical']:.2f}%" for r in fp16),
        "no env here (compared on probes only): "
        + (", ".join(sorted({r["agent"] for r in ok if r["returns"] is None})) or "none"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=None, help="the RL Zoo sample folder")
    parser.add_argument("--episodes", type=int, default=10, help="paired episodes per agent and scheme")
    parser.add_argument("--calibrate", type=int, default=1000, help="observations to calibrate activations on")
    parser.add_argument("--quick", action="store_true", help="3 episodes, 200 calibration observations")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    episodes, calibrate = (3, 200) if args.quick else (args.episodes, args.calibrate)
    sample = zoo_sample(args.zoo)
    runs = sorted(path.parent for path in sample.glob("*/*/evaluations.npz"))
    if not runs:
        print(f"no RL Zoo run (ALGO/ENV_N/evaluations.npz) under {sample}", file=sys.stderr)
        return 2
    rows = []
    for run in runs:
        progress(f"{run.parent.name}/{run.name}")
        rows.extend(measure_run(run, episodes, calibrate))
    result = {"sample": str(sample), "episodes": episodes, "calibrate": calibrate, "rows": rows}
    result["summary"] = summarise(rows)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
