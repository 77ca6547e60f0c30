"""Distil RL Zoo teachers into 64-64 students: weight bytes, normalised return, wall time (issue 15).

For each run of the RL Zoo sample (``RLPORT_ZOO_SAMPLE``, default ``../shared/zoo-sample``) whose
env can be made here, the teacher is imported (``rlport.import_zoo``), distilled
(``rlport.distillation.distill``) and the table printed:

    run  teacher bytes  student bytes  ratio  teacher  student  random  normalised  seconds  verdict

``normalised`` is ``(student - random) / (teacher - random)`` on the same seeds (the random policy's
return over the same number of episodes). Targets: ratio <= 10%, normalised >= 95%, <= 600 s on 2
CPU cores. Runs that miss say why in the verdict.

    python benchmarks/distill.py                      # every run, 100,000 steps each
    python benchmarks/distill.py --steps 20000 sac/Pendulum-v1_1 dqn/LunarLander-v2_1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))

import rlport  # noqa: E402
from rlport.distillation import distill  # noqa: E402
from rlport.envs import make_env  # noqa: E402
from rlport.errors import RlportError  # noqa: E402

TARGET_RATIO, TARGET_NORMALISED, TARGET_SECONDS = 0.10, 0.95, 600.0


def sample() -> Path:
    value = os.environ.get("RLPORT_ZOO_SAMPLE", "").strip()
    return Path(value).expanduser().resolve() if value else (REPOSITORY / ".." / "shared" / "zoo-sample").resolve()


def random_return(bundle: rlport.Bundle, episodes: int, seed: int) -> float:
    """The mean return of uniformly random actions on the evaluation's seeds."""
    from rlport.distillation.api import EVAL_SEED_OFFSET

    env = make_env(bundle.env)
    env.action_space.seed(seed)
    total = []
    for i in range(episodes):
        env.reset(seed=seed + EVAL_SEED_OFFSET + i)
        done, ret = False, 0.0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            ret += float(reward)
            done = terminated or truncated
        total.append(ret)
    env.close()
    return float(np.mean(total))


def verdict(ratio: float, normalised: float, seconds: float) -> str:
    misses = []
    if ratio > TARGET_RATIO:
        misses.append(f"student is {100 * ratio:.0f}% of the teacher's bytes (the teacher is small already)")
    if not normalised >= TARGET_NORMALISED:
        misses.append(f"normalised return {100 * normalised:.0f}% < 95%")
    if seconds > TARGET_SECONDS:
        misses.append(f"{seconds:.0f} s > 600 s")
    return "ok" if not misses else "miss: " + "; ".join(misses)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", help="ALGO/ENV_1 folders of the sample (default: all)")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps of each distillation")
    parser.add_argument("--episodes", type=int, default=10, help="paired evaluation episodes")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    root = sample()
    runs = args.runs or sorted(str(p.parent.relative_to(root)) for p in root.glob("*/*/evaluations.npz"))
    rows = []
    for run in runs:
        began = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                teacher = rlport.import_zoo(root / run, probes=0, fingerprint=False)
                _, report = distill(teacher, hidden=(64, 64), steps=args.steps, episodes=args.episodes)
                rand = random_return(teacher, args.episodes, 0)
        except RlportError as exc:
            rows.append({"run": run, "error": f"{type(exc).__name__}: {str(exc)[:160]}"})
            print(f"{run}: skipped: {rows[-1]['error']}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - began
        t, s = report["teacher"], report["student"]
        ratio = s["bytes"] / t["bytes"]
        gap = t["mean_return"] - rand
        normalised = (s["mean_return"] - rand) / gap if gap else float("nan")
        rows.append({"run": run, "teacher_bytes": t["bytes"], "student_bytes": s["bytes"], "ratio": ratio,
                     "teacher": t["mean_return"], "student": s["mean_return"], "random": rand,
                     "normalised": normalised, "agreement": report["agreement"]["share"],
                     "difference": report["difference"], "seconds": seconds,
                     "verdict": verdict(ratio, normalised, seconds)})  # fmt: skip
        print(f"{run}: done in {seconds:.0f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = f"{'run':34} {'teacher B':>10} {'student B':>10} {'ratio':>6} {'teacher':>9} {'student':>9} {'random':>9} "
    print(head + f"{'norm.':>6} {'agree':>6} {'sec':>5}  verdict")
    for r in rows:
        if "error" in r:
            print(f"{r['run']:34} {r['error']}")
            continue
        print(f"{r['run']:34} {r['teacher_bytes']:>10,} {r['student_bytes']:>10,} {100 * r['ratio']:>5.1f}% "
              f"{r['teacher']:>9.1f} {r['student']:>9.1f} {r['random']:>9.1f} {100 * r['normalised']:>5.0f}% "
              f"{100 * (r['agreement'] or 0):>5.1f}% {r['seconds']:>5.0f}  {r['verdict']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
