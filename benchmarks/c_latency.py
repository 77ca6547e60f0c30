"""Single-observation latency of the C backend from Python, side by side with numpy, onnx and SB3; and the pure C call.

Contenders, timed call by call and interleaved in rounds (PPO CartPole 64-64, PPO Pendulum 64-64):

* ``c``      ``rlport.load(path, backend="c").predict(obs, deterministic=True)`` (ctypes into the export);
* ``numpy``  the numpy backend's ``predict``;
* ``onnx``   the onnx backend's ``predict`` (onnxruntime);
* ``sb3``    SB3's ``model.predict(obs, deterministic=True)``.

Then a C timing harness calls ``rlport_policy_act`` in a loop on the export itself, compiled with
``-std=c99 -O3`` (and ``-O3 -march=native``): the floor a C caller sees, without Python.

Usage:
    .venv/bin/python benchmarks/c_latency.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

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
)

TARGET_C_US = 1.5
TARGET_PURE_C_US = 0.5
TARGET_SB3_OVER_C = 100.0
CONTENDERS = ("c", "numpy", "onnx", "sb3")
LATENCY_POLICIES = ("ppo-cartpole", "ppo-pendulum")
FLAGS = {"-O3": ["-O3"], "-O3 -march=native": ["-O3", "-march=native"]}

HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>
#include "rlport_policy.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    /* argv[1]: calls per round; the best of 7 rounds, in nanoseconds per call */
    const long calls = argc > 1 ? atol(argv[1]) : 100000;
    rlport_observation obs;
    rlport_action_t action[RLPORT_ACTION_SIZE];
    volatile double sink = 0;
    double best = 1e30;
    for (long k = 0; k < RLPORT_OBS0_SIZE; ++k) obs.obs0[k] = 0.05f * (float)k - 0.1f;
    for (int round = 0; round < 7; ++round) {
        const double start = now();
        for (long i = 0; i < calls; ++i) {
            obs.obs0[0] = 0.001f * (float)(i & 63);
            if (rlport_policy_act(&obs, 0, 0.0f, 0, 0, action) != RLPORT_OK) return 1;
            sink += (double)action[0];
        }
        const double per_call = (now() - start) / (double)calls;
        if (per_call < best) best = per_call;
    }
    printf("%.1f\n", best * 1e9);
    return 0;
}
""".replace("#include <stdio.h>", "#include <stdio.h>\n#include <stdlib.h>")


def pure_c_ns(folder: Path, flags: list[str], calls: int) -> float | None:
    """The export's ``rlport_policy_act`` per call, in ns, from a C loop (None without a C compiler)."""
    compiler = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if compiler is None:
        return None
    (folder / "harness.c").write_text(HARNESS)
    exe = folder / "harness"
    subprocess.run([compiler, "-std=c99", *flags, "-DRLPORT_NO_BATCH", "harness.c", "rlport_policy.c", "-o", str(exe),
                    "-lm"], cwd=folder, check=True, capture_output=True)  # fmt: skip
    return float(subprocess.run([str(exe), str(calls)], check=True, capture_output=True, text=True).stdout)


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    import rlport
    from rlport.backends.c.export import export_c

    torch.set_num_threads(1)
    rounds, block, warmup = (12, 100, 200) if quick else (60, 300, 1000)
    budget_s = 3.0 if quick else 15.0
    calls = 20_000 if quick else 200_000
    config = {"rounds": rounds, "calls_per_round": block, "c_calls_per_round": calls}
    out: dict[str, Any] = {"benchmark": "c_latency", "quick": quick, "policies": {}, "config": config}
    with tempfile.TemporaryDirectory(prefix="rlport-bench-c-") as tmp:
        os.environ["RLPORT_C_CACHE"] = str(Path(tmp) / "cache")  # the compiled libraries go with the folder
        for name in LATENCY_POLICIES:
            progress(f"c_latency: building {name}")
            model = make_policy(name)
            path = Path(tmp) / f"{name}.rlp"
            rlport.from_sb3(model, env_id=POLICIES[name]["env"]).save(path)
            pool = list(observations(model, 256))
            contenders = {
                "c": functools.partial(rlport.load(path, backend="c").predict, deterministic=True),
                "numpy": functools.partial(rlport.load(path).predict, deterministic=True),
                "onnx": functools.partial(rlport.load(path, backend="onnx").predict, deterministic=True),
                "sb3": functools.partial(model.predict, deterministic=True),
            }
            samples = interleaved(contenders, pool, rounds, block, warmup, label=f"c_latency {name}", budget_s=budget_s)
            stats = {k: summarize(v) for k, v in samples.items()}
            folder = export_c(rlport.Bundle.load(path), Path(tmp) / f"{name}_c")
            pure = {label: pure_c_ns(folder, flags, calls) for label, flags in FLAGS.items()}
            median = {k: s["median_us"] for k, s in stats.items()}
            out["policies"][name] = {
                "stats": stats,
                "pure_c_ns": pure,
                "ratios": {"sb3_over_c": median["sb3"] / median["c"], "numpy_over_c": median["numpy"] / median["c"]},
                "met": {
                    "c_from_python_us": median["c"] <= TARGET_C_US,
                    "pure_c_us": pure["-O3"] is not None and pure["-O3"] / 1e3 <= TARGET_PURE_C_US,
                    "sb3_over_c": median["sb3"] / median["c"] >= TARGET_SB3_OVER_C,
                },
            }
    out["machine"] = machine_info()
    return out


def render(result: dict[str, Any]) -> str:
    rows = []
    for name, res in result["policies"].items():
        for contender in CONTENDERS:
            s = res["stats"][contender]
            rows.append([name, contender, f"{s['min_us']:.2f}", f"{s['median_us']:.2f}", f"{s['p90_us']:.2f}"])
        for label, ns in res["pure_c_ns"].items():
            rows.append([name, f"pure C {label}", "-" if ns is None else f"{ns / 1e3:.3f}", "", ""])
    lines = ["Single-observation latency, deterministic (interleaved rounds; pure C: best of 7 loops)", "",
             table(["policy", "contender", "min µs", "median µs", "p90 µs"], rows), ""]  # fmt: skip
    rows = [[name, fmt_ratio(r["ratios"]["sb3_over_c"]), fmt_ratio(r["ratios"]["numpy_over_c"]),
             "yes" if r["met"]["c_from_python_us"] else "NO", "yes" if r["met"]["pure_c_us"] else "NO"]
            for name, r in result["policies"].items()]  # fmt: skip
    headers = ["policy", "SB3 / c", "numpy / c", f"c <= {TARGET_C_US} µs?", f"pure C <= {TARGET_PURE_C_US} µs?"]
    lines.append(table(headers, rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    emit(run(quick=args.quick), args.json, render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
