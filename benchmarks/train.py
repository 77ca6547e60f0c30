"""Training speed: the plain-PyTorch examples against Stable-Baselines3, side by side in one run.

PPO on CartPole-v1 with the RL Zoo's hyperparameters (8 envs, 32 steps, batch 256, 20 epochs,
gamma 0.98, GAE lambda 0.8, learning rate and clip range annealed from 1e-3 and 0.2), both
sides: wall-clock training time until the mean return of 10 deterministic evaluation episodes
reaches 475 (evaluated every 10 240 steps; evaluation time left out), over 3 seeds. Then SAC on
Pendulum-v1 (the zoo's learning rate 1e-3, SB3's defaults otherwise) to a mean return of -200,
evaluated every 1 000 steps. Both sides run with ``torch.set_num_threads(1)``, interleaved seed by
seed. Target: the example PPO >= 2x faster than SB3 to the same return.

    .venv/bin/python benchmarks/train.py [--quick] [--json] [--algo ppo|sac|both]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import add_common_args, emit, fmt_ratio, machine_info, progress, table

ROOT = Path(__file__).resolve().parents[1]
PPO_TARGET, SAC_TARGET = 475.0, -200.0
PPO_EVAL_EVERY, SAC_EVAL_EVERY, EPISODES = 10_240, 1_000, 10
ZOO_PPO = {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0}


def example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"rlport_example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def evaluate(predict, env_id: str, seed: int) -> float:
    """Mean return of ``EPISODES`` deterministic episodes run in parallel (one env each)."""
    import gymnasium as gym

    envs = gym.make_vec(env_id, EPISODES, vectorization_mode="sync")
    obs, _ = envs.reset(seed=seed)
    returns, done = np.zeros(EPISODES), np.zeros(EPISODES, bool)
    while not done.all():
        obs, reward, term, trunc, _ = envs.step(predict(obs))
        returns += reward * ~done
        done |= term | trunc
    envs.close()
    return float(returns.mean())


def sb3_run(algo: str, env_id: str, seed: int, budget: int, eval_every: int, target: float) -> dict[str, Any]:
    """SB3 until an evaluation reaches ``target``; training time without the evaluations."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Evaluate(BaseCallback):
        """Evaluates at the first step after a training phase (as the examples do, after their update)."""

        def __init__(self) -> None:
            super().__init__()
            self.history: list[tuple[int, float, float]] = []
            self.start, self.next, self.trained = time.perf_counter(), eval_every, False

        def _on_rollout_start(self) -> None:
            self.trained = True

        def _on_step(self) -> bool:
            done = self.num_timesteps - self.training_env.num_envs  # the steps the current weights trained on
            if not self.trained or done < self.next:
                self.trained = False
                return True
            self.trained = False
            self.next += eval_every
            paused = time.perf_counter()
            mean = evaluate(lambda o: self.model.predict(o, deterministic=True)[0], env_id, seed + 1000)
            self.history.append((self.num_timesteps, paused - self.start, mean))
            self.start += time.perf_counter() - paused
            return mean < target

    if algo == "ppo":
        model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=8, seed=seed), learning_rate=lambda f: 1e-3 * f,
                    clip_range=lambda f: 0.2 * f, seed=seed, device="cpu", **ZOO_PPO)  # fmt: skip
    else:
        model = SAC("MlpPolicy", env_id, learning_rate=1e-3, seed=seed, device="cpu")
    callback = Evaluate()
    model.learn(budget, callback=callback)
    return {"evaluations": callback.history}


def example_run(algo: str, seed: int, budget: int, folder: str) -> dict[str, Any]:
    module = example(algo)
    if algo == "ppo":
        args = module.Args(seed=seed, total_timesteps=budget, eval_every=PPO_EVAL_EVERY, eval_episodes=EPISODES,
                           target_return=PPO_TARGET, output=f"{folder}/ppo.rlp")  # fmt: skip
    else:
        args = module.Args(seed=seed, total_timesteps=budget, eval_every=SAC_EVAL_EVERY, eval_episodes=EPISODES,
                           target_return=SAC_TARGET, output=f"{folder}/sac.rlp")  # fmt: skip
    return module.main(args)


def reached(run: dict[str, Any], target: float) -> dict[str, Any]:
    """The first evaluation at or above ``target``: steps and training seconds (None when never)."""
    for step, seconds, mean in run["evaluations"]:
        if mean >= target:
            return {"steps": step, "seconds": seconds, "return": mean}
    last = run["evaluations"][-1] if run["evaluations"] else (None, None, None)
    return {"steps": None, "seconds": None, "return": last[2]}


def compare(algo: str, env_id: str, seeds: list[int], budget: int, eval_every: int, target: float) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            progress(f"{algo} {env_id} seed {seed}: the example")
            mine = reached(example_run(algo, seed, budget, folder), target)
            progress(f"{algo} {env_id} seed {seed}: stable-baselines3")
            theirs = reached(sb3_run(algo, env_id, seed, budget, eval_every, target), target)
            ratio = theirs["seconds"] / mine["seconds"] if mine["seconds"] and theirs["seconds"] else None
            speed = (mine["steps"] / mine["seconds"]) / (theirs["steps"] / theirs["seconds"]) if ratio else None
            rows.append({"algo": algo, "env": env_id, "seed": seed, "example": mine, "sb3": theirs, "ratio": ratio,
                         "speed_ratio": speed})  # fmt: skip
    return rows


def render(result: dict[str, Any]) -> str:
    def cell(run: dict[str, Any]) -> tuple[str, str]:
        if run["seconds"] is None:
            return "not reached", f"(last {run['return']:.0f})" if run["return"] is not None else "-"
        return f"{run['seconds']:.1f} s", f"{run['steps']:,}"

    rows = [[r["algo"], r["env"], r["seed"], *cell(r["example"]), *cell(r["sb3"]), fmt_ratio(r["ratio"]),
             fmt_ratio(r["speed_ratio"])] for r in result["rows"]]  # fmt: skip
    head = ["algo", "env", "seed", "example time", "example steps", "SB3 time", "SB3 steps", "SB3 / example",
            "steps/s example / SB3"]  # fmt: skip
    lines = [table(head, rows), ""]
    for algo, summary in result["summary"].items():
        if summary["median_ratio"] is None:
            continue
        target = f" (target >= {summary['target']}x)" if summary.get("target") else ""
        lines.append(
            f"{algo}: median SB3 / example time to target = {fmt_ratio(summary['median_ratio'])}{target}; "
            f"median training speed (steps/s) example / SB3 = {fmt_ratio(summary['median_speed'])}"
        )
    lines.append(f"load average: {result['machine']['load_average']}")
    return "\n".join(lines)


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--algo", choices=("ppo", "sac", "both"), default="both", help="which comparison to run")
    args = parser.parse_args()
    seeds = [1] if args.quick else [1, 2, 3]
    rows = []
    if args.algo in ("ppo", "both"):
        rows += compare("ppo", "CartPole-v1", seeds, 100_000, PPO_EVAL_EVERY, PPO_TARGET)
    if args.algo in ("sac", "both"):
        rows += compare("sac", "Pendulum-v1", seeds, 6_000 if args.quick else 20_000, SAC_EVAL_EVERY, SAC_TARGET)
    summary = {}
    for algo, target in (("ppo", 2.0), ("sac", None)):
        ratios = [r["ratio"] for r in rows if r["algo"] == algo and r["ratio"] is not None]
        speeds = [r["speed_ratio"] for r in rows if r["algo"] == algo and r["speed_ratio"] is not None]
        summary[algo] = {"median_ratio": float(np.median(ratios)) if ratios else None, "target": target,
                         "median_speed": float(np.median(speeds)) if speeds else None}  # fmt: skip
    emit({"rows": rows, "summary": summary, "machine": machine_info()}, args.json, render)


if __name__ == "__main__":
    main()
