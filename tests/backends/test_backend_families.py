"""Every policy family of the foundation tests gives the same deterministic actions on every backend.

One model per algorithm (13) plus the variants that change the graph (gSDE, CNN, Dict, LSTM,
masks, squashed ARS): SB3's own ``predict`` is the reference; numpy, torch and onnx backends
must equal it (discrete actions exactly, continuous within 1e-5), and the ONNX export passes
``onnx.checker``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.backends.onnx.export import export_onnx, onnx_model, sampling_split
from rlport.backends.onnx.runtime import OnnxPolicy
from sb3_models import ALGOS, OBS_SPACES, ModelSpec, assert_same_actions, make_model, sample_obs

FAMILIES = [
    ModelSpec("A2C", obs="multidiscrete", action="multibinary"),
    ModelSpec("PPO", "CnnPolicy", obs="rgb", action="box"),
    ModelSpec("TRPO", action="multidiscrete"),
    ModelSpec("MaskablePPO", "MultiInputPolicy", obs="dict", action="discrete"),
    ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="discrete"),
    ModelSpec("DQN", obs="discrete", action="discrete"),
    ModelSpec("QRDQN", obs="multibinary", action="discrete"),
    ModelSpec("SAC", kwargs={"use_sde": True}),
    ModelSpec("TQC", obs="box64", action="box2d"),
    ModelSpec("TD3", obs="dict_vec", policy="MultiInputPolicy"),
    ModelSpec("DDPG", action="box2d"),
    ModelSpec("CrossQ", obs="box2d"),
    ModelSpec("ARS", "MlpPolicy", policy_kwargs={"squash_output": True}),
    ModelSpec("ARS", "LinearPolicy", action="discrete"),
]
# Algorithms whose SB3 policy samples with deterministic=False (the others act greedily: DQN's
# epsilon lives in model.predict, TD3/DDPG/ARS actors are deterministic).
SAMPLING = {"A2C", "PPO", "TRPO", "MaskablePPO", "RecurrentPPO", "SAC", "TQC", "CrossQ"}


def test_every_algorithm_is_covered():
    assert {spec.algo for spec in FAMILIES} == set(ALGOS)


@pytest.mark.parametrize("spec", FAMILIES, ids=str)
def test_all_backends_act_as_sb3(spec, tmp_path):
    model = make_model(spec)
    bundle = rlport.from_sb3(model, probes=8, fingerprint=False, evaluate=0)
    path = bundle.save(tmp_path / "model.rlp")
    export_onnx(bundle, tmp_path / "model.onnx")  # passes onnx.checker's full check, or raises
    obs = sample_obs(OBS_SPACES[spec.obs], 48, seed=21)
    recurrent = spec.algo == "RecurrentPPO"
    starts = np.zeros(48, dtype=bool) if recurrent else None
    reference, _ = model.predict(obs, episode_start=starts, deterministic=True)
    for backend in rlport.BACKENDS:
        policy = rlport.load(path, backend=backend)
        actions, _ = policy.predict(obs, episode_start=starts, deterministic=True)
        assert_same_actions(np.asarray(actions), reference, f"{backend} backend")


@pytest.mark.parametrize("spec", FAMILIES, ids=str)
def test_onnx_samples_what_numpy_samples_with_the_same_seed(spec):
    """ONNX computes the distributions, numpy draws from them: the same seed gives the same draws."""
    model = make_model(spec)
    bundle = rlport.from_sb3(model, probes=8, fingerprint=False, evaluate=0)
    obs = sample_obs(OBS_SPACES[spec.obs], 64, seed=22)
    starts = np.zeros(64, dtype=bool)
    masks = None
    if spec.algo == "MaskablePPO":
        masks = np.random.default_rng(23).random((64, 4)) < 0.5
        masks[np.arange(64), np.arange(64) % 4] = True
    numpy_policy, onnx_policy = NumpyPolicy(bundle, seed=5), OnnxPolicy(bundle, seed=5)
    for step in range(2):  # the generator advances alike
        ours, our_state = onnx_policy.predict(obs, episode_start=starts, deterministic=False, action_masks=masks)
        theirs, their_state = numpy_policy.predict(obs, episode_start=starts, deterministic=False, action_masks=masks)
        assert_same_actions(ours, theirs, f"sample {step}")
        for mine, reference in zip(our_state or (), their_state or (), strict=True):
            np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-5)
    if masks is not None:
        assert masks[np.arange(64), ours].all(), "a masked action was drawn"
    head = onnx_model(bundle, outputs=sampling_split(bundle.graph)[1])
    onnx.checker.check_model(head, full_check=True)
    mode, _ = onnx_policy.predict(obs, episode_start=starts, deterministic=True, action_masks=masks)
    drawn = not np.array_equal(ours, mode)
    assert drawn == (spec.algo in SAMPLING), "sampled actions should differ from the mode exactly when SB3 samples"


@pytest.fixture(scope="module")
def ppo_path(tmp_path_factory):
    model = make_model(ModelSpec("PPO", action="discrete"))
    return rlport.from_sb3(model, probes=8, fingerprint=False, evaluate=0).save(tmp_path_factory.mktemp("b") / "m.rlp")


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_ragged_observations_are_an_observation_error_on_every_backend(ppo_path, backend):
    policy = rlport.load(ppo_path, backend=backend)
    with pytest.raises(rlport.ObservationError):
        policy.predict([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.1]], deterministic=True)


@pytest.mark.parametrize("backend", rlport.BACKENDS)
def test_a_state_given_to_a_stateless_policy_comes_back_as_in_sb3(ppo_path, backend):
    policy = rlport.load(ppo_path, backend=backend)
    state = (np.ones((1, 3)),)
    _, returned = policy.predict(np.zeros(6, np.float32), state=state, deterministic=True)
    assert returned is state


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "gpu"])
def test_a_torch_device_that_is_not_here_is_a_clear_error(ppo_path, device):
    with pytest.raises(rlport.UnsupportedError, match=rf"torch device '{device}' cannot be used here.*device='cpu'"):
        rlport.load(ppo_path, backend="torch", device=device)


@pytest.mark.parametrize("backend", ["numpy", "onnx"])
def test_a_device_for_a_cpu_backend_is_refused(ppo_path, backend):
    with pytest.raises(rlport.UnsupportedError, match="applies to the torch backend"):
        rlport.load(ppo_path, backend=backend, device="cuda")


def test_cli_run_takes_a_torch_device(ppo_path, capsys):
    from rlport.cli.main import main

    assert main(["run", str(ppo_path), "--backend", "torch", "--device", "nonsense", "--env", "CartPole-v1"]) == 2
    assert "cannot be used here" in capsys.readouterr().err
