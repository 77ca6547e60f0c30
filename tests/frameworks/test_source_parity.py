"""Producers compare the bundle with their source before handing it back: a bundle that acts otherwise is refused.

``from_sb3`` rebuilds a policy from SB3's standard layers and methods; a policy subclass that
changes ``_predict`` or an actor's ``forward`` acts otherwise, and must not become a bundle that
silently disagrees with SB3 (issue 11, item 1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.sac.policies import Actor, SACPolicy

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.backends.parity import check_against_source
from rlport.bundle.probes import PARITY_ATOL, action_tolerance
from rlport.bundle.spaces import BoxSpec, DiscreteSpec
from rlport.errors import UnsupportedError
from rlport.verify.checks import check_parity


class NextActionPolicy(ActorCriticPolicy):
    """Acts one action further than SB3's standard policy would: ``(argmax + 1) mod n``."""

    def _predict(self, observation, deterministic=False):
        return (super()._predict(observation, deterministic) + 1) % self.action_space.n


class HalfActor(Actor):
    """SAC's actor with its action halved: a custom module the graph cannot know about."""

    def forward(self, obs, deterministic=False):
        return super().forward(obs, deterministic) * 0.5


class HalfActorPolicy(SACPolicy):
    def make_actor(self, features_extractor=None):
        kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return HalfActor(**kwargs).to(self.device)


class CountingPolicy(ActorCriticPolicy):
    """Overrides ``_predict`` without changing what it returns: nothing the bundle misses."""

    calls = 0

    def _predict(self, observation, deterministic=False):
        type(self).calls += 1
        return super()._predict(observation, deterministic)


def _export(model, probes: int = 64):
    return rlport.from_sb3(model, probes=probes, evaluate=0, fingerprint=False)


def test_a_policy_overriding_predict_is_refused_by_name():
    model = PPO(NextActionPolicy, "CartPole-v1", policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    with pytest.raises(UnsupportedError) as refused:
        _export(model)
    message = str(refused.value)
    assert "NextActionPolicy._predict" in message
    assert "64/64 probes differ" in message  # (argmax + 1) mod 2 differs on every observation


def test_a_sac_actor_overriding_forward_is_refused_by_name():
    model = SAC(HalfActorPolicy, "Pendulum-v1", policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    with torch.no_grad():  # actions away from 0, so that halving them shows
        for p in model.actor.parameters():
            p.add_(torch.randn_like(p))
    with pytest.raises(UnsupportedError) as refused:
        _export(model)
    message = str(refused.value)
    assert "HalfActor.forward" in message and "actor (" in message  # the method and the custom module
    assert "probes differ" in message and "max |Δaction|" in message


def test_the_source_is_checked_even_when_no_probes_are_kept():
    model = PPO(NextActionPolicy, "CartPole-v1", policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    with pytest.raises(UnsupportedError, match="NextActionPolicy._predict"):
        _export(model, probes=0)


def test_a_harmless_override_still_exports_and_acts_as_sb3():
    model = PPO(CountingPolicy, "CartPole-v1", policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    CountingPolicy.calls = 0
    bundle = _export(model)
    assert CountingPolicy.calls > 0  # SB3's own predict (with the override) made the probes
    assert check_parity(bundle).status == "PASS"
    obs = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    ours, _ = NumpyPolicy(bundle).predict(obs, deterministic=True)
    np.testing.assert_array_equal(ours, model.predict(obs, deterministic=True)[0])


def test_a_mismatch_without_custom_code_is_reported_as_a_bug():
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    bundle = _export(model)
    flipped = dict(bundle.probes, action=1 - bundle.probes["action"])
    with pytest.raises(UnsupportedError, match="rlport bug"):
        check_against_source(bundle, "stable-baselines3", [], flipped)


def test_continuous_tolerance_scales_with_the_action_range():
    assert action_tolerance(DiscreteSpec(3)) == PARITY_ATOL
    assert action_tolerance(BoxSpec.create(-1.0, 1.0, (2,))) == PARITY_ATOL  # bounds up to 1 keep 1e-5
    assert action_tolerance(BoxSpec.create(-400.0, 400.0, (2,))) == pytest.approx(400 * PARITY_ATOL)
    assert action_tolerance(BoxSpec.create(0.0, 2.0, (2,))) == pytest.approx(2 * PARITY_ATOL)
    unbounded = BoxSpec.create(-np.inf, np.inf, (2,))
    assert action_tolerance(unbounded) == PARITY_ATOL
