"""Acceptance on real published RL Zoo agents (the ``zoo_sample`` fixture, tests/zoo.py: skipped or failed when absent).

Every run imports. Where its env exists here, the bundle's actions equal SB3's own ``predict``
(SB3 loaded with the usual ``custom_objects`` workaround, VecNormalize applied) on observations
from real rollouts, and running the bundle reproduces the published evaluation return.

Tolerance for returns: the difference of means must be within 3 standard errors of the
difference (Welch), or within 5% of the published mean's magnitude, whichever is larger (the
5% absorbs physics changes between gym and gymnasium versions; deterministic policies on
deterministic envs have zero spread).
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import warnings

import numpy as np
import pytest

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.envs import make_env, run_episodes
from zoo import needs_zoo, zoo_files, zoo_params, zoo_sample_path

ZOO = zoo_sample_path()
RUNS = zoo_params([p.parent.relative_to(ZOO).as_posix() for p in zoo_files("*/*/evaluations.npz")])
pytestmark = needs_zoo

ALGOS = {"a2c": "A2C", "ppo": "PPO", "dqn": "DQN", "sac": "SAC", "ddpg": "DDPG", "td3": "TD3",
         "qrdqn": "QRDQN", "ars": "ARS", "trpo": "TRPO", "tqc": "TQC"}  # fmt: skip


def _import(run: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rlport.import_zoo(ZOO / run, probes=64)


@pytest.fixture(scope="module")
def bundles():
    return {run: _import(run) for run in RUNS}


def _env_available(bundle) -> bool:
    try:
        make_env(bundle.env).close()
        return True
    except rlport.RlportError:
        return False


@pytest.mark.parametrize("run", RUNS)
def test_every_run_imports_and_survives_a_round_trip(run, bundles, tmp_path):
    bundle = bundles[run]
    path = bundle.save(tmp_path / "run.rlp")
    policy = rlport.load(path)
    assert policy.bundle.provenance["zoo_run"] == run
    assert "published_return_mean" in policy.bundle.provenance
    obs = policy.bundle.probes
    assert obs is not None


@contextlib.contextmanager
def _gym_shims():
    """For the test's own trusted cross-check only: let real pickle resolve gym-era names."""
    import gymnasium.spaces

    aliases = {"gym": gymnasium, "gym.spaces": gymnasium.spaces}
    for name in ("box", "discrete", "dict", "multi_discrete", "multi_binary", "tuple"):
        aliases[f"gym.spaces.{name}"] = getattr(gymnasium.spaces, name)
    if "numpy.core" not in sys.modules or not hasattr(sys.modules["numpy.core"], "multiarray"):
        aliases["numpy.core"] = np._core
        aliases["numpy.core.multiarray"] = np._core.multiarray
        aliases["numpy.core.numeric"] = np._core.numeric
    saved = {k: sys.modules.get(k) for k in aliases}
    sys.modules.update(aliases)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def _sb3_reference(run: str, env):
    """SB3's own model (custom_objects workaround) and its VecNormalize (trusted unpickling)."""
    import sb3_contrib
    import stable_baselines3

    algo_name = run.split("/")[0]
    algo = getattr(stable_baselines3, ALGOS.get(algo_name, ""), None) or getattr(sb3_contrib, ALGOS[algo_name])
    zip_path = next((ZOO / run).glob("*.zip"))
    constant = lambda _: 0.0  # noqa: E731
    custom = {
        "observation_space": env.observation_space,
        "action_space": env.action_space,
        "lr_schedule": constant,
        "learning_rate": 0.0,
        "clip_range": constant,
        "exploration_schedule": constant,
    }
    model = algo.load(zip_path, custom_objects=custom, device="cpu")
    vecnorm = None
    pkl = zip_path.with_suffix("") / "vecnormalize.pkl"
    if pkl.exists():
        with _gym_shims():
            vecnorm = pickle.loads(pkl.read_bytes())  # noqa: S301 - trusted published file, test-only cross-check
    return model, vecnorm


def _normalize(vecnorm, obs):
    if vecnorm is None or not vecnorm.norm_obs:
        return obs
    rms = vecnorm.obs_rms
    return np.clip((obs - rms.mean) / np.sqrt(rms.var + vecnorm.epsilon), -vecnorm.clip_obs, vecnorm.clip_obs).astype(
        np.float32
    )


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS)
def test_actions_equal_sb3_on_real_rollouts(run, bundles):
    bundle = bundles[run]
    if not _env_available(bundle):
        pytest.skip(f"{bundle.env.id} cannot be created here")
    env = make_env(bundle.env)
    model, vecnorm = _sb3_reference(run, env)
    policy = NumpyPolicy(bundle)
    observations, obs = [], env.reset(seed=0)[0]
    for step in range(2000):
        observations.append(obs)
        action, _ = policy.predict(obs, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs = env.reset(seed=step + 1)[0]
    batch = np.stack(observations)
    theirs, _ = model.predict(_normalize(vecnorm, batch), deterministic=True)
    ours, _ = policy.predict(batch, deterministic=True)
    if np.asarray(theirs).dtype.kind == "f":
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    else:
        assert np.array_equal(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS)
def test_running_the_bundle_reproduces_the_published_return(run, bundles):
    bundle = bundles[run]
    if not _env_available(bundle):
        pytest.skip(f"{bundle.env.id} cannot be created here")
    prov = bundle.provenance
    episodes = 10
    stats = run_episodes(NumpyPolicy(bundle), make_env(bundle.env), episodes, seed=0)
    published, spread, m = prov["published_return_mean"], prov["published_return_std"], prov["published_episodes"]
    standard_error = np.sqrt(stats.std_return**2 / episodes + spread**2 / m)
    tolerance = max(3 * standard_error, 0.05 * abs(published))
    assert abs(stats.mean_return - published) <= tolerance, (
        f"{run}: {stats.mean_return:.1f} ± {stats.std_return:.1f} over {episodes} episodes vs published "
        f"{published:.1f} ± {spread:.1f} (tolerance {tolerance:.1f})"
    )


def test_walker_keeps_its_time_feature_and_maps_to_todays_mujoco(bundles):
    run = "ppo/Walker2d-v3_1"
    if run not in bundles:
        pytest.skip("Walker2d run not in the sample")
    bundle = bundles[run]
    assert [w.name for w in bundle.env.wrappers] == ["time_feature"]
    assert bundle.observation_space.shape == (18,)
    assert bundle.env.id in ("Walker2d-v3", "Walker2d-v4")
    assert any(node.op == "normalize" for node in bundle.graph.preprocess)


def test_lunar_lander_maps_to_v3_with_a_warning():
    run = "dqn/LunarLander-v2_1"
    if run not in RUNS:
        pytest.skip("LunarLander run not in the sample")
    with pytest.warns(UserWarning, match="LunarLander-v3"):
        bundle = rlport.import_zoo(ZOO / run, probes=0)
    assert bundle.env.id == "LunarLander-v3"
    assert bundle.provenance["zoo_env_id"] == "LunarLander-v2"


def test_rlport_run_on_an_imported_run_matches_the_published_return(bundles, tmp_path, capsys):
    import json

    from rlport.cli.main import main

    run = "ppo/CartPole-v1_1"
    if run not in bundles:
        pytest.skip("CartPole run not in the sample")
    path = bundles[run].save(tmp_path / "cartpole.rlp")
    assert main(["run", str(path), "--episodes", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mean_return"] == pytest.approx(bundles[run].provenance["published_return_mean"], rel=0.05)


def _small(run: str) -> dict:
    """Rollout and replay sizes small enough for a test (the recorded ones stand otherwise)."""
    algo = run.split("/")[0]
    if algo in ("ppo", "a2c", "trpo"):
        return {"n_steps": 32, "batch_size": 32} if algo != "a2c" else {"n_steps": 8}
    if algo in ("sac", "ddpg", "td3", "dqn", "qrdqn", "tqc", "her"):
        return {"buffer_size": 2_000, "learning_starts": 0}
    return {"n_delta": 2, "n_top": 2} if algo == "ars" else {}


def _saved_variables(run: str) -> dict:
    """The run's SB3 torch variables, read by torch itself (``weights_only``: plain tensors)."""
    import io
    import zipfile

    import torch

    with zipfile.ZipFile(next((ZOO / run).glob("*.zip"))) as archive:
        names = [n for n in ("pytorch_variables.pth", "tensors.pth") if n in archive.namelist()]
        return torch.load(io.BytesIO(archive.read(names[0])), map_location="cpu", weights_only=True) if names else {}


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS)
def test_to_sb3_rebuilds_every_run_with_its_hyperparameters_and_training_resumes(run, tmp_path):
    import torch

    from rlport.bundle.spaces import sample_observations
    from rlport.frameworks.zoo.run import read_zoo_yaml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = rlport.import_zoo(ZOO / run, probes=0, include_critic=True, fingerprint=False)
        model = rlport.to_sb3(bundle.save(tmp_path / "run.rlp"), **_small(run))
    policy = NumpyPolicy(bundle)
    obs = sample_observations(bundle.observation_space, 64, np.random.default_rng(0))
    venv = model.get_vec_normalize_env()
    if bundle.source.get("vec_normalize") and _env_available(bundle):
        assert venv is not None, "the run's VecNormalize statistics were not put back"
    theirs, _ = model.predict(venv.normalize_obs(obs) if venv is not None else obs, deterministic=True)
    if venv is not None or not bundle.source.get("vec_normalize"):
        ours, _ = policy.predict(obs, deterministic=True)
        np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), theirs, atol=1e-5)
    for name, value in _saved_variables(run).items():  # the learned entropy coefficient of SAC/HER runs
        if getattr(model, name) is not None and getattr(model, name).requires_grad:
            assert torch.equal(getattr(model, name).detach().cpu(), value), name
    config = read_zoo_yaml(next((ZOO / run).glob("*/config.yml")))
    for key in ("gamma", "learning_rate", "ent_coef", "n_epochs", "gae_lambda", "tau", "target_update_interval"):
        value = config.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            value = float(value[4:])
        if isinstance(value, (int, float)) and hasattr(model, key) and not callable(getattr(model, key)):
            assert getattr(model, key) == pytest.approx(value), f"{key}: {getattr(model, key)} vs config {value}"
    if model.get_env() is None:
        return
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(200 if run.split("/")[0] != "ars" else 2_000)
    assert any(not torch.equal(v, before[k]) for k, v in model.policy.state_dict().items()), "learn() changed nothing"


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS)
def test_export_sb3_makes_every_run_loadable_by_todays_sb3(run, tmp_path):
    """The originals need gym and ``custom_objects`` under SB3 2.x; the exported files need neither."""
    import pickle as trusted  # the files were just written by this test

    import sb3_contrib
    import stable_baselines3

    from rlport.bundle.spaces import sample_observations
    from rlport.frameworks.sb3.env import spaces_only_env
    from rlport.frameworks.sb3.to_sb3 import export_sb3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = rlport.import_zoo(ZOO / run, probes=0, include_critic=True, fingerprint=False)
        paths = export_sb3(bundle, tmp_path / "model.zip")
    name = bundle.source["algorithm"]
    algo = getattr(stable_baselines3, name, None) or getattr(sb3_contrib, name)
    her = "HerReplayBuffer" in str(bundle.source["hyperparameters"].get("replay_buffer_class"))
    assert her == run.startswith("her/"), "the HER replay buffer was not recorded"
    env = spaces_only_env(bundle) if her else None  # SB3 loads HER models only with an env, as with its own files
    model = algo.load(paths[0], env=env, device="cpu")
    assert (type(getattr(model, "replay_buffer", None)).__name__ == "HerReplayBuffer") == her
    obs = sample_observations(bundle.observation_space, 64, np.random.default_rng(1))
    if len(paths) > 1:
        vecnorm = trusted.loads(paths[1].read_bytes())  # noqa: S301
        assert vecnorm.norm_obs == bool(bundle.source["vec_normalize"]["norm_obs"])
        obs = vecnorm.normalize_obs(obs) if vecnorm.norm_obs else obs
    ours, _ = NumpyPolicy(bundle).predict(
        sample_observations(bundle.observation_space, 64, np.random.default_rng(1)), deterministic=True
    )
    theirs, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), theirs, atol=1e-5)
