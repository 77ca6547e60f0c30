"""Bundles of SB2 models into Stable-Baselines3 (``rlport.to_sb3``) and ONNX.

Where SB3 has the same policy the rebuilt SB3 model acts as SB2 did (the independent numpy rebuild of
SB2's forward pass, ``sb2_reference``); where it has none, ``to_sb3`` refuses, naming what SB3 lacks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_sb2_policies import CASES, make_model, observations, to_bundle

import rlport
from rlport.backends.onnx.export import export_onnx
from rlport.errors import UnsupportedError
from rlport.frameworks.sb3.env import spaces_only_env

pytest.importorskip("stable_baselines3")

BY_ID = {case.id: case for case in CASES}
EQUIVALENT = {
    "a2c-mlp-discrete": "A2C",
    "ppo2-mlp-box": "PPO",
    "acktr-net-arch-relu": "A2C",
    "trpo-layers": "PPO",
    "ppo1-multidiscrete": "PPO",
    "dqn-plain": "DQN",
    "sac-mlp": "SAC",
    "td3-mlp": "TD3",
    "ddpg-normalised": "DDPG",
}
NO_EQUIVALENT = {
    "acer-mlp": "ACER",
    "ppo2-mlp-lstm": "LSTM",
    "a2c-cnn": "CnnPolicy",
    "dqn-dueling": "dueling",
    "dqn-layer-norm": "layer normalisation",
    "sac-layer-norm": "layer normalisation",
}


def _sb3_actions(model, obs):
    venv = model.get_vec_normalize_env()
    if venv is not None:
        obs = venv.normalize_obs(obs)
    return model.predict(obs, deterministic=True)[0]


@pytest.mark.parametrize("case_id", sorted(EQUIVALENT))
def test_to_sb3_acts_as_sb2(case_id: str) -> None:
    case = BY_ID[case_id]
    sb2_model, store = make_model(case, "list")
    bundle = to_bundle(sb2_model)
    assert bundle.source["framework"] == "stable-baselines" and bundle.source["algorithm"] == EQUIVALENT[case_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frozen statistics (the bundle does not count observations)
        model = rlport.to_sb3(bundle, spaces_only_env(bundle), allow_missing_critic=True, device="cpu")
    assert type(model).__name__ == EQUIVALENT[case_id]
    obs = observations(case, np.random.default_rng(11))
    store.counts.clear()
    expected, _ = case.forward(store, obs, None, None)
    np.testing.assert_allclose(_sb3_actions(model, obs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case_id", ["a2c-mlp-discrete", "ppo2-mlp-box", "dqn-plain", "sac-mlp", "td3-mlp"])
def test_to_sb3_keeps_the_critic(case_id: str) -> None:
    """The value / Q networks come along: no allow_missing_critic needed."""
    bundle = to_bundle(make_model(BY_ID[case_id], "named")[0])
    assert bundle.source["includes_critic"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rlport.to_sb3(bundle, device="cpu")


@pytest.mark.parametrize("case_id", sorted(NO_EQUIVALENT))
def test_to_sb3_refuses_what_sb3_lacks(case_id: str) -> None:
    bundle = to_bundle(make_model(BY_ID[case_id], "named")[0])
    assert NO_EQUIVALENT[case_id] in bundle.source["sb3_missing"]
    with pytest.raises(UnsupportedError, match=NO_EQUIVALENT[case_id]):
        rlport.to_sb3(bundle, allow_missing_critic=True)


@pytest.mark.parametrize("case_id", sorted(EQUIVALENT) + sorted(NO_EQUIVALENT))
def test_onnx_export(case_id: str, tmp_path) -> None:
    pytest.importorskip("onnx")
    bundle = to_bundle(make_model(BY_ID[case_id], "named")[0])
    path = export_onnx(bundle, tmp_path / "policy.onnx")
    assert path.stat().st_size > 0
