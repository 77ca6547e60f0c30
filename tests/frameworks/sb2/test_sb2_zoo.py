"""The SB2 RL Zoo layout around a model: normalisation as the zoo decided it, config.yml, wrappers, published
returns, env ids and what an env needs; then import_sb2 over all of it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sb2_files import a2c_model, sb2_names, stand_in, write_obs_rms, write_pkl

from rlport.errors import BundleError, RlportWarning, UnsafeFileError
from rlport.frameworks.sb2 import import_sb2
from rlport.frameworks.sb2.files import read_sb2
from rlport.frameworks.sb2.zoo import env_note, normalize_kwargs, read_zoo_folder
from rlport.frameworks.sb2.zoo_files import read_config
from rlport.frameworks.sb2.zoo_returns import published_return

MEAN, VAR = np.array([0.5, -1.0, 2.0, 0.0]), np.array([4.0, 0.25, 1.0, 9.0])


@pytest.fixture
def agent(tmp_path):
    """An SB2 zoo agent ``trained_agents/a2c/CartPole-v1.pkl`` (no folder yet); the zoo's root is ``tmp_path``."""
    return write_pkl(tmp_path / "trained_agents" / "a2c" / "CartPole-v1.pkl", a2c_model())


def _config(agent, text: str):
    folder = agent.parent / agent.stem
    folder.mkdir(exist_ok=True)
    (folder / "config.yml").write_text("!!python/object/apply:collections.OrderedDict\n- " + text)
    return folder


def test_obs_rms_without_a_config_turns_normalisation_on(agent):
    write_obs_rms(agent.parent / agent.stem, MEAN, VAR)
    zoo = read_zoo_folder(agent, read_sb2(agent))
    np.testing.assert_array_equal(zoo.normalisation.mean, MEAN)
    np.testing.assert_array_equal(zoo.normalisation.var, VAR)
    assert (zoo.normalisation.clip, zoo.normalisation.epsilon) == (10.0, 1e-8)
    assert zoo.vec_normalize["obs_count"] == 1000.0


def test_a_config_without_normalize_turns_it_off_even_with_obs_rms(agent):
    write_obs_rms(_config(agent, "- [gamma, 0.99]\n"), MEAN, VAR)
    assert read_zoo_folder(agent, read_sb2(agent)).normalisation is None


def test_normalize_arguments_of_the_config_are_used(agent):
    write_obs_rms(_config(agent, "- [normalize, \"{'norm_obs': True, 'norm_reward': False, 'clip_obs': 5.0}\"]\n"),
                  MEAN, VAR)  # fmt: skip
    zoo = read_zoo_folder(agent, read_sb2(agent))
    assert zoo.normalisation.clip == 5.0
    assert normalize_kwargs({"normalize": "{'norm_obs': False}"}, None) == {"norm_obs": False}


def test_normalisation_without_statistics_is_refused(agent):
    _config(agent, "- [normalize, true]\n")
    with pytest.raises(BundleError, match="neither obs_rms.pkl nor vecnormalize.pkl"):
        read_zoo_folder(agent, read_sb2(agent))


def test_statistics_of_another_shape_are_refused(agent):
    write_obs_rms(agent.parent / agent.stem, MEAN[:3], VAR[:3])
    with pytest.raises(BundleError, match=r"statistics have shape \(3,\), the policy observes \(4,\)"):
        read_zoo_folder(agent, read_sb2(agent))


def test_stacked_frames_tile_the_statistics(tmp_path):
    data, params = a2c_model(obs_dim=8)
    agent = write_pkl(tmp_path / "a2c" / "CartPole-v1.pkl", (data, params))
    write_obs_rms(_config(agent, "- [normalize, true]\n  - [frame_stack, 2]\n"), MEAN, VAR)
    zoo = read_zoo_folder(agent, read_sb2(agent))
    np.testing.assert_array_equal(zoo.normalisation.mean, np.concatenate([MEAN, MEAN]))
    assert [(w.name, w.kwargs) for w in zoo.wrappers] == [("frame_stack", {"n_stack": 2})]


def test_vecnormalize_pkl_brings_its_own_settings(agent):
    folder = _config(agent, "- [normalize, true]\n")
    stats = stand_in("stable_baselines.common.running_mean_std.RunningMeanStd")
    obs_rms = object.__new__(stats)
    obs_rms.__dict__.update(mean=MEAN, var=VAR, count=10.0)
    venv = object.__new__(stand_in("stable_baselines.common.vec_env.vec_normalize.VecNormalize"))
    venv.__dict__.update(obs_rms=obs_rms, clip_obs=3.0, epsilon=1e-4, norm_obs=True, norm_reward=True)
    import pickle

    with sb2_names():
        (folder / "vecnormalize.pkl").write_bytes(pickle.dumps(venv))
    zoo = read_zoo_folder(agent, read_sb2(agent))
    assert (zoo.normalisation.clip, zoo.normalisation.epsilon) == (3.0, 1e-4)


def test_config_reads_the_zoo_tags_and_refuses_others(tmp_path):
    (tmp_path / "config.yml").write_text("!!python/object/apply:collections.OrderedDict\n- - [policy, MlpPolicy]\n"
                                         "  - [shape, !!python/tuple [1, 2]]\n")  # fmt: skip
    assert read_config(tmp_path / "config.yml") == {"policy": "MlpPolicy", "shape": [1, 2]}
    (tmp_path / "bad.yml").write_text("a: !!python/name:os.system\n")
    with pytest.raises(UnsafeFileError, match="refused YAML tag !!python/name:os.system"):
        read_config(tmp_path / "bad.yml")


def test_wrappers_time_feature_and_atari(tmp_path):
    agent = write_pkl(tmp_path / "a2c" / "CartPole-v1.pkl", a2c_model())
    _config(agent, "- [env_wrapper, utils.wrappers.TimeFeatureWrapper]\n")
    assert [w.name for w in read_zoo_folder(agent, read_sb2(agent)).wrappers] == ["time_feature"]
    atari = write_pkl(tmp_path / "a2c" / "PongNoFrameskip-v4.pkl", a2c_model())
    wrappers = read_zoo_folder(atari, read_sb2(atari)).wrappers
    assert [w.name for w in wrappers] == ["stable_baselines.common.atari_wrappers.wrap_deepmind", "frame_stack"]
    assert wrappers[1].kwargs == {"n_stack": 4}


BENCHMARK = """|algo |              env_id               |mean_reward|std_reward|n_timesteps|n_episodes|
|-----|-----------------------------------|----------:|---------:|----------:|---------:|
|a2c  |CartPole-v1                        |    499.903|     1.672|     149971|       300|
|ppo2 |CartPole-v1                        |    500.000|     0.000|     150000|       300|
"""


def test_published_return_from_the_zoo_benchmark(agent):
    (agent.parent.parent.parent / "benchmark.md").write_text(BENCHMARK)
    found = published_return(agent)
    assert (found["published_return_mean"], found["published_return_std"], found["published_episodes"]) == (
        499.903, 1.672, 300)  # fmt: skip
    assert published_return(agent.with_name("Acrobot-v1.pkl")) == {}


def test_published_return_from_a_readme_quoting_it(agent):
    row = "| a2c/CartPole-v1.pkl | CartPole-v1 | 499.9 ± 1.7 | 300 | |"
    (agent.parent.parent / "README.md").write_text(f"| agent | env | return | n |\n|---|---|---|---|\n{row}\n")
    assert published_return(agent)["published_return_mean"] == 499.9


def test_env_notes_say_what_to_install():
    assert "pip install pybullet" in env_note("HalfCheetahBulletEnv-v0")
    assert "gymnasium-robotics" in env_note("FetchReach-v1")
    assert env_note("CartPole-v1") is None


def test_import_sb2_applies_the_zoo_folder(agent):
    write_obs_rms(agent.parent / agent.stem, MEAN, VAR)
    (agent.parent.parent.parent / "benchmark.md").write_text(BENCHMARK)
    bundle = import_sb2(agent, probes=8, fingerprint=False)
    assert bundle.env.id == "CartPole-v1"
    normalize = [n for n in bundle.graph.preprocess if n.op == "normalize"]
    assert len(normalize) == 1
    assert bundle.provenance["framework"] == "stable-baselines"
    assert bundle.provenance["published_return_mean"] == 499.903
    assert bundle.provenance["zoo_model"] == "a2c/CartPole-v1.pkl"
    np.testing.assert_array_equal(bundle.tensors[normalize[0].params["mean"]], MEAN)
    assert bundle.source["vec_normalize"]["obs_count"] == 1000.0
    assert import_sb2(agent, probes=0, fingerprint=False, env="MyCartPole-v0").env.id == "MyCartPole-v0"


def test_import_sb2_maps_old_ids_and_says_what_an_env_needs(tmp_path):
    data, params = a2c_model(obs_dim=3, n_actions=2)
    pendulum = write_pkl(tmp_path / "a2c" / "Acrobot-v0.pkl", (data, params))
    with pytest.warns(RlportWarning):
        bundle = import_sb2(pendulum, probes=0, fingerprint=False)
    assert bundle.env.id == "Acrobot-v0"  # no newer version with these spaces: kept, with a note
    bullet = write_pkl(tmp_path / "a2c" / "HalfCheetahBulletEnv-v0.pkl", a2c_model())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = import_sb2(bullet, probes=0, fingerprint=False)
    assert bundle.env.id == "HalfCheetahBulletEnv-v0"
    assert "pip install pybullet" in bundle.provenance["env_needs"]
    assert any("pip install pybullet" in str(w.message) for w in caught)
