"""``rlport demo``: train a small SB3 PPO on CartPole-v1, export it, and compare the bundle with SB3.

The bundle is reloaded and run in a fresh Python process (``python -m rlport.cli.demo worker``),
which reports its returns, latency, probe parity and whether torch or SB3 were imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlport.errors import RlportError, require

__all__ = ["run_demo", "latency_us", "require_training_packages"]

ENV_ID = "CartPole-v1"


def latency_us(predict: Any, obs: Any, calls: int = 2000, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean single-observation ``predict`` time, in µs."""
    for _ in range(200):
        predict(obs, deterministic=True)
    runs = []
    for _ in range(repeats):
        began = time.perf_counter_ns()
        for _ in range(calls):
            predict(obs, deterministic=True)
        runs.append((time.perf_counter_ns() - began) / calls / 1000)
    return float(np.median(runs))


def require_training_packages() -> None:
    """Raise :class:`~rlport.errors.MissingDependencyError` (one line, ``rlport[sb3]``) unless the demo can train."""
    for module in ("gymnasium", "torch", "stable_baselines3"):
        require(module, "sb3", "rlport demo (it trains a PPO with stable-baselines3)")


def _train(timesteps: int, seed: int, progress: Any) -> Any:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Bar(BaseCallback):
        def _on_step(self) -> bool:
            progress.update(self.training_env.num_envs)
            return True

    # A 64-64 MLP gains nothing from threads; on 2 busy cores they slow training down 10x.
    torch.set_num_threads(1)
    env = make_vec_env(ENV_ID, n_envs=8, seed=seed)
    # RL Zoo's CartPole-v1 PPO hyperparameters, with a higher learning rate for a short run.
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=1e-3,
        clip_range=0.2,
        seed=seed,
        device="cpu",
    )
    model.learn(timesteps, callback=Bar())
    return model


def _worker(bundle_path: str, episodes: int, seed: int, steps_path: str) -> dict[str, Any]:
    """Runs in the fresh process: load with numpy only, act, time, check probes."""
    began = time.perf_counter()
    import rlport
    from rlport.envs import make_env, run_episodes

    policy = rlport.load(bundle_path)
    load_ms = (time.perf_counter() - began) * 1000
    bundle = policy.bundle
    probe_actions, _ = policy.predict(bundle.probes["obs"], deterministic=True)
    probe_mismatch = int(np.sum(probe_actions != bundle.probes["action"]))
    seen_obs, seen_actions = [], []
    env = make_env(bundle.env)
    stats = run_episodes(
        policy, env, episodes, seed=seed, on_step=lambda o, a: (seen_obs.append(o), seen_actions.append(a))
    )
    np.savez(steps_path, obs=np.stack(seen_obs), action=np.stack(seen_actions))
    return {
        "load_ms": load_ms,
        "imported": {name: name in sys.modules for name in ("torch", "stable_baselines3")},
        "probes": {"count": len(probe_actions), "mismatched": probe_mismatch},
        "episodes": stats.to_json(),
        "latency_us": latency_us(policy.predict, seen_obs[0]),
    }


def run_demo(
    out_dir: str | Path = "rlport-demo",
    timesteps: int = 30_000,
    episodes: int = 20,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Train, export, reload in a fresh process and compare with SB3. Returns the figures.

    Args:
        out_dir: where the SB3 ``.zip`` and the ``.rlp`` bundle are written.
        timesteps: PPO training steps.
        episodes: evaluation episodes for both the bundle and SB3 (same seeds).
        seed: training and evaluation seed.
        progress: a factory ``(total, label) -> Progress`` for progress bars (None: silent).
    """
    import rlport
    from rlport.cli.progress import Progress
    from rlport.envs import make_env, run_episodes

    require_training_packages()
    bar = progress or (lambda total, label: Progress(total, label, silent=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with bar(timesteps, "training") as training:
        model = _train(timesteps, seed, training)
    train_s = time.perf_counter() - began
    zip_path, bundle_path, steps_path = out / "cartpole_sb3.zip", out / "cartpole.rlp", out / "steps.npz"
    model.save(zip_path)
    rlport.from_sb3(model, env_id=ENV_ID).save(bundle_path)
    with bar(1, "fresh run") as fresh:
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "rlport.cli.demo",
                "worker",
                str(bundle_path),
                str(episodes),
                str(seed),
                str(steps_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        fresh.update()
    if child.returncode != 0:
        raise RlportError(f"the fresh-process run failed:\n{child.stderr[-2000:]}")
    worker = json.loads(child.stdout)
    with np.load(steps_path, allow_pickle=False) as steps:
        sb3_actions, _ = model.predict(steps["obs"], deterministic=True)
        identical = int(np.sum(sb3_actions == steps["action"]))
        total_steps = len(steps["action"])
        sb3_latency = latency_us(model.predict, steps["obs"][0])
    with bar(episodes, "SB3 episodes") as sb3_bar:
        sb3_stats = run_episodes(model, make_env(rlport.load(bundle_path).bundle.env), episodes, seed=seed,
                                 on_episode=lambda i, r: sb3_bar.update())  # fmt: skip
    return {
        "env": ENV_ID,
        "algorithm": "PPO",
        "timesteps": timesteps,
        "train_seconds": train_s,
        "rlport": worker,
        "sb3": {"episodes": sb3_stats.to_json(), "latency_us": sb3_latency},
        "parity": {"steps": total_steps, "identical": identical, **worker["probes"]},
        "size_bytes": {"rlport": bundle_path.stat().st_size, "sb3": zip_path.stat().st_size},
        "paths": {"bundle": str(bundle_path), "sb3": str(zip_path)},
        "ok": identical == total_steps and worker["probes"]["mismatched"] == 0,
    }


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "worker":
    print(json.dumps(_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])))
