"""PPO in plain PyTorch (discrete and continuous actions), writing an rlport bundle.

CleanRL-style: one file that reads top to bottom. Gymnasium vector envs reach torch through
gymnasium's own ``NumpyToTorch`` wrapper; the policy is written with ``rlport.from_torch`` at
checkpoints and at the end. ``--init model.rlp`` fine-tunes any bundle (an imported SB3 or RL
Zoo agent) instead of a fresh network: ``TrainablePolicy`` gives its distribution, and
``to_bundle()`` writes the fine-tuned weights back with the same pre- and post-processing.

    python examples/ppo.py --env-id CartPole-v1 --total-timesteps 100000 --output ppo-cartpole.rlp
    python examples/ppo.py --env-id Pendulum-v1 --total-timesteps 200000 --gamma 0.9 ...
    python examples/ppo.py --init ppo-cartpole.rlp --total-timesteps 20000 --output fine-tuned.rlp
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
from torch.distributions import Categorical, Normal

from rlport.backends.torch.trainable import TrainablePolicy
from rlport.bundle.bundle import Bundle
from rlport.frameworks.torch.export import from_torch


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """the gymnasium id of the environment"""
    total_timesteps: int = 100_000
    """environment steps to train for (all envs together)"""
    seed: int = 1
    """seed of the envs and of torch"""
    num_envs: int = 8
    """parallel environments"""
    num_steps: int = 32
    """steps per env per rollout"""
    learning_rate: float = 1e-3
    """Adam's learning rate (annealed linearly to 0 when --anneal-lr)"""
    anneal_lr: bool = True
    """anneal the learning rate and the clip range linearly"""
    gamma: float = 0.98
    """discount factor"""
    gae_lambda: float = 0.8
    """lambda of generalised advantage estimation"""
    num_minibatches: int = 1
    """minibatches per epoch"""
    update_epochs: int = 20
    """epochs over each rollout"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    hidden: int = 64
    """units of each of the two hidden layers (actor and critic)"""
    init: str | None = None
    """a bundle to fine-tune instead of a fresh actor (its critic is fresh)"""
    output: str = "ppo.rlp"
    """where the bundle is written (at the end and at checkpoints)"""
    checkpoint_every: int = 0
    """write the bundle every this many steps as well (0: only at the end)"""
    eval_every: int = 0
    """evaluate the deterministic policy every this many steps (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    target_return: float | None = None
    """stop as soon as an evaluation's mean return reaches this"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
            parser.add_argument(flag, type=kind, default=f.default)
    return Args(**vars(parser.parse_args()))


def make_envs(env_id: str, num_envs: int) -> NumpyToTorch:
    """Vector envs that take and give torch tensors (Box actions clipped to the space).

    Gymnasium's default autoreset: the step after an episode ends only resets that env (its
    action is ignored, its reward is 0), so the step that ends an episode returns the final
    observation itself: a time limit is bootstrapped from its value, and the reset step is
    left out of the loss (``valid``).
    """
    envs = gym.make_vec(env_id, num_envs)  # the env's own vectorised version when it has one (CartPole), else sync
    if isinstance(envs.single_action_space, gym.spaces.Box):
        envs = gym.wrappers.vector.ClipAction(envs)
    return NumpyToTorch(envs)


def layer(n_in: int, n_out: int, std: float = np.sqrt(2)) -> nn.Linear:
    linear = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(linear.weight, std)
    nn.init.zeros_(linear.bias)
    return linear


class Actor(nn.Module):
    """Observation -> logits (Discrete), or (mean, log_std) (Box): rlport's "categorical" / "gaussian" heads."""

    def __init__(self, n_obs: int, action_space: gym.Space, hidden: int) -> None:
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        n_out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.net = nn.Sequential(layer(n_obs, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(),
                                 layer(hidden, n_out, 0.01))  # fmt: skip
        self.log_std = nn.Parameter(torch.zeros(n_out))

    def forward(self, obs: torch.Tensor):
        out = self.net(obs)
        return out if self.discrete else (out, self.log_std.expand_as(out))

    def distribution(self, obs: torch.Tensor):
        if self.discrete:
            return Categorical(logits=self.net(obs))
        mean, log_std = self(obs)
        return torch.distributions.Independent(Normal(mean, log_std.exp()), 1)


def critic(n_obs: int, hidden: int) -> nn.Module:
    return nn.Sequential(layer(n_obs, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(), layer(hidden, 1, 1.0))


def write_bundle(actor: nn.Module, envs, args: Args) -> None:
    """The policy as a bundle: the imported agent's own graph, or the fresh actor captured by from_torch."""
    if isinstance(actor, TrainablePolicy):
        bundle = actor.to_bundle()
    else:
        head = "categorical" if actor.discrete else "gaussian"
        bundle = from_torch(actor, envs.single_observation_space, envs.single_action_space, head=head,
                                   env_id=args.env_id)  # fmt: skip
    bundle.save(args.output)


def evaluate(actor: nn.Module, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of the deterministic policy over ``episodes`` episodes (one env each, in parallel)."""
    envs = NumpyToTorch(gym.make_vec(env_id, episodes, vectorization_mode="sync"))
    obs, _ = envs.reset(seed=seed)
    returns, done = torch.zeros(episodes), torch.zeros(episodes, dtype=torch.bool)
    with torch.no_grad():
        while not done.all():
            obs, reward, term, trunc, _ = envs.step(act(actor, obs.float(), deterministic=True))
            returns += reward.float() * ~done
            done |= term | trunc
    envs.close()
    return float(returns.mean())


def act(actor: nn.Module, obs: torch.Tensor, deterministic: bool = False):
    """The env's action for a batch; with ``deterministic=False`` also the sampled raw action and its log-prob."""
    if deterministic:
        if isinstance(actor, TrainablePolicy):
            return actor(obs)
        out = actor(obs)
        return out.argmax(-1) if actor.discrete else out[0]
    dist = actor.distribution(obs)
    raw = dist.sample()
    env_action = actor.postprocess(raw) if isinstance(actor, TrainablePolicy) else raw
    return env_action, raw, dist.log_prob(raw)


def main(args: Args) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # small networks: threads cost more than they give
    torch.distributions.Distribution.set_default_validate_args(False)  # checks on every sample cost more than the net
    envs = make_envs(args.env_id, args.num_envs)
    n_obs = int(np.prod(envs.single_observation_space.shape))
    if args.init:
        actor = TrainablePolicy(Bundle.load(args.init))
    else:
        actor = Actor(n_obs, envs.single_action_space, args.hidden)
    value = critic(n_obs, args.hidden)
    params = [p for p in actor.parameters() if p.requires_grad] + list(value.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, eps=1e-5, fused=True)
    batch = args.num_envs * args.num_steps
    minibatch = batch // args.num_minibatches
    updates = max(1, args.total_timesteps // batch)
    obs_buf = torch.zeros((args.num_steps, args.num_envs, n_obs))
    act_buf, logp_buf = [None] * args.num_steps, torch.zeros((args.num_steps, args.num_envs))
    rew_buf, term_buf, done_buf, val_buf, valid_buf = (torch.zeros((args.num_steps, args.num_envs)) for _ in range(5))
    obs, _ = envs.reset(seed=args.seed)
    obs, start, step, history = obs.float(), time.perf_counter(), 0, []
    resetting = torch.zeros(args.num_envs, dtype=torch.bool)  # the next step of these envs only resets them
    for update in range(1, updates + 1):
        frac = 1.0 - (update - 1.0) / updates if args.anneal_lr else 1.0
        optimizer.param_groups[0]["lr"] = frac * args.learning_rate
        for t in range(args.num_steps):  # ---- rollout
            with torch.inference_mode():
                env_action, raw, logp = act(actor, obs)
                val_buf[t] = value(obs).flatten()
            obs_buf[t], act_buf[t], logp_buf[t], valid_buf[t] = obs, raw, logp, (~resetting).float()
            next_obs, reward, term, trunc, _ = envs.step(env_action)
            rew_buf[t], term_buf[t] = reward.float(), term.float()
            done_buf[t] = (term | trunc | resetting).float()
            obs, resetting = next_obs.float(), (term | trunc)
        step += batch
        with torch.inference_mode():  # ---- generalised advantage estimation
            advantages, last = torch.zeros_like(rew_buf), torch.zeros(args.num_envs)
            next_value = value(obs).flatten()
            for t in reversed(range(args.num_steps)):  # an episode's last step bootstraps unless terminated
                next_v = next_value if t == args.num_steps - 1 else val_buf[t + 1]
                delta = rew_buf[t] + args.gamma * next_v * (1 - term_buf[t]) - val_buf[t]
                last = (delta + args.gamma * args.gae_lambda * (1 - done_buf[t]) * last) * valid_buf[t]
                advantages[t] = last
            returns = advantages + val_buf
        b_obs, b_logp, b_valid = obs_buf.reshape(batch, n_obs), logp_buf.reshape(-1), valid_buf.reshape(-1)
        b_act = torch.stack(act_buf).reshape(batch, *act_buf[0].shape[1:])
        b_adv, b_ret = advantages.reshape(-1), returns.reshape(-1)
        clip = args.clip_coef * frac
        for _ in range(args.update_epochs):  # ---- the clipped surrogate, epochs over minibatches
            for idx in torch.randperm(batch).split(minibatch):
                if isinstance(actor, TrainablePolicy):
                    new_logp, entropy, _ = actor.evaluate_actions(b_obs[idx], b_act[idx])
                else:
                    dist = actor.distribution(b_obs[idx])
                    new_logp, entropy = dist.log_prob(b_act[idx]), dist.entropy()
                ratio, adv, valid = (new_logp - b_logp[idx]).exp(), b_adv[idx], b_valid[idx]
                count = valid.sum().clamp(min=1)
                mean = (adv * valid).sum() / count
                adv = (adv - mean) / (((adv - mean) ** 2 * valid).sum() / count).sqrt().add(1e-8)
                pg_loss = (torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)) * valid).sum() / count
                v_loss = 0.5 * (((value(b_obs[idx]).flatten() - b_ret[idx]) ** 2) * valid).sum() / count
                ent = (entropy * valid).sum() / count if entropy is not None else torch.zeros(())
                loss = pg_loss - args.ent_coef * ent + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, args.max_grad_norm, foreach=True)
                optimizer.step()
        if args.checkpoint_every and step % args.checkpoint_every < batch:
            write_bundle(actor, envs, args)
        if args.eval_every and step % args.eval_every < batch:
            paused = time.perf_counter()
            mean = evaluate(actor, args.env_id, args.eval_episodes, args.seed + 1000)
            history.append((step, paused - start, mean))  # training time: evaluations left out
            start += time.perf_counter() - paused
            if args.target_return is not None and mean >= args.target_return:
                break
    seconds = time.perf_counter() - start  # training only: evaluations and the final write left out
    write_bundle(actor, envs, args)
    envs.close()
    return {"steps": step, "seconds": seconds, "evaluations": history}


if __name__ == "__main__":
    print(main(parse_args()))
