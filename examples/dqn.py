"""DQN in plain PyTorch (replay buffer, target network, epsilon-greedy), writing an rlport bundle.

CleanRL-style: one file that reads top to bottom. Gymnasium vector envs reach torch through
gymnasium's own ``NumpyToTorch`` wrapper. The Q-network is written with ``rlport.from_torch``
(``head="argmax"``) at checkpoints and at the end. ``--init model.rlp`` starts from a bundle
whose action op is ``greedy`` (an imported DQN): its Q-values are ``TrainablePolicy.head_inputs``.

    python examples/dqn.py --env-id CartPole-v1 --total-timesteps 50000 --output dqn.rlp
"""

from __future__ import annotations

import argparse
import copy
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
    total_timesteps: int = 50_000
    """environment steps to train for (all envs together)"""
    seed: int = 1
    """seed of the envs and of torch"""
    num_envs: int = 4
    """parallel environments"""
    learning_rate: float = 2.3e-3
    """Adam's learning rate"""
    buffer_size: int = 100_000
    """replay buffer capacity (transitions)"""
    batch_size: int = 64
    """transitions per gradient step"""
    gamma: float = 0.99
    """discount factor"""
    target_update: int = 10
    """gradient steps between target network copies"""
    learning_starts: int = 1_000
    """steps of random play before learning"""
    train_every: int = 1
    """vector steps between gradient steps"""
    exploration_fraction: float = 0.16
    """the fraction of training over which epsilon decays"""
    final_epsilon: float = 0.04
    """epsilon after the decay"""
    hidden: int = 256
    """units of each of the two hidden layers"""
    init: str | None = None
    """a bundle with a greedy action op to fine-tune"""
    output: str = "dqn.rlp"
    """where the bundle is written"""
    checkpoint_every: int = 0
    """write the bundle every this many steps as well (0: only at the end)"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        kind = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    return Args(**vars(parser.parse_args()))


def main(args: Args) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    envs = NumpyToTorch(gym.make_vec(args.env_id, args.num_envs, vectorization_mode="sync"))
    n_obs, n_act = int(np.prod(envs.single_observation_space.shape)), int(envs.single_action_space.n)
    if args.init:
        q_net = TrainablePolicy(Bundle.load(args.init))
        q_of = lambda net, obs: net.head_inputs(obs)[0]  # noqa: E731 - the bundle's Q-values
    else:
        q_net = nn.Sequential(nn.Linear(n_obs, args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.hidden), nn.ReLU(),
                              nn.Linear(args.hidden, n_act))  # fmt: skip
        q_of = lambda net, obs: net(obs)  # noqa: E731
    target = copy.deepcopy(q_net)
    optimizer = torch.optim.Adam([p for p in q_net.parameters() if p.requires_grad], lr=args.learning_rate)
    size = args.buffer_size
    buf_obs, buf_next = torch.zeros((size, n_obs)), torch.zeros((size, n_obs))
    buf_act, buf_rew, buf_term = torch.zeros(size, dtype=torch.int64), torch.zeros(size), torch.zeros(size)
    count, pos, updates = 0, 0, 0
    obs, _ = envs.reset(seed=args.seed)
    obs, start, step = obs.float(), time.perf_counter(), 0
    resetting = torch.zeros(args.num_envs, dtype=torch.bool)  # gymnasium's autoreset: the next step only resets
    while step < args.total_timesteps:
        epsilon = max(args.final_epsilon, 1.0 - step / max(1.0, args.exploration_fraction * args.total_timesteps))
        with torch.no_grad():
            action = q_of(q_net, obs).argmax(-1)
        explore = torch.as_tensor(rng.random(args.num_envs) < epsilon)
        action = torch.where(explore, torch.as_tensor(rng.integers(0, n_act, args.num_envs)), action)
        next_obs, reward, term, trunc, _ = envs.step(action)
        next_obs = next_obs.float()
        for k in torch.nonzero(~resetting).flatten().tolist():  # store real transitions only
            buf_obs[pos], buf_next[pos], buf_act[pos] = obs[k], next_obs[k], action[k]
            buf_rew[pos], buf_term[pos] = float(reward[k]), float(term[k])
            pos, count = (pos + 1) % size, min(count + 1, size)
        obs, resetting, step = next_obs, term | trunc, step + args.num_envs
        if step < args.learning_starts or (step // args.num_envs) % args.train_every:
            continue
        idx = torch.as_tensor(rng.integers(0, count, args.batch_size))
        with torch.no_grad():
            best_next = q_of(target, buf_next[idx]).max(-1).values
            y = buf_rew[idx] + args.gamma * best_next * (1.0 - buf_term[idx])
        q = q_of(q_net, buf_obs[idx]).gather(1, buf_act[idx, None]).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q, y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(q_net.parameters(), 10.0)
        optimizer.step()
        updates += 1
        if updates % args.target_update == 0:
            target.load_state_dict(q_net.state_dict())
        if args.checkpoint_every and step % args.checkpoint_every < args.num_envs:
            write_bundle(q_net, envs, args)
    write_bundle(q_net, envs, args)
    envs.close()
    return {"steps": step, "updates": updates, "seconds": time.perf_counter() - start}


def write_bundle(q_net: nn.Module, envs, args: Args) -> None:
    if isinstance(q_net, TrainablePolicy):
        bundle = q_net.to_bundle()
    else:
        bundle = from_torch(q_net, envs.single_observation_space, envs.single_action_space, head="argmax",
                            env_id=args.env_id)  # fmt: skip
    bundle.save(args.output)


if __name__ == "__main__":
    print(main(parse_args()))
