"""REINFORCE in plain PyTorch, done right (returns-to-go, a learned baseline), writing an rlport bundle.

CleanRL-style: one file that reads top to bottom. Gymnasium vector envs reach torch through
gymnasium's own ``NumpyToTorch`` wrapper. Each iteration plays whole episodes in every env,
weights each action's log-probability by its return-to-go minus a learned value baseline, and
writes the policy with ``rlport.from_torch`` at checkpoints and at the end. ``--init model.rlp``
fine-tunes a bundle's policy instead (``TrainablePolicy``; its baseline is fresh).

    python examples/reinforce.py --env-id CartPole-v1 --total-timesteps 200000 --output reinforce.rlp
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers.vector import NumpyToTorch
from torch import nn

from rlport.backends.torch.trainable import TrainablePolicy
from rlport.bundle.bundle import Bundle
from rlport.frameworks.torch.export import from_torch


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """the gymnasium id of the environment (Discrete actions)"""
    total_timesteps: int = 200_000
    """environment steps to train for (all envs together)"""
    seed: int = 1
    """seed of the envs and of torch"""
    num_envs: int = 8
    """episodes played in parallel per iteration"""
    max_steps: int = 500
    """the longest episode an iteration waits for"""
    learning_rate: float = 3e-3
    """Adam's learning rate"""
    gamma: float = 0.99
    """discount factor"""
    hidden: int = 64
    """units of the hidden layer"""
    init: str | None = None
    """a bundle to fine-tune instead of a fresh policy"""
    output: str = "reinforce.rlp"
    """where the bundle is written"""
    checkpoint_every: int = 0
    """write the bundle every this many iterations as well (0: only at the end)"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        kind = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    return Args(**vars(parser.parse_args()))


def returns_to_go(rewards: torch.Tensor, alive: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = r_t + gamma * G_{t+1}`` within each episode (``alive`` masks the steps after it ended)."""
    out, running = torch.zeros_like(rewards), torch.zeros(rewards.shape[1])
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * running * alive[t]
        out[t] = running
    return out


def main(args: Args) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    envs = NumpyToTorch(gym.make_vec(args.env_id, args.num_envs, vectorization_mode="sync"))
    n_obs = int(np.prod(envs.single_observation_space.shape))
    if args.init:
        policy = TrainablePolicy(Bundle.load(args.init))
        logits_of = lambda obs: policy.head_inputs(obs)[0]  # noqa: E731 - the bundle's logits
    else:
        policy = nn.Sequential(
            nn.Linear(n_obs, args.hidden), nn.Tanh(), nn.Linear(args.hidden, envs.single_action_space.n)
        )
        logits_of = policy
    baseline = nn.Sequential(nn.Linear(n_obs, args.hidden), nn.Tanh(), nn.Linear(args.hidden, 1))
    params = [p for p in policy.parameters() if p.requires_grad] + list(baseline.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    step, iteration, start, mean_return = 0, 0, time.perf_counter(), 0.0
    while step < args.total_timesteps:
        obs, _ = envs.reset(seed=args.seed + iteration)
        obs_list, act_list, rew_list, alive_list = [], [], [], []
        alive = torch.ones(args.num_envs)
        for _ in range(args.max_steps):  # ---- whole episodes; finished envs keep stepping, masked out
            obs = obs.float()
            with torch.no_grad():
                action = torch.distributions.Categorical(logits=logits_of(obs)).sample()
            next_obs, reward, term, trunc, _ = envs.step(action)
            obs_list.append(obs), act_list.append(action), rew_list.append(reward.float() * alive)
            alive_list.append(alive.clone())
            step += int(alive.sum())
            alive = alive * (~(term | trunc)).float()
            obs = next_obs
            if not alive.any():
                break
        obs_b, act_b = torch.stack(obs_list), torch.stack(act_list)
        rewards, mask = torch.stack(rew_list), torch.stack(alive_list)
        next_alive = torch.cat([mask[1:], torch.zeros(1, args.num_envs)])
        g = returns_to_go(rewards, next_alive, args.gamma)
        values = baseline(obs_b).squeeze(-1)
        advantage = (g - values).detach()
        log_prob = torch.distributions.Categorical(logits=logits_of(obs_b.flatten(0, 1))).log_prob(act_b.flatten())
        log_prob = log_prob.reshape(mask.shape)
        count = mask.sum()
        loss = (-(log_prob * advantage * mask).sum() + 0.5 * (((g - values) ** 2) * mask).sum()) / count
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        iteration += 1
        mean_return = float(rewards.sum(0).mean())
        if args.checkpoint_every and iteration % args.checkpoint_every == 0:
            write_bundle(policy, envs, args)
    write_bundle(policy, envs, args)
    envs.close()
    return {"steps": step, "iterations": iteration, "seconds": time.perf_counter() - start, "last_return": mean_return}


def write_bundle(policy: nn.Module, envs, args: Args) -> None:
    if isinstance(policy, TrainablePolicy):
        bundle = policy.to_bundle()
    else:
        bundle = from_torch(policy, envs.single_observation_space, envs.single_action_space, head="categorical",
                            env_id=args.env_id)  # fmt: skip
    bundle.save(args.output)


if __name__ == "__main__":
    print(main(parse_args()))
