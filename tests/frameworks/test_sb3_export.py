"""What ``from_sb3`` keeps (tensors, probes, source) and what it refuses, with which message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

import rlport
from rlport.backends.numpy import NumpyPolicy
from sb3_models import OBS_SPACES, ModelSpec, SpacesEnv, make_model, roundtrip

CRITIC_SPECS = [
    ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete"),
    ModelSpec("A2C", "MultiInputPolicy", obs="dict", policy_kwargs={"share_features_extractor": False}),
    ModelSpec("SAC", kwargs={"use_sde": True}),
    ModelSpec("TD3"),
    ModelSpec("CrossQ"),
    ModelSpec("DQN", action="discrete"),
    ModelSpec("QRDQN", action="discrete"),
    ModelSpec("TQC"),
    ModelSpec("ARS", "LinearPolicy"),
    ModelSpec("MaskablePPO", action="multibinary"),
    ModelSpec("RecurrentPPO", "MlpLstmPolicy", policy_kwargs={"n_lstm_layers": 2}),
]


@pytest.mark.parametrize("spec", CRITIC_SPECS, ids=str)
def test_include_critic_keeps_every_policy_tensor(spec, tmp_path):
    model = make_model(spec)
    full = {name: value.detach().cpu().numpy() for name, value in model.policy.state_dict().items()}
    bundle, _ = roundtrip(model, tmp_path, include_critic=True)
    loaded = rlport.Bundle.load(tmp_path / "policy.rlp")
    for tensors in (bundle.tensors, loaded.tensors):
        missing = sorted(set(full) - set(tensors))
        assert not missing, f"missing state_dict tensors: {missing}"
        for name, value in full.items():
            assert tensors[name].dtype == value.dtype and tensors[name].shape == value.shape, name
            np.testing.assert_array_equal(tensors[name], value, err_msg=name)
    assert loaded.source["includes_critic"] is True
    assert loaded.source["state_dict"] == list(full)

    lean, _ = roundtrip(model, tmp_path)
    kept = set(lean.tensors) & set(full)
    if spec.algo != "ARS":  # a linear ARS policy has nothing but its actor
        assert kept < set(full), "the default export keeps every tensor"
    assert lean.source["includes_critic"] is False
    assert lean.source["state_dict"] == [name for name in full if name in kept]
    for name in kept:
        np.testing.assert_array_equal(lean.tensors[name], full[name], err_msg=name)
    graph_tensors = {name for node in lean.graph.nodes() for name in node.params.values()}
    assert set(lean.tensors) == graph_tensors, "the default export keeps tensors the graph does not use"


def test_probe_metadata(tmp_path):
    model = make_model(ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="box2d"))
    bundle, _ = roundtrip(model, tmp_path, probes=40)
    assert bundle.probe_info.count == 40 and not bundle.probe_info.sequential
    assert sorted(bundle.probes) == ["action", "obs.disc", "obs.img", "obs.vec"]
    assert bundle.probes["action"].shape == (40, 2, 3)
    assert bundle.probes["obs.img"].shape == (40, 1, 36, 36)  # the policy's (channel-first) space
    assert rlport.Bundle.load(tmp_path / "policy.rlp").probes.keys() == bundle.probes.keys()
    lean, _ = roundtrip(model, tmp_path, probes=0)
    assert lean.probes is None and lean.probe_info is None


# ---- what cannot be exported -------------------------------------------------------------


class GRUExtractor(BaseFeaturesExtractor):
    """A custom features extractor with a recurrent layer the graph cannot express."""

    def __init__(self, observation_space, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.gru = nn.GRU(observation_space.shape[0], features_dim, batch_first=True)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.gru(obs[:, None])[0][:, 0]


@pytest.mark.parametrize(
    ("algo", "policy_kwargs", "names"),
    [
        ("PPO", {"features_extractor_class": GRUExtractor}, ["layer GRUExtractor", "inside it: GRU "]),
        ("DQN", {"features_extractor_class": GRUExtractor}, ["'q_net.features_extractor'", "inside it: GRU "]),
    ],
    ids=["ppo-gru", "dqn-gru"],
)
def test_unsupported_layers_are_named(algo, policy_kwargs, names):
    action = "discrete" if algo == "DQN" else "box"
    model = make_model(ModelSpec(algo, action=action, policy_kwargs=policy_kwargs))
    with pytest.raises(rlport.UnsupportedError) as info:
        rlport.from_sb3(model)
    message = str(info.value)
    for name in names:
        assert name in message
    assert "supported layers" in message and "Linear" in message and "Conv2d" in message


def test_unsupported_model_object():
    with pytest.raises(rlport.UnsupportedError, match="stable-baselines3 model"):
        rlport.from_sb3(object())


def test_export_does_not_change_the_model():
    """Exporting (and recording probes) leaves the model's predictions and spaces as they were."""
    model = make_model(ModelSpec("PPO", action="discrete"))
    env = SpacesEnv(OBS_SPACES["box"], model.action_space)
    obs = np.stack([env.observation_space.sample() for _ in range(16)])
    before = model.predict(obs, deterministic=True)[0]
    rlport.from_sb3(model, probes=16)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], before)
    assert not model.policy.training


def test_bundle_is_a_snapshot(tmp_path):
    """Training the model on after the export changes neither the bundle nor the model's env space."""
    model = make_model(ModelSpec("SAC"))
    space_state = model.observation_space.np_random.bit_generator.state
    bundle = rlport.from_sb3(model, probes=64)
    assert model.observation_space.np_random.bit_generator.state == space_state
    with torch.no_grad():
        for p in model.policy.parameters():
            p.mul_(-1.5)
    policy = NumpyPolicy(bundle)
    ours, _ = policy.predict(bundle.probes["obs"], deterministic=True)
    np.testing.assert_allclose(ours, bundle.probes["action"], rtol=0, atol=1e-5)
    theirs, _ = model.predict(bundle.probes["obs"], deterministic=True)
    assert not np.allclose(theirs, ours)


def test_probes_of_image_observations_are_capped_near_one_mebibyte():
    from stable_baselines3 import DQN

    from rlport.bundle.probes import MAX_PROBE_BYTES, MIN_PROBES

    env = SpacesEnv(spaces.Box(0, 255, (84, 84, 4), dtype=np.uint8), spaces.Discrete(3))
    model = DQN("CnnPolicy", env, buffer_size=10, learning_starts=0, device="cpu")
    bundle = rlport.from_sb3(model, probes=256)
    obs_bytes = bundle.probes["obs"].nbytes
    assert MIN_PROBES <= bundle.probe_info.count < 256
    assert bundle.probe_info.count == len(bundle.probes["obs"]) == len(bundle.probes["action"])
    assert obs_bytes <= MAX_PROBE_BYTES
