"""The torch runtime against the numpy runtime (the reference) on bundles exported from SB3.

Deterministic actions must be identical for discrete spaces and within 1e-5 for Box spaces.
The tests live next to ``sb3_models.py`` so that they share its tiny perturbed models.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.backends.torch import ops as torch_ops
from rlport.backends.torch.runtime import TorchPolicy
from rlport.errors import GraphError, ObservationError
from rlport.graph import reference as numpy_ops
from rlport.graph.graph import Node
from rlport.graph.schema import OPS
from sb3_models import ACTION_SPACES, OBS_SPACES, ModelSpec, SpacesEnv, assert_same_actions, make_model, sample_obs

N_OBS = 256


def _vec_normalize(spec: ModelSpec):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = DummyVecEnv([lambda: SpacesEnv(OBS_SPACES[spec.obs], ACTION_SPACES[spec.action])])
    vec_normalize = VecNormalize(venv, norm_reward=False, clip_obs=1.5)
    rng = np.random.default_rng(7)
    vec_normalize.obs_rms.mean = rng.normal(0.0, 1.0, vec_normalize.obs_rms.mean.shape)
    vec_normalize.obs_rms.var = rng.uniform(0.05, 3.0, vec_normalize.obs_rms.var.shape)
    vec_normalize.training = False
    return vec_normalize


_BUNDLES: dict[tuple[str, bool], rlport.Bundle] = {}


def bundle_of(spec: ModelSpec, normalized: bool = False):
    """The bundle exported in-process from the model of ``spec`` (cached across tests)."""
    key = (repr(spec), normalized)
    if key not in _BUNDLES:
        vec_normalize = _vec_normalize(spec) if normalized else None
        model = make_model(spec, env=vec_normalize)
        _BUNDLES[key] = rlport.from_sb3(model, vec_normalize=vec_normalize, probes=16, fingerprint=False, evaluate=0)
    return _BUNDLES[key]


def _take(obs, index):
    return {k: v[index] for k, v in obs.items()} if isinstance(obs, dict) else obs[index]


def _same(numpy_policy, torch_policy, obs, what, **kwargs):
    ours, _ = torch_policy.predict(obs, deterministic=True, **kwargs)
    reference, _ = numpy_policy.predict(obs, deterministic=True, **kwargs)
    assert ours.dtype == reference.dtype, what
    assert_same_actions(ours, reference, what)


PARITY_CASES = [
    ModelSpec("PPO", action="discrete"),
    ModelSpec("PPO", action="box"),
    ModelSpec("PPO", action="multidiscrete"),
    ModelSpec("PPO", action="multibinary"),
    ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete"),
    ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="box"),
    ModelSpec("SAC", action="box"),
    ModelSpec("TD3", action="box2d"),
    ModelSpec("DQN", obs="discrete", action="discrete"),
    ModelSpec("QRDQN", obs="multidiscrete", action="discrete"),
]


@pytest.mark.parametrize("spec", PARITY_CASES, ids=str)
def test_deterministic_parity_with_numpy(spec):
    bundle = bundle_of(spec)
    numpy_policy, torch_policy = NumpyPolicy(bundle), TorchPolicy(bundle)
    obs = sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=3)
    _same(numpy_policy, torch_policy, obs, "batch")
    for i in range(3):
        _same(numpy_policy, torch_policy, _take(obs, i), f"single observation {i}")


def test_channel_last_and_channel_first_images_give_the_same_actions():
    bundle = bundle_of(ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete"))
    policy = TorchPolicy(bundle)
    obs = sample_obs(OBS_SPACES["gray"], 8, seed=3)
    last, _ = policy.predict(obs, deterministic=True)
    first, _ = policy.predict(obs.transpose(0, 3, 1, 2), deterministic=True)
    np.testing.assert_array_equal(last, first)


@pytest.mark.parametrize("action", ["discrete", "multidiscrete"])
def test_maskable_parity_with_masks(action):
    spec = ModelSpec("MaskablePPO", action=action)
    bundle = bundle_of(spec)
    numpy_policy, torch_policy = NumpyPolicy(bundle), TorchPolicy(bundle)
    obs = sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=3)
    size = bundle.graph.inputs_with_role("action_mask")[0].size
    masks = np.random.default_rng(4).random((N_OBS, size)) < 0.5
    masks[:, 0] = True
    if action == "multidiscrete":
        masks[:, [3, 5]] = True  # at least one choice in every slice (sizes 3, 2, 4)
    _same(numpy_policy, torch_policy, obs, "masked", action_masks=masks)
    _same(numpy_policy, torch_policy, obs, "unmasked")
    free, _ = torch_policy.predict(obs, deterministic=True)
    masked, _ = torch_policy.predict(obs, deterministic=True, action_masks=masks)
    assert not np.array_equal(free, masked)
    masks[0] = False
    with pytest.raises(ObservationError, match="allows no action"):
        torch_policy.predict(obs, deterministic=True, action_masks=masks)


def test_recurrent_parity_with_state_carried():
    spec = ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box", policy_kwargs={"n_lstm_layers": 2})
    bundle = bundle_of(spec)
    numpy_policy, torch_policy = NumpyPolicy(bundle), TorchPolicy(bundle)
    assert torch_policy.is_recurrent
    n_envs, n_steps = 3, 20
    obs = sample_obs(OBS_SPACES[spec.obs], n_envs * n_steps, seed=5)
    starts = np.random.default_rng(6).random((n_steps, n_envs)) < 0.2
    starts[0] = True
    theirs = ours = None
    for t in range(n_steps):
        step = obs[t * n_envs : (t + 1) * n_envs]
        reference, theirs = numpy_policy.predict(step, state=theirs, episode_start=starts[t], deterministic=True)
        action, ours = torch_policy.predict(step, state=ours, episode_start=starts[t], deterministic=True)
        assert_same_actions(action, reference, f"step {t}")
        for mine, numpy_state in zip(ours, theirs, strict=True):
            assert mine.shape == numpy_state.shape and mine.dtype == numpy_state.dtype
            np.testing.assert_allclose(mine, numpy_state, rtol=0, atol=1e-5, err_msg=f"state at step {t}")
    action, state = torch_policy.predict(obs[0], deterministic=True)
    assert action.shape == (3,) and state[0].shape[1] == 1


def test_vec_normalize_parity_and_float64_statistics():
    bundle = bundle_of(ModelSpec("PPO", action="box"), normalized=True)
    numpy_policy, torch_policy = NumpyPolicy(bundle), TorchPolicy(bundle)
    _same(numpy_policy, torch_policy, sample_obs(OBS_SPACES["box"], N_OBS, seed=8), "normalized")
    stats = [b for name, b in torch_policy.module.named_buffers() if name.startswith("vecnormalize")]
    assert stats and all(b.dtype == torch.float64 for b in stats)


# ---- the module --------------------------------------------------------------------------


def test_module_is_a_plain_nn_module_usable_under_no_grad():
    bundle = bundle_of(ModelSpec("PPO", action="box"))
    policy = TorchPolicy(bundle)
    module = policy.module
    assert isinstance(module, torch.nn.Module) and not module.training
    assert sum(p.numel() for p in module.parameters()) > 0
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in module.parameters())
    obs = sample_obs(OBS_SPACES["box"], 16, seed=1)
    with torch.no_grad():
        outputs = module(torch.from_numpy(obs), deterministic=True)
    assert isinstance(outputs, tuple) and len(outputs) == 1 and not outputs[0].requires_grad
    expected, _ = policy.predict(obs, deterministic=True)
    np.testing.assert_array_equal(outputs[0].numpy(), expected)
    state = module.state_dict()
    assert set(module.tensor_names) == set(state)
    assert all(module.tensor_names[k] in bundle.tensors for k in state)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'obs'"):
        module()  # forward takes exactly the graph's inputs (issue 11, item 17)
    with pytest.raises(GraphError, match="takes 1 inputs"):
        module.run_graph(())


def test_module_forward_with_mask_none_and_recurrent_outputs():
    masked = TorchPolicy(bundle_of(ModelSpec("MaskablePPO", action="discrete"))).module
    obs = torch.from_numpy(sample_obs(OBS_SPACES["box"], 4, seed=1))
    (action,) = masked(obs, None)
    assert action.dtype == torch.int64 and action.shape == (4,)
    spec = ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box", policy_kwargs={"n_lstm_layers": 2})
    recurrent = TorchPolicy(bundle_of(spec)).module
    states = [torch.zeros(2, 4, 8) for _ in recurrent.policy_graph.inputs_with_role("state")]
    action, *next_states = recurrent(obs, *states, torch.ones(4))
    assert action.shape == (4, 3) and [s.shape for s in next_states] == [(2, 4, 8)] * len(states)


# ---- torch.compile -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("spec", [ModelSpec("PPO", action="discrete"), ModelSpec("SAC", action="box")], ids=str)
def test_torch_compile_of_the_module_gives_the_same_actions(spec):
    """``torch.compile`` with its default backend (inductor; on the CPU it needs a C++ compiler).

    Slow because inductor builds C++ kernels: both cases take about 15 s on a cold inductor cache,
    5 s on a warm one. The compiled module must act as the uncompiled one on a batch and, after a
    recompilation, on a single row. ``fullgraph=True``: deterministic acting traces without a
    graph break (compiled, the ops skip the checks that read tensor values, as ONNX graphs do).
    """
    module = TorchPolicy(bundle_of(spec)).module
    compiled = torch.compile(module, fullgraph=True)
    obs = torch.from_numpy(sample_obs(OBS_SPACES[spec.obs], 64, seed=3))
    for batch in (obs, obs[:1]):
        with torch.no_grad():
            (expected,) = module(batch, deterministic=True)
            (actual,) = compiled(batch, deterministic=True)
        assert actual.dtype == expected.dtype, spec
        assert_same_actions(actual.numpy(), expected.numpy(), f"compiled, batch of {len(batch)}")


# ---- sampling ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("PPO", action="discrete"),
        ModelSpec("PPO", action="box"),
        ModelSpec("PPO", action="multibinary"),
        ModelSpec("PPO", action="multidiscrete"),
        ModelSpec("PPO", action="box", kwargs={"use_sde": True}),
    ],
    ids=str,
)
def test_seeded_sampling_is_reproducible(spec):
    bundle = bundle_of(spec)
    obs = sample_obs(OBS_SPACES[spec.obs], 64, seed=2)
    first, _ = TorchPolicy(bundle, seed=5).predict(obs)
    policy = TorchPolicy(bundle, seed=5)
    again, _ = policy.predict(obs)
    np.testing.assert_array_equal(first, again)
    other, _ = TorchPolicy(bundle, seed=6).predict(obs)
    mode, _ = policy.predict(obs, deterministic=True)
    assert not np.array_equal(first, other) and not np.array_equal(first, mode)
    policy.seed(5)
    np.testing.assert_array_equal(policy.predict(obs)[0], first)


@pytest.mark.parametrize("spec", [ModelSpec("PPO", action="discrete"), ModelSpec("PPO", action="box")], ids=str)
def test_samples_follow_the_same_distribution_as_numpy(spec):
    bundle = bundle_of(spec)
    obs = np.repeat(sample_obs(OBS_SPACES[spec.obs], 1, seed=2), 4000, axis=0)
    ours, _ = TorchPolicy(bundle, seed=0).predict(obs)
    reference, _ = NumpyPolicy(bundle, seed=0).predict(obs)
    if ours.dtype.kind == "i":
        np.testing.assert_allclose(
            np.bincount(ours, minlength=4) / 4000, np.bincount(reference, minlength=4) / 4000, atol=0.04
        )
    else:
        np.testing.assert_allclose(ours.mean(axis=0), reference.mean(axis=0), atol=0.1)
        np.testing.assert_allclose(ours.std(axis=0), reference.std(axis=0), rtol=0.1)


# ---- ops and the optional dependency ------------------------------------------------------


def test_the_op_registry_covers_the_format_exactly():
    assert set(torch_ops.IMPLEMENTATIONS) == set(OPS)


@pytest.mark.parametrize("op", sorted(set(numpy_ops.ACTIVATIONS) - {"prelu"}))
def test_activation_matches_numpy(op):
    x = np.concatenate([np.linspace(-30, 30, 601), [-1e4, -1e-6, 0.0, 1e-6, 1e4]]).astype(np.float32)[None]
    attrs = {"threshold": {"threshold": 0.5, "value": -2.0}}.get(op, {})
    resolved = Node(op, ("x",), ("y",), attrs=attrs).resolved_attrs()
    reference = numpy_ops.bind(op, {}, resolved)(x)
    ours = torch_ops.IMPLEMENTATIONS[op](torch.from_numpy(x), **resolved).numpy()
    assert ours.dtype == reference.dtype
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)


def test_missing_torch_raises_only_when_the_policy_is_made():
    from isolation import BLOCKER

    code = BLOCKER + textwrap.dedent(
        """
        import rlport.backends.torch.runtime as runtime
        from rlport.errors import MissingDependencyError
        try:
            runtime.TorchPolicy(None)
        except MissingDependencyError as exc:
            print(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'pip install "rlport[torch]"' in result.stdout
