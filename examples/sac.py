"""SAC in plain PyTorch (twin Q, automatic entropy tuning), writing an rlport bundle.

CleanRL-style: one file that reads top to bottom. Gymnasium vector envs reach torch through
gymnasium's own ``NumpyToTorch`` wrapper. The actor returns ``(mean, log_std)`` and is written
with ``rlport.from_torch(..., head="squashed_gaussian")`` (tanh, then rescaled to the action
bounds) at checkpoints and at the end. ``--init model.rlp`` fine-tunes a bundle's actor (an
imported SB3 / RL Zoo SAC) with fresh critics: ``TrainablePolicy.distribution`` gives its
squashed Gaussian.

    python examples/sac.py --env-id Pendulum-v1 --total-timesteps 20000 --output sac-pendulum.rlp
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

from rlport.backends.torch.trainable import SquashedNormal, TrainablePolicy
from rlport.bundle.bundle import Bundle
from rlport.frameworks.torch.export import from_torch


@dataclass
class Args:
    env_id: str = "Pendulum-v1"
    """the gymnasium id of the environment (Box actions)"""
    total_timesteps: int = 20_000
    """environment steps to train for (all envs together)"""
    seed: int = 1
    """seed of the envs and of torch"""
    num_envs: int = 1
    """parallel environments"""
    learning_rate: float = 1e-3
    """Adam's learning rate (actor, critics and temperature)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (transitions)"""
    batch_size: int = 256
    """transitions per gradient step"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak averaging of the target critics"""
    learning_starts: int = 100
    """steps of random play before learning"""
    hidden: int = 256
    """units of each of the two hidden layers"""
    init: str | None = None
    """a bundle to fine-tune (its actor; the critics are fresh)"""
    output: str = "sac.rlp"
    """where the bundle is written"""
    checkpoint_every: int = 0
    """write the bundle every this many steps as well (0: only at the end)"""
    eval_every: int = 0
    """evaluate the deterministic policy every this many steps (0: never)"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    target_return: float | None = None
    """stop as soon as an evaluation's mean return reaches this"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        kind = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    return Args(**vars(parser.parse_args()))


def mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


class Actor(nn.Module):
    """Observation -> (mean, log_std): rlport's "squashed_gaussian" head."""

    def __init__(self, n_obs: int, n_act: int, hidden: int) -> None:
        super().__init__()
        self.latent = nn.Sequential(nn.Linear(n_obs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu, self.log_std = nn.Linear(hidden, n_act), nn.Linear(hidden, n_act)

    def forward(self, obs: torch.Tensor):
        h = self.latent(obs)
        return self.mu(h), self.log_std(h).clamp(-20.0, 2.0)

    def distribution(self, obs: torch.Tensor) -> SquashedNormal:
        mean, log_std = self(obs)
        return SquashedNormal(mean, log_std.exp())


def evaluate(actor: nn.Module, args: Args, low: torch.Tensor, high: torch.Tensor) -> float:
    envs = NumpyToTorch(gym.make_vec(args.env_id, args.eval_episodes, vectorization_mode="sync"))
    obs, _ = envs.reset(seed=args.seed + 1000)
    returns, done = torch.zeros(args.eval_episodes), torch.zeros(args.eval_episodes, dtype=torch.bool)
    with torch.no_grad():
        while not done.all():
            obs, reward, term, trunc, _ = envs.step(to_env(actor, actor.distribution(obs.float()).mode, low, high))
            returns += reward.float() * ~done
            done |= term | trunc
    envs.close()
    return float(returns.mean())


def to_env(actor: nn.Module, squashed: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """An action in [-1, 1] rescaled to the action space (the bundle's ``rescale_to_bounds``)."""
    if isinstance(actor, TrainablePolicy):
        return actor.postprocess(squashed)
    return low + 0.5 * (squashed + 1.0) * (high - low)


def main(args: Args) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    envs = NumpyToTorch(gym.make_vec(args.env_id, args.num_envs, vectorization_mode="sync"))
    space = envs.single_action_space
    n_obs, n_act = int(np.prod(envs.single_observation_space.shape)), int(np.prod(space.shape))
    low, high = torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)
    actor = TrainablePolicy(Bundle.load(args.init)) if args.init else Actor(n_obs, n_act, args.hidden)
    q1, q2 = mlp(n_obs + n_act, 1, args.hidden), mlp(n_obs + n_act, 1, args.hidden)
    q1_target, q2_target = copy.deepcopy(q1), copy.deepcopy(q2)
    q_optimizer = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=args.learning_rate)
    actor_optimizer = torch.optim.Adam([p for p in actor.parameters() if p.requires_grad], lr=args.learning_rate)
    log_alpha = torch.zeros(1, requires_grad=True)
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.learning_rate)
    target_entropy = -float(n_act)
    size = min(args.buffer_size, args.total_timesteps)
    buf_obs, buf_next = torch.zeros((size, n_obs)), torch.zeros((size, n_obs))
    buf_act, buf_rew, buf_term = torch.zeros((size, n_act)), torch.zeros(size), torch.zeros(size)
    count, pos, history = 0, 0, []
    obs, _ = envs.reset(seed=args.seed)
    obs, start, step = obs.float(), time.perf_counter(), 0
    resetting = torch.zeros(args.num_envs, dtype=torch.bool)  # gymnasium's autoreset: the next step only resets
    while step < args.total_timesteps:
        if step < args.learning_starts:
            squashed = torch.rand((args.num_envs, n_act)) * 2 - 1
        else:
            with torch.no_grad():
                squashed = actor.distribution(obs).sample()
        next_obs, reward, term, trunc, _ = envs.step(to_env(actor, squashed, low, high))
        next_obs = next_obs.float()
        for k in torch.nonzero(~resetting).flatten().tolist():  # store real transitions only
            buf_obs[pos], buf_next[pos], buf_act[pos] = obs[k], next_obs[k], squashed[k]
            buf_rew[pos], buf_term[pos] = float(reward[k]), float(term[k])
            pos, count = (pos + 1) % size, min(count + 1, size)
        obs, resetting, step = next_obs, term | trunc, step + args.num_envs
        if step < args.learning_starts:
            continue
        idx = torch.randint(0, count, (args.batch_size,))
        o, a, r, o2, d = buf_obs[idx], buf_act[idx], buf_rew[idx], buf_next[idx], buf_term[idx]
        alpha = log_alpha.exp().detach()
        with torch.no_grad():  # ---- critics: soft Bellman targets from the twin target networks
            dist2 = actor.distribution(o2)
            a2 = dist2.sample()
            q_next = torch.min(q1_target(torch.cat([o2, a2], 1)), q2_target(torch.cat([o2, a2], 1))).squeeze(1)
            y = r + args.gamma * (1 - d) * (q_next - alpha * dist2.log_prob(a2))
        q_loss = ((q1(torch.cat([o, a], 1)).squeeze(1) - y) ** 2).mean() + (
            (q2(torch.cat([o, a], 1)).squeeze(1) - y) ** 2
        ).mean()
        q_optimizer.zero_grad()
        q_loss.backward()
        q_optimizer.step()
        dist = actor.distribution(o)  # ---- actor: reparameterised sample, maximise Q - alpha * log pi
        a_new = dist.rsample()
        log_pi = dist.log_prob(a_new)
        q_new = torch.min(q1(torch.cat([o, a_new], 1)), q2(torch.cat([o, a_new], 1))).squeeze(1)
        actor_loss = (alpha * log_pi - q_new).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        alpha_loss = -(log_alpha * (log_pi.detach() + target_entropy)).mean()  # ---- temperature
        alpha_optimizer.zero_grad()
        alpha_loss.backward()
        alpha_optimizer.step()
        with torch.no_grad():
            for net, tgt in ((q1, q1_target), (q2, q2_target)):
                for p, p_t in zip(net.parameters(), tgt.parameters(), strict=True):
                    p_t.mul_(1 - args.tau).add_(args.tau * p)
        if args.checkpoint_every and step % args.checkpoint_every < args.num_envs:
            write_bundle(actor, envs, args)
        if args.eval_every and step % args.eval_every < args.num_envs:
            paused = time.perf_counter()
            mean = evaluate(actor, args, low, high)
            history.append((step, paused - start, mean))  # training time: evaluations left out
            start += time.perf_counter() - paused
            if args.target_return is not None and mean >= args.target_return:
                break
    write_bundle(actor, envs, args)
    envs.close()
    return {"steps": step, "seconds": time.perf_counter() - start, "evaluations": history}  # without evaluations


def write_bundle(actor: nn.Module, envs, args: Args) -> None:
    if isinstance(actor, TrainablePolicy):
        bundle = actor.to_bundle()
    else:
        bundle = from_torch(actor, envs.single_observation_space, envs.single_action_space,
                            head="squashed_gaussian", env_id=args.env_id)  # fmt: skip
    bundle.save(args.output)


if __name__ == "__main__":
    print(main(parse_args()))
