"""Single-observation sampling latency: ``predict(obs, deterministic=False)`` on every backend vs SB3.

Contenders, timed call by call and interleaved in rounds (PPO CartPole and PPO Pendulum 64-64):

* ``rlport``        the numpy runtime, sampling with its seeded generator;
* ``rlport-onnx``   onnxruntime computes the distribution, numpy draws from it;
* ``rlport-torch``  the torch backend under ``torch.no_grad()``;
* ``sb3``           ``model.predict(obs, deterministic=False)`` on the live model.

Draws are random, so actions are not compared with SB3's; the onnx backend, seeded like the
numpy one, must draw the same actions (``same draws as numpy``). torch runs with
``torch.set_num_threads(1)``.

Usage:
    .venv/bin/python benchmarks/sampling.py [--quick] [--json]
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
    observations,
    progress,
    summarize,
    table,
    timer_overhead_ns,
)

CONTENDERS = ("rlport", "rlport-onnx", "rlport-torch", "sb3")
SAMPLING_POLICIES = ("ppo-cartpole", "ppo-pendulum")


def _no_grad(predict: Any) -> Any:
    import torch

    def call(obs: Any) -> Any:
        with torch.no_grad():
            return predict(obs, deterministic=False)

    return call


def _same_draws(path: Path, pool: list[np.ndarray]) -> bool:
    """Whether the onnx backend draws what the numpy backend draws, both seeded alike."""
    import rlport

    numpy_policy, onnx_policy = rlport.load(path, seed=7), rlport.load(path, backend="onnx", seed=7)
    for obs in pool:
        ours, theirs = onnx_policy.predict(obs)[0], numpy_policy.predict(obs)[0]
        if not np.allclose(np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64), atol=1e-5):
            return False
    return True


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    import rlport

    torch.set_num_threads(1)
    rounds, block, warmup = (12, 100, 200) if quick else (40, 300, 1000)
    budget_s = 3.0 if quick else 12.0
    out: dict[str, Any] = {
        "benchmark": "sampling",
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
        for name in SAMPLING_POLICIES:
            progress(f"sampling: building {name}")
            model = make_policy(name)
            path = Path(tmp) / f"{name}.rlp"
            rlport.from_sb3(model, env_id=POLICIES[name]["env"]).save(path)
            pool = list(observations(model, 256))
            contenders = {
                "rlport": functools.partial(rlport.load(path, seed=0).predict, deterministic=False),
                "rlport-onnx": functools.partial(
                    rlport.load(path, backend="onnx", seed=0).predict, deterministic=False
                ),
                "rlport-torch": _no_grad(rlport.load(path, backend="torch", seed=0).predict),
                "sb3": functools.partial(model.predict, deterministic=False),
            }
            samples = interleaved(contenders, pool, rounds, block, warmup, label=f"sampling {name}", budget_s=budget_s)
            stats = {k: summarize(v) for k, v in samples.items()}
            med = {k: s["median_us"] for k, s in stats.items()}
            out["policies"][name] = {
                "stats": stats,
                "ratios": {f"sb3_over_{k}": med["sb3"] / med[k] for k in CONTENDERS if k != "sb3"},
                "onnx_draws_like_numpy": _same_draws(path, pool[:64]),
            }
    out["machine"] = machine_info()
    return out


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "Single-observation sampling latency, predict(obs, deterministic=False) (torch.set_num_threads(1); "
        f"up to {cfg['rounds']} interleaved rounds x {cfg['calls_per_round']} calls per contender)",
        "",
    ]
    rows = []
    for name, res in result["policies"].items():
        for contender in CONTENDERS:
            s = res["stats"][contender]
            ratio = "1.0x" if contender == "sb3" else fmt_ratio(res["ratios"][f"sb3_over_{contender}"])
            rows.append([name, contender, f"{s['min_us']:.1f}", f"{s['median_us']:.1f}", f"{s['p90_us']:.1f}", ratio])
    lines.append(table(["policy", "contender", "min µs", "median µs", "p90 µs", "SB3 / it (median)"], rows))
    lines.append("")
    draws = {name: "yes" if res["onnx_draws_like_numpy"] else "NO" for name, res in result["policies"].items()}
    lines.append(
        "onnx backend draws what the numpy backend draws (same seed): "
        + ", ".join(f"{k} {v}" for k, v in draws.items())
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    emit(run(quick=args.quick), args.json, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
