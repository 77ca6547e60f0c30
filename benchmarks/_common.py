"""Shared pieces of the rlport benchmarks: the policies, an interleaved timer, statistics, tables.

Every benchmark compares its contenders side by side in one run and reports ratios, never a
comparison with a number measured elsewhere: machines are noisy, ratios taken in one process
at one moment are not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "POLICIES",
    "add_common_args",
    "emit",
    "fmt_ratio",
    "interleaved",
    "machine_info",
    "make_policy",
    "numpy_forward",
    "observations",
    "progress",
    "summarize",
    "table",
    "timer_overhead_ns",
    "torch_forward",
]


# ---- command line and output --------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, ~15 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser


def progress(message: str) -> None:
    """A line of progress on stderr, so that stdout stays the table or the JSON object."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    print(json.dumps(result, indent=2) if as_json else render(result))


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": f"{platform.system()}-{platform.machine()}",
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    for name in ("stable_baselines3", "rlport"):
        if name in sys.modules:
            info[name] = getattr(sys.modules[name], "__version__", None)
    return info


def _numeric(cell: str) -> bool:
    try:
        float(cell.rstrip("x%").replace(",", "").lstrip("+<>= "))
    except ValueError:
        return cell in ("-", "")
    return True


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table: numeric columns right-aligned, the others left-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    right = [all(_numeric(row[i]) for row in cells[1:]) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def fmt_ratio(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


# ---- timing -------------------------------------------------------------------------------


def summarize(samples_ns: Sequence[int]) -> dict[str, float]:
    """min / median / p90 / mean of per-call times, in microseconds."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {
        "n": int(us.size),
        "min_us": float(us.min()),
        "median_us": float(np.median(us)),
        "p90_us": float(np.percentile(us, 90)),
        "mean_us": float(us.mean()),
    }


def timer_overhead_ns(samples: int = 20_000) -> float:
    """The median cost of an empty timed region (two ``perf_counter_ns`` calls)."""
    clock = time.perf_counter_ns
    out = []
    for _ in range(samples):
        t0 = clock()
        t1 = clock()
        out.append(t1 - t0)
    return float(np.median(out))


def interleaved(
    contenders: dict[str, Callable[[Any], Any]],
    inputs: Sequence[Any],
    rounds: int,
    block: int,
    warmup: int,
    settle: int = 1,
    label: str = "",
    budget_s: float | None = None,
    min_rounds: int = 5,
) -> dict[str, list[int]]:
    """Time every contender call by call, interleaved in rounds to spread the machine's noise.

    Each round runs a block of ``block`` calls of every contender in turn (A, B, C, A, B, C, ...);
    the starting contender rotates from round to round so that none always follows the same
    neighbour. Each block starts with ``settle`` untimed calls, which absorb the hand-over from
    the previous contender (thread pools of torch / the BLAS spinning down, cold caches).
    Inputs cycle through ``inputs``; choosing the input is outside the timed region. The garbage
    collector is off while timing (as ``timeit`` does). With ``budget_s``, rounds stop once the
    budget is spent and at least ``min_rounds`` are done (a loaded machine ends early, with fewer
    samples, rather than late).

    Returns:
        Per contender, the list of per-call times in nanoseconds.
    """
    names = list(contenders)
    clock = time.perf_counter_ns
    n_inputs = len(inputs)
    for name in names:
        fn = contenders[name]
        for j in range(warmup):
            fn(inputs[j % n_inputs])
    samples: dict[str, list[int]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    try:
        for r in range(rounds):
            if budget_s is not None and r >= min_rounds and time.perf_counter() - start > budget_s:
                progress(f"{label or 'timing'}: time budget of {budget_s:g} s spent after {r} of {rounds} rounds")
                break
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                fn, out = contenders[name], samples[name]
                for j in range(settle):
                    fn(inputs[j % n_inputs])
                for j in range(block):
                    x = inputs[(r * block + j) % n_inputs]
                    t0 = clock()
                    fn(x)
                    out.append(clock() - t0)
            if label and (r + 1) % max(1, rounds // 4) == 0:
                progress(f"{label}: round {r + 1}/{rounds}")
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


# ---- the policies -------------------------------------------------------------------------

POLICIES: dict[str, dict[str, Any]] = {
    # name: algorithm, env id, policy kwargs (None = SB3's default architecture)
    "ppo-cartpole": {"algo": "PPO", "env": "CartPole-v1", "net_arch": [64, 64]},
    "ppo-pendulum": {"algo": "PPO", "env": "Pendulum-v1", "net_arch": [64, 64]},
    "sac-pendulum": {"algo": "SAC", "env": "Pendulum-v1", "net_arch": [256, 256]},
    "dqn-cartpole": {"algo": "DQN", "env": "CartPole-v1", "net_arch": [64, 64]},
}


# Hyper-parameters for `make_policy(..., updates=True)`: a handful of environment steps and at
# least one gradient update, so that the optimizer state (Adam's moments) exists, as in any
# model saved after training.
_FEW_UPDATES: dict[str, tuple[dict[str, Any], int]] = {
    "PPO": ({"n_steps": 64, "batch_size": 64, "n_epochs": 1}, 64),
    "SAC": ({"learning_starts": 0, "train_freq": 1, "batch_size": 8}, 8),
    "DQN": ({"learning_starts": 0, "train_freq": 1, "batch_size": 8}, 8),
}


def make_policy(name: str, seed: int = 0, perturb: float = 0.1, updates: bool = False):
    """A SB3 model on CPU with every parameter nudged by seeded noise.

    The noise makes the greedy action depend on the observation (an untrained PPO has a tiny
    ``action_net`` and would pick nearly the same action everywhere); it does not change the
    work a forward pass does. With ``updates``, the model first learns for a few steps, so
    that its optimizer state is populated (this matters for file sizes, not for speed).
    """
    import stable_baselines3 as sb3
    import torch

    spec = POLICIES[name]
    algo = getattr(sb3, spec["algo"])
    kwargs: dict[str, Any] = {"policy_kwargs": {"net_arch": list(spec["net_arch"])}, "seed": seed, "device": "cpu"}
    if spec["algo"] in ("SAC", "DQN"):
        kwargs["buffer_size"] = 1_000  # the replay buffer is never saved; keep memory small
    learn_kwargs, steps = _FEW_UPDATES[spec["algo"]] if updates else ({}, 0)
    model = algo("MlpPolicy", spec["env"], **kwargs, **learn_kwargs)
    if steps:
        model.learn(total_timesteps=steps)
    if perturb:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in model.policy.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * perturb)
    model.policy.set_training_mode(False)
    return model


def observations(model, count: int, seed: int = 0) -> np.ndarray:
    """``count`` observations sampled from the model's observation space, as float32."""
    space = model.observation_space
    space.seed(seed)
    return np.stack([space.sample() for _ in range(count)]).astype(np.float32)


# ---- reference forwards -------------------------------------------------------------------


def _actor_parts(model):
    """(features extractor, actor MLP, output layer, is_discrete) of a PPO ActorCriticPolicy."""
    policy = model.policy
    if not hasattr(policy, "mlp_extractor"):
        raise ValueError(f"the reference forwards know PPO's ActorCriticPolicy, found {type(policy).__name__}")
    discrete = hasattr(model.action_space, "n")
    return policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net, discrete


def torch_forward(model, batched: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The raw torch forward of a PPO actor under ``no_grad``, the tensor built from the obs each call.

    features -> policy_net -> action_net -> argmax (discrete) or clamp to the bounds (Box), as
    SB3's deterministic ``predict`` does, without its checks and conversions.
    """
    import torch

    features, body, head, discrete = _actor_parts(model)
    if discrete:

        def finish(out):
            return out.argmax(dim=-1)
    else:
        low = torch.as_tensor(model.action_space.low)
        high = torch.as_tensor(model.action_space.high)

        def finish(out):
            return torch.clamp(out, low, high)

    if batched:

        def forward(obs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return finish(head(body(features(torch.as_tensor(obs))))).numpy()
    else:

        def forward(obs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return finish(head(body(features(torch.as_tensor(obs).unsqueeze(0)))))[0].numpy()

    return forward


def numpy_forward(model) -> Callable[[np.ndarray], np.ndarray]:
    """The floor: a hand-written numpy forward of a tanh MLP actor with pre-transposed weights.

    Uses the cheapest numpy calls for tiny arrays (``ndarray.dot`` rather than ``@``, which is
    ~2 µs slower per single-observation forward; ``minimum(maximum())`` rather than ``np.clip``).
    Works for one observation (1-D) and for a batch (2-D) alike.
    """
    _, body, head, discrete = _actor_parts(model)
    linears = [m for m in body if hasattr(m, "weight")] + [head]
    if len(linears) != 3:
        raise ValueError(f"the numpy floor expects 2 hidden layers, found {len(linears) - 1}")
    (w1, b1), (w2, b2), (w3, b3) = [
        (np.ascontiguousarray(m.weight.detach().numpy().T), m.bias.detach().numpy().copy()) for m in linears
    ]
    tanh = np.tanh
    if discrete:

        def forward(obs: np.ndarray) -> np.ndarray:
            return (tanh(tanh(obs.dot(w1) + b1).dot(w2) + b2).dot(w3) + b3).argmax(axis=-1)
    else:
        low, high = model.action_space.low, model.action_space.high
        minimum, maximum = np.minimum, np.maximum

        def forward(obs: np.ndarray) -> np.ndarray:
            return minimum(maximum(tanh(tanh(obs.dot(w1) + b1).dot(w2) + b2).dot(w3) + b3, low), high)

    return forward
