"""Single-observation predict latency: rlport's numpy runtime vs SB3 vs raw torch vs plain numpy.

Contenders, timed call by call and interleaved in rounds:

* ``rlport``  ``policy.predict(obs, deterministic=True)`` on the loaded bundle;
* ``sb3``     ``model.predict(obs, deterministic=True)`` on the live model;
* ``torch``   the raw actor forward under ``torch.no_grad()`` (features -> policy_net ->
  action_net -> argmax / clamp), a tensor built from the obs each call;
* ``numpy``   a hand-written numpy forward (3 ``ndarray.dot``, tanh, argmax / clip) with
  pre-transposed weights on the 1-D observation: the floor any numpy runtime can hope for.

torch runs with ``torch.set_num_threads(1)``: one observation is far too small to share.

Usage:
    .venv/bin/python benchmarks/latency.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    POLICIES,
    add_common_args,
    emit,
    fmt_ratio,
    interleaved,
    machine_info,
    make_policy,
    numpy_forward,
    observations,
    progress,
    summarize,
    table,
    timer_overhead_ns,
    torch_forward,
)

TARGET_SB3_OVER_RLPORT = 20.0
CONTENDERS = ("rlport", "rlport-onnx", "rlport-torch", "sb3", "torch", "numpy")
LATENCY_POLICIES = ("ppo-cartpole", "ppo-pendulum")


def _agreement(contenders: dict[str, Any], pool: list[np.ndarray], discrete: bool) -> dict[str, bool]:
    """Whether every contender gives rlport's action on every pooled observation."""

    def action(fn, obs):
        out = fn(obs)
        return np.asarray(out[0] if isinstance(out, tuple) else out)  # predict gives (action, state)

    reference = [action(contenders["rlport"], obs) for obs in pool]
    agree = {}
    for name, fn in contenders.items():
        actions = [action(fn, obs) for obs in pool]
        if discrete:
            agree[name] = all(int(a) == int(r) for a, r in zip(actions, reference, strict=True))
        else:
            agree[name] = all(np.allclose(a, r, atol=1e-5) for a, r in zip(actions, reference, strict=True))
    return agree


def _no_grad(predict: Any) -> Any:
    import torch

    def call(obs: Any) -> Any:
        with torch.no_grad():
            return predict(obs, deterministic=True)

    return call


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    import rlport

    torch.set_num_threads(1)
    rounds, block, warmup = (12, 100, 200) if quick else (60, 300, 1000)
    budget_s = 3.0 if quick else 15.0  # per policy; a loaded machine stops early with fewer rounds
    out: dict[str, Any] = {
        "benchmark": "latency",
        "quick": quick,
        "config": {
            "rounds": rounds,
            "calls_per_round": block,
            "warmup_calls": warmup,
            "budget_s_per_policy": budget_s,
            "torch_threads": 1,
            "timer_overhead_ns": timer_overhead_ns(),
        },
        "policies": {},
    }
    with tempfile.TemporaryDirectory(prefix="rlport-bench-") as tmp:
        for name in LATENCY_POLICIES:
            progress(f"latency: building {name}")
            model = make_policy(name)
            path = Path(tmp) / f"{name}.rlp"
            rlport.from_sb3(model, env_id=POLICIES[name]["env"]).save(path)
            policy = rlport.load(path)
            pool = list(observations(model, 256))
            contenders = {
                "rlport": functools.partial(policy.predict, deterministic=True),
                "rlport-onnx": functools.partial(rlport.load(path, backend="onnx").predict, deterministic=True),
                "rlport-torch": _no_grad(rlport.load(path, backend="torch").predict),
                "sb3": functools.partial(model.predict, deterministic=True),
                "torch": torch_forward(model, batched=False),
                "numpy": numpy_forward(model),
            }
            discrete = hasattr(model.action_space, "n")
            agree = _agreement(contenders, pool, discrete)
            samples = interleaved(contenders, pool, rounds, block, warmup, label=f"latency {name}", budget_s=budget_s)
            stats = {k: summarize(v) for k, v in samples.items()}
            med = {k: s["median_us"] for k, s in stats.items()}
            p90 = {k: s["p90_us"] for k, s in stats.items()}
            ratios = {
                "sb3_over_rlport": med["sb3"] / med["rlport"],
                "sb3_over_rlport_p90": p90["sb3"] / p90["rlport"],
                "torch_over_rlport": med["torch"] / med["rlport"],
                "rlport_over_numpy": med["rlport"] / med["numpy"],
                "rlport_over_numpy_p90": p90["rlport"] / p90["numpy"],
            }
            out["policies"][name] = {
                "stats": stats,
                "ratios": ratios,
                "actions_agree_with_rlport": agree,
                "target": {"sb3_over_rlport": TARGET_SB3_OVER_RLPORT},
                "met": ratios["sb3_over_rlport"] >= TARGET_SB3_OVER_RLPORT,
            }
    out["machine"] = machine_info()
    return out


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "Single-observation predict latency (torch.set_num_threads(1); "
        f"up to {cfg['rounds']} interleaved rounds x {cfg['calls_per_round']} calls per contender, "
        f"timer overhead ~{cfg['timer_overhead_ns']:.0f} ns/call included)",
        "",
    ]
    rows = []
    for name, res in result["policies"].items():
        for contender in CONTENDERS:
            s = res["stats"][contender]
            agree = "yes" if res["actions_agree_with_rlport"][contender] else "NO"
            label = {"numpy": "plain numpy (floor)", "torch": "raw torch forward"}.get(contender, contender)
            rows.append([name, label, f"{s['min_us']:.1f}", f"{s['median_us']:.1f}", f"{s['p90_us']:.1f}", agree])
    lines.append(table(["policy", "contender", "min µs", "median µs", "p90 µs", "same actions"], rows))
    lines.append("")
    rows = []
    for name, res in result["policies"].items():
        r = res["ratios"]
        rows.append(
            [
                name,
                fmt_ratio(r["sb3_over_rlport"]),
                fmt_ratio(r["sb3_over_rlport_p90"]),
                "yes" if res["met"] else "NO",
                fmt_ratio(r["torch_over_rlport"]),
                fmt_ratio(r["rlport_over_numpy"]),
            ]
        )
    headers = [
        "policy",
        "SB3 / rlport (median)",
        "(p90)",
        f">= {TARGET_SB3_OVER_RLPORT:g}x?",
        "torch / rlport",
        "rlport / plain numpy",
    ]
    lines.append(table(headers, rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    emit(run(quick=args.quick), args.json, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
