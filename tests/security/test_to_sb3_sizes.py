"""A bundle's recorded settings cannot make ``to_sb3`` build a model of a size the bundle does not have."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("stable_baselines3")

import rlport  # noqa: E402
from rlport.errors import UnsupportedError  # noqa: E402


@pytest.fixture(scope="module")
def made():
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, policy_kwargs={"net_arch": {"pi": [32], "vf": [32]}})
    return rlport.from_sb3(model, env_id="CartPole-v1", fingerprint=False, evaluate=0)


@pytest.fixture
def bundle(made):
    """The module's bundle with a fresh copy of its source, for each test to edit."""
    original = made.__dict__.setdefault("_pristine", copy.deepcopy(made.source))
    made.source = copy.deepcopy(original)
    return made


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"net_arch": [10**12]}, "net_arch asks for 1000000000000"),
        ({"net_arch": {"pi": [32], "vf": [1 << 20]}}, "net_arch asks for 1048576"),
        ({"net_arch": [{"pi": [32], "vf": [-5]}]}, "net_arch asks for -5"),
        ({"features_extractor_kwargs": {"features_dim": 10**9}}, "features_dim asks for"),
        ({"n_critics": 10**6}, "n_critics asks for 1000000"),
    ],
)
def test_recorded_sizes_beyond_the_bundle_are_refused(bundle, entry, message):
    bundle.source["policy_kwargs"] = {**bundle.source["policy_kwargs"], **entry}
    with pytest.raises(UnsupportedError, match=message):
        rlport.to_sb3(bundle, allow_missing_critic=True)


def test_sizes_of_the_bundles_scale_and_the_callers_own_are_built(bundle):
    bundle.source["policy_kwargs"] = {**bundle.source["policy_kwargs"], "net_arch": {"pi": [32], "vf": [10**12]}}
    model = rlport.to_sb3(bundle, allow_missing_critic=True, policy_kwargs={"net_arch": {"pi": [32], "vf": [256]}})
    assert model.policy.mlp_extractor.value_net[0].out_features == 256
    bundle.source["policy_kwargs"]["net_arch"] = {"pi": [32], "vf": [4096]}  # 4096: the floor of the limit
    assert rlport.to_sb3(bundle, allow_missing_critic=True).policy.mlp_extractor.value_net[0].out_features == 4096
