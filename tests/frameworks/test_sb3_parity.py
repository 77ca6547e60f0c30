"""Round-trip parity with SB3's own ``model.predict``: export, save, load, equal actions.

Deterministic actions must be identical for discrete spaces and within 1e-5 for Box spaces, on
2000+ observations per policy, as a batch and one at a time, for every algorithm, policy and
space combination below.
"""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from sb3_models import (
    OBS_SPACES,
    ModelSpec,
    assert_same_actions,
    make_model,
    roundtrip,
    sample_obs,
    take,
)

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
    _case(ModelSpec("A2C", obs="box64", action="box64")),
    _case(ModelSpec("TRPO", obs="multibinary2d", action="discrete")),
    _case(ModelSpec("PPO", "MultiInputPolicy", obs="dict_mixed", action="multibinary")),
    _case(ModelSpec("A2C", policy_kwargs={"share_features_extractor": False}), id="A2C-unshared-extractor"),
    _case(
        ModelSpec("PPO", action="discrete", policy_kwargs={"net_arch": {"pi": [16, 8], "vf": [12]}}), id="PPO-dict-arch"
    ),
    _case(ModelSpec("TRPO", policy_kwargs={"net_arch": {"pi": [8], "vf": [16, 16]}}), id="TRPO-dict-arch"),
    _case(
        ModelSpec("A2C", action="multidiscrete", policy_kwargs={"net_arch": {"pi": [], "vf": [8]}}),
        id="A2C-empty-pi-arch",
    ),
    # images (channel-last env observations, transposed by SB3) and dict observations
    _case(ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete")),
    _case(ModelSpec("A2C", "CnnPolicy", obs="rgb", action="box")),
    _case(ModelSpec("TRPO", "CnnPolicy", obs="rgb", action="multidiscrete")),
    _case(
        ModelSpec(
            "PPO", "CnnPolicy", obs="rgb", action="multibinary", policy_kwargs={"share_features_extractor": False}
        ),
        id="PPO-CnnPolicy-unshared-extractor",
    ),
    _case(ModelSpec("A2C", "CnnPolicy", obs="rgb_first", action="discrete")),
    _case(
        ModelSpec("PPO", "CnnPolicy", obs="gray", action="box", policy_kwargs={"normalize_images": False}),
        id="PPO-CnnPolicy-raw-pixels",
    ),
    _case(ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="box")),
    _case(ModelSpec("A2C", "MultiInputPolicy", obs="dict", action="discrete")),
    _case(ModelSpec("TRPO", "MultiInputPolicy", obs="dict", action="multibinary")),
    _case(
        ModelSpec(
            "PPO",
            "MultiInputPolicy",
            obs="dict",
            action="multidiscrete",
            policy_kwargs={"share_features_extractor": False},
        ),
        id="PPO-MultiInputPolicy-unshared-extractor",
    ),
    # generalised state-dependent exploration
    _case(ModelSpec("PPO", kwargs={"use_sde": True}), id="PPO-gsde"),
    _case(ModelSpec("A2C", kwargs={"use_sde": True}, policy_kwargs={"squash_output": True}), id="A2C-gsde-squash"),
    _case(
        ModelSpec(
            "PPO", action="box2d", kwargs={"use_sde": True}, policy_kwargs={"squash_output": True, "use_expln": True}
        ),
        id="PPO-gsde-squash-expln",
    ),
    _case(ModelSpec("TRPO", kwargs={"use_sde": True}, policy_kwargs={"full_std": False}), id="TRPO-gsde-not-full-std"),
]

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
    _case(
        ModelSpec("SAC", kwargs={"use_sde": True}, policy_kwargs={"use_expln": True, "clip_mean": 0.5}),
        id="SAC-gsde-expln",
    ),
    _case(ModelSpec("SAC", "MultiInputPolicy", obs="dict")),
    _case(
        ModelSpec("SAC", obs="box64", action="box64", policy_kwargs={"net_arch": {"pi": [8], "qf": [16]}}),
        id="SAC-dict-arch",
    ),
    _case(
        ModelSpec("TD3", "CnnPolicy", obs="rgb", policy_kwargs={"share_features_extractor": True}),
        id="TD3-CnnPolicy-shared-extractor",
    ),
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
    _case(ModelSpec("CrossQ", policy_kwargs={"batch_norm": False}), id="CrossQ-no-batch-norm"),
    _case(
        ModelSpec("CrossQ", obs="multibinary", policy_kwargs={"batch_norm_eps": 0.1, "activation_fn": nn.Tanh}),
        id="CrossQ-eps",
    ),
    _case(ModelSpec("CrossQ", kwargs={"use_sde": True}), id="CrossQ-gsde"),
]

ARS_CASES = [
    _case(ModelSpec("ARS", "LinearPolicy", action="box")),
    _case(ModelSpec("ARS", "LinearPolicy", action="discrete")),
    _case(
        ModelSpec("ARS", "LinearPolicy", action="box2d", policy_kwargs={"with_bias": True}), id="ARS-LinearPolicy-bias"
    ),
    _case(ModelSpec("ARS", "MlpPolicy", action="box")),
    _case(ModelSpec("ARS", "MlpPolicy", action="discrete", policy_kwargs={"activation_fn": nn.Tanh})),
    _case(ModelSpec("ARS", "MlpPolicy", action="box", policy_kwargs={"squash_output": False}), id="ARS-MlpPolicy-clip"),
    _case(ModelSpec("ARS", "LinearPolicy", obs="discrete", action="box")),
]

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
    rows = np.unique(np.asarray(theirs).reshape(len(theirs), -1), axis=0)
    assert len(rows) >= min(3, len(theirs)), "the policy acts (almost) constantly: a weak test"
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


def _mask_sizes(model) -> list[int]:
    """The number of choices of each (sub-)action, as MaskablePPO lays out its masks."""
    from sb3_contrib.common.maskable.distributions import make_masked_proba_distribution

    dist = make_masked_proba_distribution(model.action_space)
    return [int(n) for n in getattr(dist, "action_dims", [getattr(dist, "action_dim", 0)])]


def _masks(model, n: int, seed: int) -> np.ndarray:
    """Random masks with at least one allowed action per (sub-)action."""
    sizes = _mask_sizes(model)
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
    offsets = np.cumsum([0, *_mask_sizes(model)[:-1]])
    chosen = offsets + np.asarray(ours).reshape(N_OBS, -1).astype(np.int64)
    assert np.take_along_axis(masks, chosen, axis=1).all()


# ---- recurrent policies ------------------------------------------------------------------

RECURRENT_CASES = [
    _case(ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box"), id="lstm-box-1-layer"),
    _case(
        ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="discrete", policy_kwargs={"n_lstm_layers": 2}),
        id="lstm-discrete-2-layers",
    ),
    _case(
        ModelSpec(
            "RecurrentPPO",
            "MlpLstmPolicy",
            action="multidiscrete",
            policy_kwargs={"shared_lstm": True, "enable_critic_lstm": False, "n_lstm_layers": 2},
        ),
        id="lstm-shared",
    ),
    _case(
        ModelSpec(
            "RecurrentPPO", "MlpLstmPolicy", obs="discrete", action="box2d", policy_kwargs={"enable_critic_lstm": False}
        ),
        id="lstm-no-critic-lstm",
    ),
    _case(ModelSpec("RecurrentPPO", "MultiInputLstmPolicy", obs="dict", action="discrete"), id="lstm-dict", slow=True),
    _case(ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box", kwargs={"use_sde": True}), id="lstm-gsde"),
    _case(
        ModelSpec(
            "RecurrentPPO", "CnnLstmPolicy", obs="gray", action="box", policy_kwargs={"share_features_extractor": False}
        ),
        id="lstm-cnn-unshared",
        slow=True,
    ),
]


@pytest.mark.parametrize("spec", RECURRENT_CASES)
def test_recurrent_parity(spec, tmp_path):
    """Step several envs with the state carried and random episode starts; actions and states match."""
    n_envs, n_steps = 4, 500
    model = make_model(spec)
    bundle, policy = roundtrip(model, tmp_path)
    assert policy.is_recurrent
    obs = sample_obs(OBS_SPACES[spec.obs], n_envs * n_steps, seed=5)
    starts = np.random.default_rng(6).random((n_steps, n_envs)) < 0.1
    starts[0] = True
    state_theirs = state_ours = None
    for t in range(n_steps):
        step = take(obs, slice(t * n_envs, (t + 1) * n_envs))
        kwargs = {"episode_start": starts[t], "deterministic": True}
        theirs, state_theirs = model.predict(step, state=state_theirs, **kwargs)
        ours, state_ours = policy.predict(step, state=state_ours, **kwargs)
        assert_same_actions(ours, theirs, f"step {t}")
        assert len(ours) == n_envs and len(state_ours) == len(state_theirs) == 2
        for mine, sb3 in zip(state_ours, state_theirs, strict=True):
            assert mine.shape == sb3.shape
            np.testing.assert_allclose(mine, sb3, rtol=0, atol=1e-5, err_msg=f"state at step {t}")
    _check_recurrent_probes(bundle, policy)
    # the first step from no state at all equals SB3's, and one env alone works too
    theirs, _ = model.predict(take(obs, 0), deterministic=True)
    ours, state = policy.predict(take(obs, 0), deterministic=True)
    assert_same_actions(ours, theirs, "single observation, no state")
    assert state[0].shape[1] == 1


def _check_recurrent_probes(bundle, policy) -> None:
    """Recurrent probes are one env's episode stream: replay step by step, carrying the state."""
    probes = bundle.probes
    assert bundle.probe_info.sequential
    obs = probes["obs"] if "obs" in probes else {k[4:]: v for k, v in probes.items() if k.startswith("obs.")}
    state = None
    for i, start in enumerate(probes["episode_start"]):
        step = take(obs, slice(i, i + 1))
        action, state = policy.predict(step, state=state, episode_start=np.array([start]), deterministic=True)
        assert_same_actions(action[0], probes["action"][i], f"probe {i}")


# ---- VecNormalize ------------------------------------------------------------------------


def _vec_normalize(obs_space, action_space, seed: int, **kwargs):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from sb3_models import SpacesEnv

    venv = DummyVecEnv([lambda: SpacesEnv(obs_space, action_space)])
    vec_normalize = VecNormalize(venv, norm_reward=False, **kwargs)
    rng = np.random.default_rng(seed)
    rms = vec_normalize.obs_rms
    for stats in rms.values() if isinstance(rms, dict) else [rms]:
        stats.mean = rng.normal(0.0, 1.0, stats.mean.shape)
        stats.var = rng.uniform(0.05, 3.0, stats.var.shape)
    vec_normalize.training = False
    return vec_normalize


VEC_NORMALIZE_CASES = [
    pytest.param(ModelSpec("PPO", action="box"), {"clip_obs": 1.5}, id="PPO-box-obs"),
    pytest.param(ModelSpec("DQN", obs="box2d", action="discrete"), {}, id="DQN-2d-box-obs"),
    pytest.param(
        ModelSpec("SAC", "MultiInputPolicy", obs="dict", action="box"), {"norm_obs_keys": ["vec"]}, id="SAC-dict-subset"
    ),
    pytest.param(
        ModelSpec("PPO", "MultiInputPolicy", obs="dict_vec", action="discrete"),
        {"norm_obs_keys": []},
        id="PPO-dict-no-key",
    ),
    pytest.param(
        ModelSpec("RecurrentPPO", "MultiInputLstmPolicy", obs="dict_vec", action="discrete"),
        {"norm_obs_keys": ["vel"], "clip_obs": 2.0},
        id="RecurrentPPO-dict-subset",
    ),
]


@pytest.mark.parametrize(("spec", "vn_kwargs"), VEC_NORMALIZE_CASES)
def test_vec_normalize_parity(spec, vn_kwargs, tmp_path):
    """bundle.predict(raw) equals model.predict(vec_normalize.normalize_obs(raw))."""
    from sb3_models import ACTION_SPACES

    obs_space = OBS_SPACES[spec.obs]
    vec_normalize = _vec_normalize(obs_space, ACTION_SPACES[spec.action], seed=7, **vn_kwargs)
    model = make_model(spec, env=vec_normalize)
    bundle, policy = roundtrip(model, tmp_path, vec_normalize=vec_normalize)
    raw = sample_obs(obs_space, N_OBS, seed=8)
    if spec.algo == "RecurrentPPO":
        n = len(next(iter(raw.values())))
        starts = np.ones(n, dtype=bool)  # a fresh episode per row: comparable in one batch
        theirs, _ = model.predict(vec_normalize.normalize_obs(raw), episode_start=starts, deterministic=True)
        ours, _ = policy.predict(raw, episode_start=starts, deterministic=True)
        assert_same_actions(ours, theirs, "batch")
        _check_recurrent_probes(bundle, policy)
        return
    batch, _ = model.predict(vec_normalize.normalize_obs(raw), deterministic=True)
    ours, _ = policy.predict(raw, deterministic=True)
    assert_same_actions(ours, batch, "batch")
    for i in range(N_SINGLE):
        theirs, _ = model.predict(vec_normalize.normalize_obs(take(raw, i)), deterministic=True)
        ours, _ = policy.predict(take(raw, i), deterministic=True)
        assert_same_actions(ours, theirs, f"single observation {i}")
    _check_probes(bundle, policy)
    # the statistics matter (when some key is normalised): without them the actions differ
    unnormalized, _ = model.predict(raw, deterministic=True)
    assert np.array_equal(unnormalized, batch) == (vn_kwargs.get("norm_obs_keys") == [])


# ---- trained, saved and reloaded models --------------------------------------------------

TRAINED_SPECS = [
    ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="multidiscrete"),
    ModelSpec("CrossQ", kwargs={"batch_size": 16, "learning_starts": 16}),
    ModelSpec("DQN", action="discrete", kwargs={"batch_size": 16, "learning_starts": 16, "train_freq": 1}),
    ModelSpec("MaskablePPO", action="discrete"),
    ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box"),
]


@pytest.mark.parametrize("spec", TRAINED_SPECS, ids=str)
def test_trained_and_reloaded_models(spec, tmp_path):
    """A few learning steps, then ``save``/``load``: both the live and the reloaded model export exactly."""
    from sb3_models import ALGOS

    model = make_model(spec)
    model.learn(48)
    model.save(tmp_path / "model.zip")
    reloaded = ALGOS[spec.algo].load(tmp_path / "model.zip", device="cpu")
    obs = sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=26)
    recurrent = {"episode_start": np.ones(N_OBS, dtype=bool)} if spec.algo == "RecurrentPPO" else {}
    for name, candidate in (("live", model), ("reloaded", reloaded)):
        bundle, policy = roundtrip(candidate, tmp_path)
        theirs, _ = candidate.predict(obs, deterministic=True, **recurrent)
        ours, _ = policy.predict(obs, deterministic=True, **recurrent)
        assert_same_actions(ours, theirs, name)
