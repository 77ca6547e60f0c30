"""Batched throughput on 4096 observations: rlport's numpy runtime vs SB3 vs raw torch.

Contenders, timed call by call (one call = one batch) and interleaved in rounds:

* ``rlport``  ``policy.predict(batch, deterministic=True)``;
* ``sb3``     ``model.predict(batch, deterministic=True)``;
* ``torch``   the raw actor forward under ``torch.no_grad()`` on ``torch.as_tensor(batch)``;
* ``numpy``   the hand-written numpy forward (reference only).

torch and numpy's BLAS keep their default thread counts (recorded in the output).

Usage:
    .venv/bin/python benchmarks/throughput.py [--quick] [--json] [--batch 4096]
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
    torch_forward,
)

TARGET_RLPORT_OVER_SB3 = 1.0
CONTENDERS = ("rlport", "rlport-onnx", "rlport-torch", "sb3", "torch", "numpy")
THROUGHPUT_POLICIES = ("ppo-cartpole", "ppo-pendulum")


def _same_actions(contenders: dict[str, Any], batch: np.ndarray, discrete: bool) -> dict[str, bool]:
    def action(fn):
        out = fn(batch)
        return np.asarray(out[0] if isinstance(out, tuple) else out)

    reference = action(contenders["rlport"])
    check = np.array_equal if discrete else functools.partial(np.allclose, atol=1e-5)
    return {name: bool(check(action(fn).reshape(reference.shape), reference)) for name, fn in contenders.items()}


def _no_grad(predict: Any) -> Any:
    import torch

    def call(obs: Any) -> Any:
        with torch.no_grad():
            return predict(obs, deterministic=True)

    return call


def run(quick: bool = False, batch: int = 4096) -> dict[str, Any]:
    import torch

    import rlport

    rounds, block, warmup = (10, 4, 3) if quick else (40, 6, 10)
    budget_s = 4.0 if quick else 20.0  # per policy; a loaded machine stops early with fewer rounds
    out: dict[str, Any] = {
        "benchmark": "throughput",
        "quick": quick,
        "config": {
            "batch": batch,
            "rounds": rounds,
            "calls_per_round": block,
            "warmup_calls": warmup,
            "budget_s_per_policy": budget_s,
            "torch_threads": torch.get_num_threads(),
        },
        "policies": {},
    }
    with tempfile.TemporaryDirectory(prefix="rlport-bench-") as tmp:
        for name in THROUGHPUT_POLICIES:
            progress(f"throughput: building {name}")
            model = make_policy(name)
            path = Path(tmp) / f"{name}.rlp"
            rlport.from_sb3(model, env_id=POLICIES[name]["env"]).save(path)
            policy = rlport.load(path)
            pool = [observations(model, batch, seed=s) for s in range(4)]
            contenders = {
                "rlport": functools.partial(policy.predict, deterministic=True),
                "rlport-onnx": functools.partial(rlport.load(path, backend="onnx").predict, deterministic=True),
                "rlport-torch": _no_grad(rlport.load(path, backend="torch").predict),
                "sb3": functools.partial(model.predict, deterministic=True),
                "torch": torch_forward(model, batched=True),
                "numpy": numpy_forward(model),
            }
            agree = _same_actions(contenders, pool[0], hasattr(model.action_space, "n"))
            samples = interleaved(
                contenders, pool, rounds, block, warmup, label=f"throughput {name}", budget_s=budget_s
            )
            stats = {k: summarize(v) for k, v in samples.items()}
            for s in stats.values():
                s["obs_per_s_median"] = batch / (s["median_us"] * 1e-6)
                s["obs_per_s_p90"] = batch / (s["p90_us"] * 1e-6)  # at the p90 (slow) call time
            rate = {k: s["obs_per_s_median"] for k, s in stats.items()}
            ratios = {
                "rlport_over_sb3": rate["rlport"] / rate["sb3"],
                "rlport_over_torch": rate["rlport"] / rate["torch"],
                "rlport_over_numpy": rate["rlport"] / rate["numpy"],
            }
            out["policies"][name] = {
                "stats": stats,
                "ratios": ratios,
                "actions_agree_with_rlport": agree,
                "target": {"rlport_over_sb3": TARGET_RLPORT_OVER_SB3},
                "met": ratios["rlport_over_sb3"] >= TARGET_RLPORT_OVER_SB3,
            }
    out["machine"] = machine_info()
    return out


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"Batched throughput, {cfg['batch']} observations per call (default threads: torch "
        f"{cfg['torch_threads']}; up to {cfg['rounds']} interleaved rounds x {cfg['calls_per_round']} calls)",
        "",
    ]
    rows = []
    for name, res in result["policies"].items():
        for contender in CONTENDERS:
            s = res["stats"][contender]
            label = {"numpy": "plain numpy (ref)", "torch": "raw torch forward"}.get(contender, contender)
            rows.append(
                [
                    name,
                    label,
                    f"{s['median_us'] / 1e3:.2f}",
                    f"{s['p90_us'] / 1e3:.2f}",
                    f"{s['obs_per_s_median'] / 1e3:,.0f}",
                    f"{s['obs_per_s_p90'] / 1e3:,.0f}",
                    "yes" if res["actions_agree_with_rlport"][contender] else "NO",
                ]
            )
    headers = ["policy", "contender", "median ms", "p90 ms", "k obs/s (median)", "k obs/s (p90)", "same actions"]
    lines.append(table(headers, rows))
    lines.append("")
    rows = [
        [
            name,
            fmt_ratio(res["ratios"]["rlport_over_sb3"]),
            "yes" if res["met"] else "NO",
            fmt_ratio(res["ratios"]["rlport_over_torch"]),
            fmt_ratio(res["ratios"]["rlport_over_numpy"]),
        ]
        for name, res in result["policies"].items()
    ]
    headers = ["policy", "rlport / SB3 (obs/s)", f">= {TARGET_RLPORT_OVER_SB3:g}x?", "rlport / torch", "rlport / numpy"]
    lines.append(table(headers, rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--batch", type=int, default=4096, help="observations per call (default 4096)")
    args = parser.parse_args(argv)
    emit(run(quick=args.quick, batch=args.batch), args.json, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
