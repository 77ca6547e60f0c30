"""``deterministic=False``: seeded, reproducible sampling from SB3's distribution family.

Statistical checks use fixed seeds and tolerances of about four standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sb3_models import OBS_SPACES, ModelSpec, assert_same_actions, make_model, roundtrip, sample_obs, take

N_SAMPLES = 20_000


def _repeat(obs, n: int):
    """One observation repeated ``n`` times along a batch axis."""
    if isinstance(obs, dict):
        return {key: np.repeat(value[None], n, axis=0) for key, value in obs.items()}
    return np.repeat(np.asarray(obs)[None], n, axis=0)


def _obs_tensor(model, obs):
    tensor, _ = model.policy.obs_to_tensor(obs)
    return tensor


STOCHASTIC_SPECS = [
    ModelSpec("PPO", action="discrete"),
    ModelSpec("A2C", action="box"),
    ModelSpec("TRPO", action="multidiscrete"),
    ModelSpec("PPO", action="multibinary"),
    ModelSpec("PPO", action="box2d", kwargs={"use_sde": True}),
    ModelSpec("SAC", action="box"),
    ModelSpec("TQC", "MultiInputPolicy", obs="dict", action="box", kwargs={"use_sde": True}),
    ModelSpec("CrossQ", action="box"),
    ModelSpec("QRDQN", action="discrete"),
    ModelSpec("MaskablePPO", action="multidiscrete"),
    ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="discrete"),
]


@pytest.mark.parametrize("spec", STOCHASTIC_SPECS, ids=str)
def test_sampling_is_seeded(spec, tmp_path):
    """Same seed -> same actions; another seed, or the next call, -> other actions; not the mode."""
    model = make_model(spec)
    if hasattr(model, "exploration_rate"):
        model.exploration_rate = 0.5
    _, first = roundtrip(model, tmp_path, seed=3, probes=0)
    _, again = roundtrip(model, tmp_path, seed=3, probes=0)
    _, other = roundtrip(model, tmp_path, seed=4, probes=0)
    obs = sample_obs(OBS_SPACES[spec.obs], 256, seed=9)
    a1, _ = first.predict(obs, deterministic=False)
    a2, _ = again.predict(obs, deterministic=False)
    b1, _ = other.predict(obs, deterministic=False)
    mode, _ = first.predict(obs, deterministic=True)
    assert_same_actions(a1, a2, "same seed")
    assert not np.array_equal(a1, b1), "another seed gives the same actions"
    assert not np.array_equal(a1, mode), "sampled actions equal the mode"
    assert not np.array_equal(first.predict(obs, deterministic=False)[0], a1), "the generator does not advance"
    first.seed(3)
    assert_same_actions(first.predict(obs, deterministic=False)[0], a1, "after reseeding")
    sb3_sample, _ = model.predict(obs, deterministic=False)
    assert a1.shape == sb3_sample.shape and a1.dtype.kind == sb3_sample.dtype.kind


@pytest.mark.parametrize(
    "spec",
    [ModelSpec("TD3"), ModelSpec("DDPG", action="box2d"), ModelSpec("ARS", "LinearPolicy", action="discrete"),
     ModelSpec("ARS", "MlpPolicy", action="box")],
    ids=str,
)  # fmt: skip
def test_deterministic_actors_ignore_sampling(spec, tmp_path):
    """TD3, DDPG and ARS act deterministically in SB3's predict whatever ``deterministic`` says."""
    model = make_model(spec)
    _, policy = roundtrip(model, tmp_path, seed=0, probes=0)
    obs = sample_obs(OBS_SPACES[spec.obs], 500, seed=10)
    theirs, _ = model.predict(obs, deterministic=False)
    ours, _ = policy.predict(obs, deterministic=False)
    assert_same_actions(ours, theirs, "deterministic=False")


def test_gaussian_statistics(tmp_path):
    """Diagonal Gaussian: empirical mean and std match SB3's distribution for the same observation."""
    model = make_model(ModelSpec("PPO", action="wide"))
    _, policy = roundtrip(model, tmp_path, seed=11, probes=0)
    obs = sample_obs(OBS_SPACES["box"], 3, seed=12)
    for i in range(3):
        dist = model.policy.get_distribution(_obs_tensor(model, take(obs, i))).distribution
        mean, std = dist.mean[0].detach().numpy(), dist.stddev[0].detach().numpy()
        samples, _ = policy.predict(_repeat(take(obs, i), N_SAMPLES), deterministic=False)
        assert np.all(np.abs(mean) + 5 * std < 100), "the test needs actions that are never clipped"
        assert np.all(np.abs(samples.mean(axis=0) - mean) < 4 * std / np.sqrt(N_SAMPLES) + 1e-4)
        np.testing.assert_allclose(samples.std(axis=0), std, rtol=0.03)


def test_gsde_statistics(tmp_path):
    """gSDE: one exploration matrix per call; over calls the action is N(mean, latent^2 @ std^2)."""
    n = 4000
    model = make_model(ModelSpec("PPO", action="wide", kwargs={"use_sde": True}, policy_kwargs={"full_std": False}))
    _, policy = roundtrip(model, tmp_path, seed=13, probes=0)
    obs = sample_obs(OBS_SPACES["box"], 1, seed=14)[0]
    dist = model.policy.get_distribution(_obs_tensor(model, obs)).distribution
    mean, std = dist.mean[0].detach().numpy(), dist.stddev[0].detach().numpy()
    pair, _ = policy.predict(_repeat(obs, 2), deterministic=False)
    assert np.array_equal(pair[0], pair[1]), "one exploration matrix per call, as SB3"
    samples = np.stack([policy.predict(obs, deterministic=False)[0] for _ in range(n)])
    assert np.all(np.abs(mean) + 5 * std < 100), "the test needs actions that are never clipped"
    assert np.all(np.abs(samples.mean(axis=0) - mean) < 4 * std / np.sqrt(n))
    np.testing.assert_allclose(samples.std(axis=0), std, rtol=0.06)


@pytest.mark.parametrize(
    "spec", [ModelSpec("SAC", action="unit"), ModelSpec("TQC", action="unit", kwargs={"use_sde": True})], ids=str
)
def test_squashed_gaussian_statistics(spec, tmp_path):
    """Squashed Gaussian: our samples and SB3's own samples agree in mean and spread."""
    model = make_model(spec)
    _, policy = roundtrip(model, tmp_path, seed=15, probes=0)
    obs = sample_obs(OBS_SPACES["box"], 1, seed=16)[0]
    ours, _ = policy.predict(_repeat(obs, N_SAMPLES), deterministic=False)
    torch.manual_seed(17)  # SB3 samples with torch's global generator
    if spec.kwargs.get("use_sde"):
        ours = np.stack([policy.predict(obs, deterministic=False)[0] for _ in range(4000)])
        theirs = []
        for _ in range(4000):
            model.policy.reset_noise()
            theirs.append(model.predict(obs, deterministic=False)[0])
        theirs = np.stack(theirs)
    else:
        theirs, _ = model.predict(_repeat(obs, N_SAMPLES), deterministic=False)
    assert np.all(np.abs(ours) <= 1.0)
    tolerance = 5 * np.sqrt(2.0 / len(ours))  # actions lie in [-1, 1], so every std is at most 1
    assert np.all(np.abs(ours.mean(axis=0) - theirs.mean(axis=0)) < tolerance)
    assert np.all(np.abs(ours.std(axis=0) - theirs.std(axis=0)) < tolerance)
    assert ours.std(axis=0).min() > 0.01


def _frequencies(actions: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(actions.astype(np.int64), minlength=n) / len(actions)


def test_categorical_statistics(tmp_path):
    """Categorical and multi-categorical: frequencies match SB3's softmax probabilities."""
    tolerance = 4 * 0.5 / np.sqrt(N_SAMPLES)
    for spec in (ModelSpec("PPO", action="discrete"), ModelSpec("A2C", action="multidiscrete")):
        model = make_model(spec)
        _, policy = roundtrip(model, tmp_path, seed=18, probes=0)
        obs = sample_obs(OBS_SPACES["box"], 1, seed=19)[0]
        dist = model.policy.get_distribution(_obs_tensor(model, obs)).distribution
        probs = [d.probs[0].detach().numpy() for d in (dist if isinstance(dist, list) else [dist])]
        samples, _ = policy.predict(_repeat(obs, N_SAMPLES), deterministic=False)
        samples = samples.reshape(N_SAMPLES, -1)
        for k, p in enumerate(probs):
            np.testing.assert_allclose(_frequencies(samples[:, k], len(p)), p, rtol=0, atol=tolerance)


def test_bernoulli_statistics(tmp_path):
    model = make_model(ModelSpec("TRPO", action="multibinary"))
    _, policy = roundtrip(model, tmp_path, seed=20, probes=0)
    obs = sample_obs(OBS_SPACES["box"], 1, seed=21)[0]
    probs = model.policy.get_distribution(_obs_tensor(model, obs)).distribution.probs[0].detach().numpy()
    samples, _ = policy.predict(_repeat(obs, N_SAMPLES), deterministic=False)
    assert set(np.unique(samples)) <= {0.0, 1.0}
    np.testing.assert_allclose(samples.mean(axis=0), probs, rtol=0, atol=4 * 0.5 / np.sqrt(N_SAMPLES))


@pytest.mark.parametrize("action", ["discrete", "multidiscrete", "multibinary"])
def test_masked_sampling_statistics(action, tmp_path):
    """MaskablePPO: masked-out actions are never drawn; the others follow SB3's masked probabilities."""
    from sb3_contrib.common.maskable.distributions import make_masked_proba_distribution

    model = make_model(ModelSpec("MaskablePPO", action=action))
    _, policy = roundtrip(model, tmp_path, seed=22, probes=0)
    obs = sample_obs(OBS_SPACES["box"], 1, seed=23)[0]
    dims = make_masked_proba_distribution(model.action_space)
    sizes = list(getattr(dims, "action_dims", [getattr(dims, "action_dim", 0)]))
    mask = np.ones(sum(sizes), dtype=bool)
    mask[np.cumsum([0, *sizes[:-1]])] = False  # the first choice of every (sub-)action is forbidden
    dist = model.policy.get_distribution(_obs_tensor(model, obs), action_masks=mask[None])
    parts = dist.distributions if hasattr(dist, "distributions") else [dist.distribution]
    probs = [d.probs[0].detach().numpy() for d in parts]
    samples, _ = policy.predict(_repeat(obs, N_SAMPLES), deterministic=False, action_masks=_repeat(mask, N_SAMPLES))
    samples = samples.reshape(N_SAMPLES, -1)
    for k, p in enumerate(probs):
        freq = _frequencies(samples[:, k], len(p))
        assert freq[0] == 0.0
        np.testing.assert_allclose(freq, p, rtol=0, atol=4 * 0.5 / np.sqrt(N_SAMPLES))


@pytest.mark.parametrize("algo", ["DQN", "QRDQN"])
def test_epsilon_greedy_rate(algo, tmp_path):
    """DQN and QR-DQN explore with the model's exploration rate, uniformly over the actions."""
    model = make_model(ModelSpec(algo, action="discrete"))
    model.exploration_rate = 0.3
    bundle, policy = roundtrip(model, tmp_path, seed=24, probes=0)
    obs = sample_obs(OBS_SPACES["box"], 1, seed=25)[0]
    greedy, _ = model.predict(obs, deterministic=True)
    samples, _ = policy.predict(_repeat(obs, N_SAMPLES), deterministic=False)
    freq = _frequencies(samples, 4)
    expected = np.full(4, 0.3 / 4)
    expected[greedy] += 0.7
    np.testing.assert_allclose(freq, expected, rtol=0, atol=4 * 0.5 / np.sqrt(N_SAMPLES))
    # SB3 draws one coin per call (numpy's global generator) for the whole batch; the per-row rate is the same
    saved = np.random.get_state()
    np.random.seed(27)
    model.action_space.seed(28)
    calls = np.array([model.predict(obs, deterministic=False)[0] != greedy for _ in range(2000)])
    np.random.set_state(saved)
    assert abs(calls.mean() - 0.3 * 3 / 4) < 4 * 0.5 / np.sqrt(2000)
