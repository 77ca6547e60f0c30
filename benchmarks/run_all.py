"""Run every rlport benchmark and print one markdown table for the README.

Each benchmark runs in its own process (``<script> --json [--quick]``), so that one's thread
settings (``torch.set_num_threads(1)`` for latency) do not leak into another's.

Usage:
    .venv/bin/python benchmarks/run_all.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import add_common_args, fmt_ratio, progress

HERE = Path(__file__).resolve().parent
SCRIPTS = ("latency", "throughput", "cold_start", "size")
TITLES = {
    "ppo-cartpole": "PPO CartPole 64-64",
    "ppo-pendulum": "PPO Pendulum 64-64",
    "sac-pendulum": "SAC Pendulum 256-256",
    "dqn-cartpole": "DQN CartPole 64-64",
}


def run_script(name: str, quick: bool) -> dict[str, Any]:
    command = [sys.executable, str(HERE / f"{name}.py"), "--json", *(["--quick"] if quick else [])]
    progress(f"run_all: {' '.join(command[1:])}")
    t0 = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)  # progress stays on stderr
    if proc.returncode != 0:
        raise SystemExit(f"{name}.py failed with exit code {proc.returncode}")
    result = json.loads(proc.stdout)
    result["elapsed_s"] = time.perf_counter() - t0
    return result


def _met(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "**no**")


def rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """(benchmark, rlport, SB3, ratio, target, met?) rows."""
    out = []
    lat = results["latency"]
    for name, res in lat["policies"].items():
        s, r = res["stats"], res["ratios"]
        out.append(
            [
                f"latency, 1 obs, {TITLES[name]} (median, torch 1 thread)",
                f"{s['rlport']['median_us']:.1f} µs",
                f"{s['sb3']['median_us']:.1f} µs",
                f"{fmt_ratio(r['sb3_over_rlport'])} faster",
                f">= {res['target']['sb3_over_rlport']:g}x",
                _met(res["met"]),
            ]
        )
    tp = results["throughput"]
    for name, res in tp["policies"].items():
        s = res["stats"]
        out.append(
            [
                f"throughput, batch {tp['config']['batch']}, {TITLES[name]} (median)",
                f"{s['rlport']['obs_per_s_median'] / 1e3:,.0f}k obs/s",
                f"{s['sb3']['obs_per_s_median'] / 1e3:,.0f}k obs/s",
                f"{fmt_ratio(res['ratios']['rlport_over_sb3'])} faster",
                f">= {res['target']['rlport_over_sb3']:g}x",
                _met(res["met"]),
            ]
        )
    cs = results["cold_start"]
    ratio = cs["ratios"]["sb3_over_rlport"]
    target = cs["target"]["sb3_over_rlport"]
    out.append(
        [
            "cold start, new process to first action (median wall)",
            f"{cs['stats']['rlport']['median_s']:.2f} s",
            f"{cs['stats']['sb3']['median_s']:.2f} s",
            f"{fmt_ratio(ratio)} faster",
            f">= {target:g}x",
            _met(ratio >= target),
        ]
    )
    leaked = cs["rlport_child_imports_torch_or_sb3"]
    sb3_mods = cs["stats"]["sb3"]["modules"]
    out.append(
        [
            "cold start: torch / stable_baselines3 imported",
            "yes" if leaked else "no",
            "yes" if sb3_mods["torch"] and sb3_mods["stable_baselines3"] else "no",
            "-",
            "rlport: no",
            _met(not leaked),
        ]
    )
    for name, res in results["size"]["policies"].items():
        b, r = res["bytes"], res["ratios"]
        out.append(
            [
                f"size, {TITLES[name]} (with critic)",
                f"{b['rlport'] / 1024:.1f} KiB ({b['rlport_critic'] / 1024:.1f})",
                f"{b['sb3_zip'] / 1024:.1f} KiB",
                f"{fmt_ratio(r['zip_over_rlport'])} smaller ({fmt_ratio(r['zip_over_rlport_critic'])})",
                "-",
                "-",
            ]
        )
    return out


def notes(results: dict[str, dict[str, Any]]) -> list[str]:
    lat, tp, cs = results["latency"], results["throughput"], results["cold_start"]
    cart = lat["policies"]["ppo-cartpole"]
    m = lat["machine"]
    return [
        f"- Latency floor (hand-written numpy forward, PPO CartPole): {cart['stats']['numpy']['median_us']:.1f} µs; "
        f"rlport / floor = {fmt_ratio(cart['ratios']['rlport_over_numpy'])}; raw torch forward "
        f"{cart['stats']['torch']['median_us']:.1f} µs.",
        f"- Throughput: torch default threads ({tp['config']['torch_threads']}); raw torch forward "
        f"{tp['policies']['ppo-cartpole']['stats']['torch']['obs_per_s_median'] / 1e3:,.0f}k obs/s (PPO CartPole).",
        f"- Cold start floor (python + import numpy): {cs['stats']['floor']['median_s']:.2f} s.",
        "- Size: models saved after a few training steps (so the optimizer state is populated); rlport = actor "
        "only + 256 parity probes; (with critic) = `include_critic=True`; SB3 zip = `model.save` "
        "(policy, optimizer state, pickled data).",
        f"- Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, numpy {m['numpy']}, "
        f"torch {m.get('torch')}, SB3 {m.get('stable_baselines3')}; 1-min load average "
        f"{m['load_average'][0] if m.get('load_average') else '?'} (end of the latency run). "
        f"Mode: {'--quick' if lat['quick'] else 'full'}.",
    ]


def markdown(results: dict[str, dict[str, Any]]) -> str:
    headers = ["benchmark", "rlport", "SB3", "ratio", "target", "met?"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join([*lines, "", *notes(results)])


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    results = {name: run_script(name, args.quick) for name in SCRIPTS}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
