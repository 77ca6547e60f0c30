"""Round-trip parity with SB3's own ``model.predict``: export, save, load, equal actions.

Deterministic actions must be identical for discrete spaces and within 1e-5 for Box spaces, on
2000+ observations per policy, as a batch and one at a time, for every algorithm, policy and
space combination below.
"""

from __future__ import annotations

import numpy as np
import pytest
from sb3_models import (
    OBS_SPACES,
    ModelSpec,
    assert_same_actions,
    make_model,
    roundtrip,
    sample_obs,
    take,
)
from torch import nn

N_OBS = 2000
N_SINGLE = 8


def _case(spec: ModelSpec, id: str | None = None, slow: bool = False):
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(spec, id=id or str(spec), marks=marks)


ON_POLICY = ("A2C", "PPO", "TRPO")
ACTIONS = ("discrete", "box", "box2d", "multidiscrete", "multibinary")

ACTOR_CRITIC_CASES = [
    *[_case(ModelSpec(algo, action=action)) for algo in ON_POLICY for action in ACTIONS],
    _case(ModelSpec("A2C", obs="discrete", action="box")),
    _case(ModelSpec("PPO", obs="multidiscrete", action="discrete")),
    _case(ModelSpec("TRPO", obs="multibinary", action="multidiscrete")),
    _case(ModelSpec("PPO", obs="box2d", action="box2d")),
    _case(ModelSpec("A2C", policy_kwargs={"share_features_extractor": False}), id="A2C-unshared-extractor"),
    _case(ModelSpec("PPO", action="discrete", policy_kwargs={"net_arch": {"pi": [16, 8], "vf": [12]}}), id="PPO-dict-arch"),
    _case(ModelSpec("TRPO", policy_kwargs={"net_arch": {"pi": [8], "vf": [16, 16]}}), id="TRPO-dict-arch"),
    _case(ModelSpec("A2C", action="multidiscrete", policy_kwargs={"net_arch": {"pi": [], "vf": [8]}}), id="A2C-empty-pi-arch"),
    # images (channel-last env observations, transposed by SB3) and dict observations
    _case(ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete")),
    _case(ModelSpec("A2C", "CnnPolicy", obs="rgb", action="box")),
    _case(ModelSpec("TRPO", "CnnPolicy", obs="rgb", action="multidiscrete")),
    _case(
        ModelSpec("PPO", "CnnPolicy", obs="rgb", action="multibinary", policy_kwargs={"share_features_extractor": False}),
        id="PPO-CnnPolicy-unshared-extractor",
    ),
    _case(ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="box")),
    _case(ModelSpec("A2C", "MultiInputPolicy", obs="dict", action="discrete")),
    _case(ModelSpec("TRPO", "MultiInputPolicy", obs="dict", action="multibinary")),
    _case(
        ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="multidiscrete", policy_kwargs={"share_features_extractor": False}),
        id="PPO-MultiInputPolicy-unshared-extractor",
    ),
    # generalised state-dependent exploration
    _case(ModelSpec("PPO", kwargs={"use_sde": True}), id="PPO-gsde"),
    _case(ModelSpec("A2C", kwargs={"use_sde": True}, policy_kwargs={"squash_output": True}), id="A2C-gsde-squash"),
    _case(
        ModelSpec("PPO", action="box2d", kwargs={"use_sde": True}, policy_kwargs={"squash_output": True, "use_expln": True}),
        id="PPO-gsde-squash-expln",
    ),
    _case(ModelSpec("TRPO", kwargs={"use_sde": True}, policy_kwargs={"full_std": False}), id="TRPO-gsde-not-full-std"),
]  # fmt: skip

ACTIVATIONS = [
    nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Softplus, nn.SELU, nn.Mish, nn.Hardswish,
    nn.Sigmoid, nn.CELU, nn.ReLU6, nn.Softsign, nn.Hardtanh, nn.Hardsigmoid, nn.LogSigmoid, nn.Tanhshrink,
    nn.PReLU, nn.RReLU, nn.Softshrink, nn.Hardshrink, nn.Identity,
]  # fmt: skip

ACTIVATION_CASES = [
    _case(ModelSpec(("PPO", "A2C", "TRPO")[i % 3], policy_kwargs={"activation_fn": fn}), id=f"activation-{fn.__name__}")
    for i, fn in enumerate(ACTIVATIONS)
]

VALUE_BASED_CASES = [
    _case(ModelSpec("DQN", action="discrete")),
    _case(ModelSpec("DQN", obs="multidiscrete", action="discrete")),
    _case(ModelSpec("DQN", "CnnPolicy", obs="gray", action="discrete")),
    _case(ModelSpec("DQN", "MultiInputPolicy", obs="dict", action="discrete")),
    _case(ModelSpec("QRDQN", action="discrete")),
    _case(ModelSpec("QRDQN", obs="discrete", action="discrete")),
    _case(ModelSpec("QRDQN", "CnnPolicy", obs="rgb", action="discrete")),
    _case(ModelSpec("QRDQN", "MultiInputPolicy", obs="dict", action="discrete")),
]

OFF_POLICY_ACTOR_CASES = [
    _case(ModelSpec("SAC")),
    _case(ModelSpec("SAC", action="box2d", policy_kwargs={"activation_fn": nn.Tanh})),
    _case(ModelSpec("SAC", obs="multidiscrete", action="unit")),
    _case(ModelSpec("SAC", kwargs={"use_sde": True}), id="SAC-gsde"),
    _case(ModelSpec("SAC", kwargs={"use_sde": True}, policy_kwargs={"use_expln": True, "clip_mean": 0.5}), id="SAC-gsde-expln"),
    _case(ModelSpec("SAC", "MultiInputPolicy", obs="dict")),
    _case(ModelSpec("SAC", "CnnPolicy", obs="rgb")),
    _case(ModelSpec("TQC")),
    _case(ModelSpec("TQC", "MultiInputPolicy", obs="dict", action="box2d")),
    _case(ModelSpec("TQC", kwargs={"use_sde": True}), id="TQC-gsde"),
    _case(ModelSpec("TD3")),
    _case(ModelSpec("TD3", action="box2d", policy_kwargs={"activation_fn": nn.ELU})),
    _case(ModelSpec("TD3", "CnnPolicy", obs="gray")),
    _case(ModelSpec("DDPG")),
    _case(ModelSpec("DDPG", "MultiInputPolicy", obs="dict")),
    _case(ModelSpec("CrossQ")),
    _case(ModelSpec("CrossQ", action="box2d", obs="discrete")),
    _case(ModelSpec("CrossQ", "MultiInputPolicy", obs="dict_vec")),
    _case(ModelSpec("CrossQ", kwargs={"use_sde": True}), id="CrossQ-gsde"),
]  # fmt: skip

ARS_CASES = [
    _case(ModelSpec("ARS", "LinearPolicy", action="box")),
    _case(ModelSpec("ARS", "LinearPolicy", action="discrete")),
    _case(ModelSpec("ARS", "LinearPolicy", action="box2d", policy_kwargs={"with_bias": True}), id="ARS-LinearPolicy-bias"),
    _case(ModelSpec("ARS", "MlpPolicy", action="box")),
    _case(ModelSpec("ARS", "MlpPolicy", action="discrete", policy_kwargs={"activation_fn": nn.Tanh})),
    _case(ModelSpec("ARS", "MlpPolicy", action="box", policy_kwargs={"squash_output": False}), id="ARS-MlpPolicy-clip"),
    _case(ModelSpec("ARS", "LinearPolicy", obs="discrete", action="box")),
]  # fmt: skip

MASKABLE_CASES = [
    _case(ModelSpec("MaskablePPO", action="discrete")),
    _case(ModelSpec("MaskablePPO", action="multidiscrete")),
    _case(ModelSpec("MaskablePPO", action="multibinary")),
    _case(ModelSpec("MaskablePPO", "MultiInputPolicy", obs="dict", action="multidiscrete")),
    _case(ModelSpec("MaskablePPO", "CnnPolicy", obs="gray", action="discrete")),
]


def _check_parity(model, policy, obs, n_single: int = N_SINGLE, **predict_kwargs) -> None:
    """Batched and single-observation actions equal SB3's ``predict(deterministic=True)``."""
    theirs, _ = model.predict(obs, deterministic=True, **predict_kwargs)
    ours, state = policy.predict(obs, deterministic=True, **predict_kwargs)
    assert state is None
    assert_same_actions(ours, theirs, "batch")
    for i in range(n_single):
        single = {k: v[i] for k, v in predict_kwargs.items()}
        theirs, _ = model.predict(take(obs, i), deterministic=True, **single)
        ours, _ = policy.predict(take(obs, i), deterministic=True, **single)
        assert_same_actions(ours, theirs, f"single observation {i}")


def _check_probes(bundle, policy) -> None:
    """The probes recorded at export replay to the recorded actions."""
    probes = bundle.probes
    assert probes is not None and "action" in probes
    obs = probes["obs"] if "obs" in probes else {k[4:]: v for k, v in probes.items() if k.startswith("obs.")}
    ours, _ = policy.predict(obs, deterministic=True)
    assert_same_actions(ours, probes["action"], "probes")


@pytest.mark.parametrize(
    "spec", ACTOR_CRITIC_CASES + ACTIVATION_CASES + VALUE_BASED_CASES + OFF_POLICY_ACTOR_CASES + ARS_CASES
)
def test_deterministic_parity(spec, tmp_path):
    model = make_model(spec)
    bundle, policy = roundtrip(model, tmp_path)
    obs = sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=1)
    _check_parity(model, policy, obs)
    _check_probes(bundle, policy)


IMAGE_SPECS = [ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete"), ModelSpec("A2C", "CnnPolicy", obs="rgb")]


@pytest.mark.parametrize("spec", IMAGE_SPECS, ids=str)
def test_image_layouts(spec, tmp_path):
    """Channel-first observations work as well as the env's channel-last ones, single and batched."""
    model = make_model(spec)
    _, policy = roundtrip(model, tmp_path, probes=0)
    obs = sample_obs(OBS_SPACES[spec.obs], 64, seed=2)
    first = np.ascontiguousarray(np.transpose(obs, (0, 3, 1, 2)))
    _check_parity(model, policy, first, n_single=4)
    theirs, _ = model.predict(obs[0], deterministic=True)
    ours, _ = policy.predict(first[0], deterministic=True)
    assert_same_actions(ours, theirs, "channel-first single vs channel-last single")


def _masks(model, n: int, seed: int) -> np.ndarray:
    """Random masks with at least one allowed action per (sub-)action."""
    from sb3_contrib.common.maskable.distributions import make_masked_proba_distribution

    dist = make_masked_proba_distribution(model.action_space)
    sizes = list(getattr(dist, "action_dims", [getattr(dist, "action_dim", 0)]))
    rng = np.random.default_rng(seed)
    parts = []
    for size in sizes:
        part = rng.random((n, size)) < 0.5
        part[np.arange(n), rng.integers(0, size, n)] = True
        parts.append(part)
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("spec", MASKABLE_CASES)
def test_maskable_parity(spec, tmp_path):
    model = make_model(spec)
    bundle, policy = roundtrip(model, tmp_path)
    obs = sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=3)
    masks = _masks(model, N_OBS, seed=4)
    _check_parity(model, policy, obs, action_masks=masks)
    _check_parity(model, policy, obs, n_single=2)  # no masks: every action allowed
    _check_probes(bundle, policy)
    # a mask changes the action somewhere, and only to an allowed one
    ours, _ = policy.predict(obs, deterministic=True, action_masks=masks)
    free, _ = policy.predict(obs, deterministic=True)
    assert not np.array_equal(ours, free)
