"""TrainablePolicy: distributions, log-probabilities and gradients equal SB3's and torch's; weights written back."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import rlport
from rlport.backends.torch.trainable import TrainablePolicy
from rlport.bundle.bundle import Bundle
from rlport.errors import UnsupportedError
from rlport.frameworks.torch.export import from_torch
from sb3_models import ModelSpec, make_model

PPO_SPECS = [
    pytest.param(ModelSpec("PPO", action="discrete"), id="categorical"),
    pytest.param(ModelSpec("PPO", action="multidiscrete"), id="multi-categorical"),
    pytest.param(ModelSpec("PPO", action="multibinary"), id="bernoulli"),
    pytest.param(ModelSpec("PPO", action="box"), id="gaussian"),
    pytest.param(ModelSpec("PPO", action="box", kwargs={"use_sde": True}), id="gsde"),
    pytest.param(ModelSpec("PPO", policy="MultiInputPolicy", obs="dict", action="discrete"), id="dict-observation"),
]


def sb3_obs(model, count: int = 24):
    space = model.observation_space
    space.seed(5)
    samples = [space.sample() for _ in range(count)]
    if isinstance(samples[0], dict):
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    return np.stack(samples)


@pytest.mark.parametrize("spec", PPO_SPECS)
def test_evaluate_actions_equals_sb3_with_gradients(spec):
    model = make_model(spec)
    policy = TrainablePolicy(rlport.from_sb3(model, fingerprint=False, evaluate=0, probes=16))
    obs = sb3_obs(model)
    obs_t = model.policy.obs_to_tensor(obs)[0]
    if spec.kwargs.get("use_sde"):
        model.policy.reset_noise(len(next(iter(obs.values())) if isinstance(obs, dict) else obs))
    actions = model.policy.get_distribution(obs_t).sample().detach()
    _, want_logp, want_ent = model.policy.evaluate_actions(obs_t, actions)
    got_logp, got_ent, value = policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(got_logp, want_logp, rtol=1e-4, atol=1e-4)
    if want_ent is not None:
        torch.testing.assert_close(got_ent, want_ent, rtol=1e-4, atol=1e-4)
    assert value is None
    model.policy.zero_grad()
    want_logp.sum().backward()
    got_logp.sum().backward()
    for name in ("action_net.weight", "action_net.bias"):
        mine = getattr(policy.graph_module, policy.graph_module_attr(name))
        torch.testing.assert_close(mine.grad, model.policy.get_parameter(name).grad, rtol=1e-4, atol=1e-5)


def test_squashed_gaussian_log_prob_equals_sb3_sac():
    model = make_model(ModelSpec("SAC", action="box"))
    policy = TrainablePolicy(rlport.from_sb3(model, fingerprint=False, evaluate=0, probes=16))
    obs = sb3_obs(model)
    obs_t = model.policy.obs_to_tensor(obs)[0]
    mean, log_std, _ = model.actor.get_action_dist_params(obs_t)
    dist = model.actor.action_dist.proba_distribution(mean, log_std)
    actions = dist.sample()  # in (-1, 1): SAC's buffer keeps squashed actions
    want = dist.log_prob(actions)
    got, entropy, _ = policy.evaluate_actions(obs, actions.detach())
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    assert entropy is None  # no closed form, as in SB3
    env_actions = policy.postprocess(actions.detach())
    low, high = torch.as_tensor(model.action_space.low), torch.as_tensor(model.action_space.high)
    torch.testing.assert_close(env_actions, low + 0.5 * (actions.detach() + 1) * (high - low))


class Actor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 6))
        self.log_std = nn.Parameter(torch.linspace(-1.0, 0.0, 3))

    def forward(self, x):
        h = self.net(x)
        mean = h[:, :3] + 0.5 * h[:, 3:]  # 0.5: a constant rlport makes, which must stay fixed
        return mean, self.log_std.expand_as(mean)


def test_from_torch_bundle_trains_like_the_module_and_writes_back(tmp_path):
    """Gradients equal the source module's; one optimiser step on both gives the same weights, written back."""
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    act_space = gym.spaces.Box(-2, 2, (3,), np.float32)
    module = Actor()
    bundle = from_torch(module, obs_space, act_space, head="gaussian")
    policy = TrainablePolicy(bundle)
    assert not any(policy.trainable[name] for name in bundle.source["constants"])
    assert not policy.trainable["space.action.low"] and policy.trainable["log_std"]
    obs = torch.rand(32, 4) * 2 - 1
    actions = torch.randn(32, 3)
    mean, log_std = module(obs)
    want = torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)
    got, entropy, _ = policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(got, want.log_prob(actions))
    torch.testing.assert_close(entropy, want.entropy())
    mine = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.1)
    theirs = torch.optim.SGD(module.parameters(), lr=0.1)
    (-got.mean()).backward()
    (-want.log_prob(actions).mean()).backward()
    mine.step()
    theirs.step()
    written = tmp_path / "tuned.rlp"
    policy.to_bundle().save(written)
    tuned = Bundle.load(written)
    for name, value in module.state_dict().items():
        np.testing.assert_allclose(tuned.tensors[name], value.numpy(), rtol=1e-6, atol=1e-7)
    for name in bundle.source["constants"]:
        np.testing.assert_array_equal(tuned.tensors[name], bundle.tensors[name])
    assert not np.array_equal(tuned.tensors["net.0.weight"], bundle.tensors["net.0.weight"])
    obs_np = obs.numpy()
    with torch.no_grad():
        want_action = np.clip(module(obs)[0].numpy(), -2, 2)
    np.testing.assert_allclose(rlport.load(tuned).predict(obs_np, deterministic=True)[0], want_action, atol=1e-5)
    assert tuned.probe_info.source == "rlport torch runtime after fine-tuning" and tuned.verification is None


def test_q_values_have_no_distribution():
    module = nn.Sequential(nn.Linear(4, 3))
    bundle = from_torch(module, gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3), head="argmax")
    policy = TrainablePolicy(bundle)
    with pytest.raises(UnsupportedError, match="no action distribution"):
        policy.distribution(np.zeros((2, 4), np.float32))
    obs = torch.rand(5, 4)
    torch.testing.assert_close(policy.head_inputs(obs)[0], module(obs))


def test_recurrent_bundles_are_refused():
    model = make_model(ModelSpec("RecurrentPPO", policy="MlpLstmPolicy", action="discrete"))
    with pytest.raises(UnsupportedError, match="recurrent policies"):
        TrainablePolicy(rlport.from_sb3(model, fingerprint=False, evaluate=0, probes=16))


def test_weights_that_are_no_longer_finite_are_not_written():
    module = nn.Sequential(nn.Linear(4, 3))
    bundle = from_torch(module, gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3), head="categorical")
    policy = TrainablePolicy(bundle)
    with torch.no_grad():
        getattr(policy.graph_module, policy.graph_module_attr("0.weight"))[0, 0] = float("nan")
    with pytest.raises(UnsupportedError, match="'0.weight' is no longer finite"):
        policy.to_bundle()


def test_the_torch_backend_gives_a_trainable_policy(tmp_path):
    """``rlport.load(path, backend="torch").trainable()``: a TrainablePolicy on the bundle, acting as the runtime."""
    module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    bundle = from_torch(module, gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3), head="categorical")
    bundle.save(tmp_path / "policy.rlp")
    runtime = rlport.load(tmp_path / "policy.rlp", backend="torch")
    policy = runtime.trainable()
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 4)).astype(np.float32)
    np.testing.assert_array_equal(policy(obs).numpy(), runtime.predict(obs, deterministic=True)[0])
    assert isinstance(policy.distribution(obs), torch.distributions.Categorical)
