"""Cold start: a fresh Python process from ``import`` to the first action, rlport vs SB3.

Three child commands, each run with this interpreter (``sys.executable``) in a fresh process,
interleaved (floor, rlport, SB3, floor, rlport, SB3, ...) after one untimed warm-up run each:

* ``floor``   ``import numpy`` and build the observation: the least any numpy runtime pays;
* ``rlport``  ``import rlport; p = rlport.load(bundle); p.predict(obs, deterministic=True)``;
* ``sb3``     ``from stable_baselines3 import PPO; m = PPO.load(zip); m.predict(obs, deterministic=True)``.

Wall time is measured by the parent around ``subprocess.run``; each child also reports its own
time from its first line and whether ``torch`` / ``stable_baselines3`` / ``gymnasium`` ended
up in ``sys.modules`` (the rlport child must load neither torch nor SB3).

Usage:
    .venv/bin/python benchmarks/cold_start.py [--quick] [--json] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import add_common_args, emit, fmt_ratio, machine_info, make_policy, progress, table

TARGET_SB3_OVER_RLPORT = 5.0
HEAVY_MODULES = ("torch", "stable_baselines3", "gymnasium")

_PRELUDE = """\
import time
_t0 = time.perf_counter()
import sys
import numpy as np
obs = np.array({obs}, dtype=np.float32)
"""
_REPORT = """
import json
print(json.dumps({{"in_process_s": time.perf_counter() - _t0, "action": np.asarray(action).tolist(),
                  "modules": {{name: name in sys.modules for name in {heavy!r}}}}}))
"""
CHILDREN = {
    "floor": "action = obs.argmax()\n",
    "rlport": "import rlport\np = rlport.load({path!r})\naction, _ = p.predict(obs, deterministic=True)\n",
    "sb3": "from stable_baselines3 import PPO\nm = PPO.load({path!r}, device='cpu')\n"
    "action, _ = m.predict(obs, deterministic=True)\n",
}


def child_source(name: str, path: str, obs: list[float]) -> str:
    """The ``python -c`` program of one contender."""
    body = CHILDREN[name].format(path=path)
    return _PRELUDE.format(obs=obs) + body + _REPORT.format(heavy=HEAVY_MODULES)


def _run_child(source: str, cwd: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter_ns()
    proc = subprocess.run([sys.executable, "-c", source], cwd=cwd, capture_output=True, text=True)
    wall = (time.perf_counter_ns() - t0) / 1e9
    if proc.returncode != 0:
        raise RuntimeError(f"child failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False, repeats: int | None = None) -> dict[str, Any]:
    import rlport

    repeats = repeats or (2 if quick else 6)
    budget_s = 12.0 if quick else 45.0  # after 2 rounds, a loaded machine stops early
    with tempfile.TemporaryDirectory(prefix="rlport-bench-") as tmp:
        progress("cold start: building ppo-cartpole")
        model = make_policy("ppo-cartpole")
        bundle_path, zip_path = Path(tmp) / "ppo-cartpole.rlp", Path(tmp) / "ppo-cartpole.zip"
        rlport.from_sb3(model, env_id="CartPole-v1").save(bundle_path)
        model.save(zip_path)
        obs = [0.01, -0.02, 0.03, 0.04]
        expected = int(model.predict(np.array(obs, dtype=np.float32), deterministic=True)[0])
        sources = {
            "floor": child_source("floor", "", obs),
            "rlport": child_source("rlport", str(bundle_path), obs),
            "sb3": child_source("sb3", str(zip_path), obs),
        }
        walls: dict[str, list[float]] = {name: [] for name in sources}
        inner: dict[str, list[float]] = {name: [] for name in sources}
        reports: dict[str, dict[str, Any]] = {}
        for name, source in sources.items():  # warm-up: file caches, first-run effects
            reports[name] = _run_child(source, tmp)[1]
        start = time.perf_counter()
        for r in range(repeats):
            if r >= 2 and time.perf_counter() - start > budget_s:
                progress(f"cold start: time budget of {budget_s:g} s spent after {r} of {repeats} rounds")
                break
            progress(f"cold start: round {r + 1}/{repeats}")
            for name, source in sources.items():
                wall, report = _run_child(source, tmp)
                walls[name].append(wall)
                inner[name].append(report["in_process_s"])
                reports[name] = report
    stats = {
        name: {
            "n": len(walls[name]),
            "min_s": float(np.min(walls[name])),
            "median_s": float(np.median(walls[name])),
            "p90_s": float(np.percentile(walls[name], 90)),
            "in_process_median_s": float(np.median(inner[name])),
            "modules": reports[name]["modules"],
            "action": reports[name]["action"],
        }
        for name in sources
    }
    med = {name: s["median_s"] for name, s in stats.items()}
    ratio = med["sb3"] / med["rlport"]
    clean = not (reports["rlport"]["modules"]["torch"] or reports["rlport"]["modules"]["stable_baselines3"])
    return {
        "benchmark": "cold_start",
        "quick": quick,
        "config": {
            "repeats": repeats,
            "budget_s": budget_s,
            "python": sys.executable,
            "dont_write_bytecode": bool(sys.flags.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE")),
            "commands": CHILDREN,
        },
        "stats": stats,
        "ratios": {
            "sb3_over_rlport": ratio,
            "rlport_over_floor": med["rlport"] / med["floor"],
            "rlport_minus_floor_s": med["rlport"] - med["floor"],
        },
        "same_action": all(stats[n]["action"] == expected for n in ("rlport", "sb3")),
        "rlport_child_imports_torch_or_sb3": not clean,
        "target": {"sb3_over_rlport": TARGET_SB3_OVER_RLPORT, "rlport_child_imports_torch_or_sb3": False},
        "met": ratio >= TARGET_SB3_OVER_RLPORT and clean,
        "machine": machine_info(),
    }


def render(result: dict[str, Any]) -> str:
    labels = {
        "floor": "python + import numpy (floor)",
        "rlport": "rlport load + predict",
        "sb3": "SB3 PPO.load + predict",
    }
    rows = []
    for name, s in result["stats"].items():
        mods = ", ".join(m for m, present in s["modules"].items() if present) or "-"
        rows.append(
            [
                labels[name],
                f"{s['min_s'] * 1e3:.0f}",
                f"{s['median_s'] * 1e3:.0f}",
                f"{s['p90_s'] * 1e3:.0f}",
                f"{s['in_process_median_s'] * 1e3:.0f}",
                mods,
            ]
        )
    r = result["ratios"]
    leaked = result["rlport_child_imports_torch_or_sb3"]
    ratio_met = r["sb3_over_rlport"] >= TARGET_SB3_OVER_RLPORT
    return "\n".join(
        [
            f"Cold start, fresh process to first action ({result['stats']['rlport']['n']} interleaved runs each, "
            "wall time measured by the parent)",
            "",
            table(["child", "min ms", "median ms", "p90 ms", "in-process ms", "heavy modules loaded"], rows),
            "",
            f"SB3 / rlport (median wall): {fmt_ratio(r['sb3_over_rlport'])} "
            f"(target >= {TARGET_SB3_OVER_RLPORT:g}x: {'met' if ratio_met else 'NOT met'})",
            f"rlport / floor: {fmt_ratio(r['rlport_over_floor'])} (+{r['rlport_minus_floor_s'] * 1e3:.0f} ms over "
            "python + numpy)",
            f"rlport child imported torch or stable_baselines3: {'YES (must not)' if leaked else 'no'}",
            f"same action in every child: {'yes' if result['same_action'] else 'NO'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per child (default 6, --quick 2)")
    args = parser.parse_args(argv)
    emit(run(quick=args.quick, repeats=args.repeats), args.json, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
