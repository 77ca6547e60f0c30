"""Reading ``vecnormalize.pkl`` without pickle: files saved today, the zoo's old files, hostile ones."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from rlport.errors import BundleError, UnsafeFileError
from rlport.frameworks.sb3.vecnormalize import (
    RunningStats,
    VecNormalizeStats,
    read_vecnormalize,
    vec_normalize_settings,
)
from zoo import needs_zoo, zoo_files, zoo_params, zoo_sample_path

ZOO = zoo_sample_path()
ZOO_FILES = zoo_params([pytest.param(p, id=p.parts[-4]) for p in zoo_files("*/*/*/vecnormalize.pkl")])


class DictEnv(gym.Env):
    observation_space = spaces.Dict(
        {"pos": spaces.Box(-1, 1, (3,)), "img": spaces.Box(-5, 5, (2, 2)), "mode": spaces.Discrete(3)}
    )
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def _randomise(rms, rng):
    rms.mean = rng.normal(size=rms.mean.shape)
    rms.var = rng.uniform(0.1, 3.0, size=rms.var.shape)
    rms.count = float(rng.integers(10, 10_000))


def saved(venv: VecNormalize, tmp_path: Path, step: bool = True) -> bytes:
    """``VecNormalize.save``'s bytes; ``step=False`` keeps statistics that stepping would break."""
    if step:
        venv.reset()
        venv.step(np.array([venv.action_space.sample()]))
    path = tmp_path / "vecnormalize.pkl"
    venv.save(str(path))
    return path.read_bytes()


def test_box_observations_saved_today(tmp_path):
    rng = np.random.default_rng(0)
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), clip_obs=7.5, gamma=0.95, epsilon=1e-6)
    _randomise(venv.obs_rms, rng)
    _randomise(venv.ret_rms, rng)
    venv.training = False
    stats = read_vecnormalize(saved(venv, tmp_path), what="vecnormalize.pkl")
    assert isinstance(stats, VecNormalizeStats) and isinstance(stats.obs_rms, RunningStats)
    np.testing.assert_array_equal(stats.obs_mean, venv.obs_rms.mean)
    np.testing.assert_array_equal(stats.obs_rms.var, venv.obs_rms.var)
    assert stats.obs_mean.dtype == np.float64 and stats.obs_count == venv.obs_rms.count
    assert (stats.clip_obs, stats.clip_reward, stats.gamma, stats.epsilon) == (7.5, 10.0, 0.95, 1e-6)
    assert (stats.norm_obs, stats.norm_reward, stats.training, stats.norm_obs_keys) == (True, True, False, None)
    assert stats.ret_mean == pytest.approx(float(venv.ret_rms.mean)) and stats.ret_var == float(venv.ret_rms.var)
    assert stats.ret_count == venv.ret_rms.count
    assert vec_normalize_settings(stats) == vec_normalize_settings(venv)  # read file and live wrapper alike


def test_dict_observations_with_norm_obs_keys(tmp_path):
    rng = np.random.default_rng(1)
    venv = VecNormalize(DummyVecEnv([DictEnv]), norm_obs_keys=["pos", "img"], norm_reward=False)
    for rms in venv.obs_rms.values():
        _randomise(rms, rng)
    stats = read_vecnormalize(saved(venv, tmp_path), what="t")
    assert stats.norm_obs_keys == ["pos", "img"] and set(stats.obs_rms) == {"pos", "img"}
    for key in ("pos", "img"):
        np.testing.assert_array_equal(stats.obs_rms[key].mean, venv.obs_rms[key].mean)
        np.testing.assert_array_equal(stats.obs_var[key], venv.obs_rms[key].var)
    assert stats.obs_rms["img"].mean.shape == (2, 2) and stats.norm_reward is False


def test_files_from_before_norm_obs_keys_normalise_every_key(tmp_path):
    """SB3 < 1.3 had no norm_obs_keys; SB3's __setstate__ then uses every key of the Dict space."""
    venv = VecNormalize(DummyVecEnv([lambda: _BoxDictEnv()]))
    del venv.norm_obs_keys
    stats = read_vecnormalize(saved(venv, tmp_path, step=False), what="t")
    assert stats.norm_obs_keys == ["a", "b"]


class _BoxDictEnv(DictEnv):
    observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Box(-1, 1, (1,))})


def test_norm_obs_false_has_no_statistics(tmp_path):
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), norm_obs=False)
    stats = read_vecnormalize(saved(venv, tmp_path), what="t")
    assert stats.norm_obs is False and stats.obs_rms is None and stats.obs_mean is None


# ---- the zoo's files, checked against a trusted unpickling -------------------------------------


class TrustedUnpickler(pickle.Unpickler):
    """Real pickle (test only, on published files): gym -> gymnasium, numpy.core -> numpy._core."""

    def find_class(self, module, name):
        if module == "gym" or module.startswith("gym."):
            module = "gymnasium" + module[3:]
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


@needs_zoo
@pytest.mark.parametrize("path", ZOO_FILES)
def test_zoo_files_match_a_trusted_unpickling(path):
    raw = path.read_bytes()
    stats = read_vecnormalize(raw, what=str(path))
    trusted = TrustedUnpickler(io.BytesIO(raw)).load().__dict__  # its __getattr__ needs a venv
    expected_keys = trusted.get("norm_obs_keys")  # set by VecNormalize.__setstate__ for old Dict files
    assert stats.norm_obs_keys == (None if expected_keys is None else list(expected_keys))
    rms = trusted["obs_rms"]
    for key in rms if isinstance(rms, dict) else [None]:
        want, got = (rms, stats.obs_rms) if key is None else (rms[key], stats.obs_rms[key])
        np.testing.assert_array_equal(got.mean, want.mean)
        np.testing.assert_array_equal(got.var, want.var)
        assert got.count == want.count
    for name in ("clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs", "norm_reward", "training"):
        assert getattr(stats, name) == trusted[name], name
    assert stats.ret_mean == float(trusted["ret_rms"].mean) and stats.ret_var == float(trusted["ret_rms"].var)


@needs_zoo
def test_zoo_dict_observation_file():
    stats = read_vecnormalize((ZOO / "her/PandaReach-v1_1/PandaReach-v1/vecnormalize.pkl").read_bytes(), what="t")
    assert stats.norm_obs_keys == ["achieved_goal", "desired_goal", "observation"]
    assert stats.obs_rms["observation"].mean.shape == (6,)


# ---- hostile and wrong files ---------------------------------------------------------------


class Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_hostile_statistics_are_refused(tmp_path):
    target = tmp_path / "pwned"
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    venv.obs_rms.mean = Reduce(os.system, (f"touch '{target}'",))
    with pytest.raises(UnsafeFileError, match=rf"{os.system.__module__}\.system"):
        read_vecnormalize(saved(venv, tmp_path, step=False), what="t")
    assert not target.exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"obs_rms": 1}, "expected a pickled VecNormalize, found dict"),
        (np.arange(3), "expected a pickled VecNormalize, found ndarray"),
    ],
)
def test_not_a_vecnormalize(obj, message):
    with pytest.raises(BundleError, match=message):
        read_vecnormalize(pickle.dumps(obj), what="t")


def test_bad_statistics_and_truncation(tmp_path):
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    venv.obs_rms.var = np.ones(5)
    with pytest.raises(BundleError, match="differ in shape"):
        read_vecnormalize(saved(venv, tmp_path, step=False), what="t")
    venv.obs_rms.var, venv.obs_rms.mean = np.ones(3), "mean"
    with pytest.raises(BundleError, match="numeric"):
        read_vecnormalize(saved(venv, tmp_path, step=False), what="t")
    venv.obs_rms.mean = np.zeros(3)
    del venv.epsilon
    with pytest.raises(BundleError, match="no 'epsilon'"):
        read_vecnormalize(saved(venv, tmp_path, step=False), what="t")
    data = saved(VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")])), tmp_path)
    for end in range(0, len(data), 97):
        with pytest.raises(BundleError):
            read_vecnormalize(data[:end], what="t")
