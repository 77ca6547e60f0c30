"""SB3 policies with custom parts export through torch.export capture and act as SB3 does."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

import rlport
from rlport.errors import UnsupportedError


class ResidualExtractor(BaseFeaturesExtractor):
    """A custom features extractor with its own forward (a residual block and a constant scale)."""

    def __init__(self, observation_space, features_dim: int = 16):
        super().__init__(observation_space, features_dim)
        self.inp = nn.Linear(observation_space.shape[0], features_dim)
        self.block = nn.Sequential(nn.Linear(features_dim, features_dim), nn.SiLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(obs))
        return 0.5 * (h + self.block(h))


class ScaledExtractor(BaseFeaturesExtractor):
    """Supported layers with its own forward (today's tests/frameworks/test_sb3_export.py refused it)."""

    def __init__(self, observation_space, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.linear = nn.Linear(observation_space.shape[0], features_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.linear(obs)


class AbsExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.linear = nn.Linear(observation_space.shape[0], features_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.abs(self.linear(obs))


class ActorCritic(nn.Module):
    """SB3's documented custom network: its own actor and critic modules, ``forward_actor``/``forward_critic``."""

    def __init__(self, features_dim: int, pi: int = 24, vf: int = 12):
        super().__init__()
        self.latent_dim_pi, self.latent_dim_vf = pi, vf
        self.actor = nn.Sequential(nn.Linear(features_dim, pi), nn.ELU(), nn.LayerNorm(pi))
        self.critic = nn.Sequential(nn.Linear(features_dim, vf), nn.ReLU())

    def forward(self, features):
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features):
        h = self.actor(features)
        return h - 0.1 * torch.tanh(h)

    def forward_critic(self, features):
        return self.critic(features)


class OwnNetworksPolicy(ActorCriticPolicy):
    """An ActorCriticPolicy subclass that builds its own actor and critic."""

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = ActorCritic(self.features_dim)


def perturbed(model):
    """All weights noisy (seeded), so that default initialisations hide nothing."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return model


def fresh_obs(model, count: int = 64) -> np.ndarray:
    space = model.observation_space
    space.seed(99)
    return np.stack([space.sample() for _ in range(count)])


MODELS = [
    pytest.param(lambda: PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64,
                             policy_kwargs={"features_extractor_class": ResidualExtractor}), id="ppo-custom-extractor"),
    pytest.param(lambda: SAC("MlpPolicy", "Pendulum-v1", buffer_size=64,
                             policy_kwargs={"features_extractor_class": ResidualExtractor}), id="sac-custom-extractor"),
    pytest.param(lambda: SAC("MlpPolicy", "Pendulum-v1", buffer_size=64,
                             policy_kwargs={"features_extractor_class": ScaledExtractor}), id="sac-scaled-extractor"),
    pytest.param(lambda: PPO(OwnNetworksPolicy, "Pendulum-v1", n_steps=64, batch_size=64),
                 id="actor-critic-subclass-own-networks"),
    pytest.param(lambda: PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64,
                             policy_kwargs={"activation_fn": partial(nn.Softmin, dim=1)}), id="softmin-activation"),
]  # fmt: skip


@pytest.mark.parametrize("make", MODELS)
def test_custom_parts_act_as_sb3(make, tmp_path):
    model = perturbed(make())
    bundle = rlport.from_sb3(model, fingerprint=False, evaluate=0, probes=32)
    bundle.save(tmp_path / "custom.rlp")
    obs = fresh_obs(model)
    want = model.predict(obs, deterministic=True)[0]
    for backend in ("numpy", "torch"):
        got = rlport.load(tmp_path / "custom.rlp", backend=backend).predict(obs, deterministic=True)[0]
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_captured_parameters_keep_sb3_names(tmp_path):
    """Tensors keep their state_dict names: the user's class loads them back and acts the same."""
    model = perturbed(PPO(OwnNetworksPolicy, "Pendulum-v1", n_steps=64, batch_size=64))
    bundle = rlport.from_sb3(model, fingerprint=False, evaluate=0, probes=16, include_critic=True)
    for name in ("mlp_extractor.actor.0.weight", "mlp_extractor.actor.2.bias", "action_net.weight"):
        np.testing.assert_array_equal(bundle.tensors[name], model.policy.state_dict()[name].numpy())
    assert bundle.source["constants"] and all(
        name.startswith("mlp_extractor.const_") for name in bundle.source["constants"]
    )
    obs = fresh_obs(model, 16)
    back = PPO(OwnNetworksPolicy, "Pendulum-v1", n_steps=64, batch_size=64)
    back.policy.load_state_dict({k: torch.as_tensor(bundle.tensors[k]) for k in bundle.source["state_dict"]})
    np.testing.assert_allclose(back.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_untranslatable_custom_extractor_names_the_op_and_path():
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64,
                policy_kwargs={"features_extractor_class": AbsExtractor})  # fmt: skip
    with pytest.raises(UnsupportedError) as info:
        rlport.from_sb3(model, fingerprint=False, evaluate=0)
    assert "aten.abs" in str(info.value) and "features_extractor" in str(info.value)
