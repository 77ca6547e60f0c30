"""Exports load where users load them: ``ALGO.load(zip, env=gym.make(id))``, RL Zoo's ``enjoy``, the command line.

Issue 11, items 3, 4, 5, 10 and 16 (part): statistics named after the model and never replaced
silently; today's observation spaces in exported zips; an RL Zoo run folder the zoo's own
``enjoy`` plays as trained; the missing-critic refusal before torch is imported, in the
command line's words; ``to_sb3`` refuses a torch device that is not there.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.manifest import EnvSpec
from rlport.cli.main import main
from rlport.errors import BundleError, RlportWarning, UnsupportedError
from rlport.frameworks.sb3.to_sb3 import check_critic, export_sb3
from rlport.frameworks.zoo.export import export_zoo, zoo_config
from sb3_models import ACTION_SPACES, OBS_SPACES, ModelSpec, SpacesEnv, make_model
from zoo import needs_zoo

# ---- fixtures built here: a normalised Pendulum model, two sets of statistics ------------------------


def _normalised_bundle(tmp_path: Path, mean: list[float], name: str, include_critic: bool = True) -> Path:
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env("Pendulum-v1"), clip_obs=5.0)
    venv.obs_rms.mean, venv.obs_rms.var, venv.obs_rms.count = np.array(mean), np.array([0.5, 2.0, 3.0]), 321.0
    model = A2C("MlpPolicy", venv, n_steps=8, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    bundle = rlport.from_sb3(model, vec_normalize=venv, include_critic=include_critic, probes=8, evaluate=0)
    return bundle.save(tmp_path / f"{name}.rlp")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bundles")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "a": _normalised_bundle(folder, [0.3, -0.2, 1.0], "a"),
            "b": _normalised_bundle(folder, [-0.7, 0.4, 2.0], "b"),
            "lean": _normalised_bundle(folder, [0.3, -0.2, 1.0], "lean", include_critic=False),
        }


def _pickled_mean(path: Path) -> np.ndarray:
    import pickle as trusted  # written by this test's own export

    return trusted.loads(path.read_bytes()).obs_rms.mean  # noqa: S301


# ---- item 3: statistics named after the model, never replaced silently --------------------------------


def test_statistics_are_named_after_the_model_and_two_exports_keep_their_own(bundles, tmp_path):
    first = export_sb3(bundles["a"], tmp_path / "a.zip")
    second = export_sb3(bundles["b"], tmp_path / "b.zip")
    assert first == [tmp_path / "a.zip", tmp_path / "a.vecnormalize.pkl"]
    assert second == [tmp_path / "b.zip", tmp_path / "b.vecnormalize.pkl"]
    np.testing.assert_array_equal(_pickled_mean(first[1]), [0.3, -0.2, 1.0])
    np.testing.assert_array_equal(_pickled_mean(second[1]), [-0.7, 0.4, 2.0])
    assert not (tmp_path / "vecnormalize.pkl").exists()


@pytest.mark.parametrize("clash", ["model", "statistics"])
def test_an_existing_file_is_refused_and_left_as_it_was_unless_overwrite(bundles, tmp_path, clash):
    model, stats = export_sb3(bundles["a"], tmp_path / "run.zip")
    before = {p: p.read_bytes() for p in (model, stats)}
    if clash == "statistics":
        model.unlink()
    with pytest.raises(BundleError, match=r"the file exists.*--force \(overwrite=True"):
        export_sb3(bundles["b"], tmp_path / "run.zip")
    assert {p: p.read_bytes() for p in (model, stats) if p.exists()} == {
        p: data for p, data in before.items() if p.exists()
    }
    export_sb3(bundles["b"], tmp_path / "run.zip", overwrite=True)
    np.testing.assert_array_equal(_pickled_mean(stats), [-0.7, 0.4, 2.0])


def test_a_statistics_path_given_is_refused_when_it_exists(bundles, tmp_path):
    (tmp_path / "stats.pkl").write_bytes(b"someone else's")
    with pytest.raises(BundleError, match="stats.pkl'.*the file exists"):
        export_sb3(bundles["a"], tmp_path / "m.zip", vecnormalize=tmp_path / "stats.pkl")
    assert (tmp_path / "stats.pkl").read_bytes() == b"someone else's" and not (tmp_path / "m.zip").exists()


def test_the_command_line_says_where_each_file_went_and_needs_force_to_replace(bundles, tmp_path, capsys):
    target = tmp_path / "pendulum.zip"
    argv = ["export", str(bundles["a"]), "--format", "sb3", "-o", str(target)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"A2C.load({str(target)!r})" in out
    assert f"VecNormalize.load({str(tmp_path / 'pendulum.vecnormalize.pkl')!r}, venv)" in out
    assert main(["export", str(bundles["b"]), "--format", "sb3", "-o", str(target)]) == 2
    assert "the file exists" in capsys.readouterr().err
    assert main(["export", str(bundles["b"]), "--format", "sb3", "-o", str(target), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == [str(target), str(tmp_path / "pendulum.vecnormalize.pkl")]
    np.testing.assert_array_equal(_pickled_mean(tmp_path / "pendulum.vecnormalize.pkl"), [-0.7, 0.4, 2.0])


# ---- item 4: today's observation spaces in exported zips -----------------------------------------------

LOADS = [("ppo/CartPole-v1_1", "PPO", "CartPole-v1"), ("dqn/LunarLander-v2_1", "DQN", "LunarLander-v3")]


@needs_zoo
@pytest.mark.parametrize("run, algorithm, env_id", LOADS, ids=[r for r, _, _ in LOADS])
def test_an_exported_zoo_run_loads_with_todays_env(zoo_sample, run, algorithm, env_id, tmp_path):
    import stable_baselines3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = rlport.import_zoo(zoo_sample / run, probes=0, include_critic=True, fingerprint=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RlportWarning)  # the env is made here: nothing to warn about
        (path,) = export_sb3(bundle, tmp_path / "model.zip")
    env = gym.make(env_id)
    model = getattr(stable_baselines3, algorithm).load(path, env=env, device="cpu")  # SB3 checks the spaces
    assert model.observation_space == env.observation_space
    obs = np.stack([env.observation_space.sample() for _ in range(32)])
    theirs, _ = model.predict(obs, deterministic=True)
    ours, _ = NumpyPolicy(bundle).predict(obs, deterministic=True)
    np.testing.assert_array_equal(ours, theirs)


def test_without_the_env_the_export_says_it_carries_the_recorded_spaces(bundles, tmp_path):
    bundle = rlport.Bundle.load(bundles["a"])
    bundle.env = EnvSpec("NoSuchEnvAnywhere-v0", {})
    with pytest.warns(RlportWarning, match=r"NoSuchEnvAnywhere-v0.*cannot be made here.*recorded observation"):
        model, _ = export_sb3(bundle, tmp_path / "m.zip")
    assert model.exists()


# ---- item 5: an RL Zoo run folder that the zoo's own enjoy plays as trained ----------------------------


def test_a_zoo_folder_has_the_files_the_zoo_reads_and_imports_back_the_same(bundles, tmp_path):
    folder = tmp_path / "a2c" / "Pendulum-v1_1"
    folder.parent.mkdir()
    paths = export_zoo(bundles["a"], folder)
    names = [p.relative_to(folder).as_posix() for p in paths]
    assert names == ["Pendulum-v1.zip", *(f"Pendulum-v1/{n}" for n in ("config.yml", "args.yml", "vecnormalize.pkl"))]
    config = zoo_config(rlport.Bundle.load(bundles["a"]))
    assert config["policy"] == "MlpPolicy" and config["n_steps"] == 8
    assert eval(config["normalize"]) == {  # noqa: S307 - the zoo evaluates it, so does this test
        "norm_obs": True, "norm_reward": True, "clip_obs": 5.0, "clip_reward": 10.0, "gamma": 0.99, "epsilon": 1e-8
    }  # fmt: skip
    assert config["policy_kwargs"].startswith("dict(net_arch=[16]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = rlport.import_zoo(folder, probes=0, fingerprint=False)
    original = rlport.Bundle.load(bundles["a"])
    assert again.env.id == "Pendulum-v1" and again.source["algorithm"] == "A2C"
    obs = np.random.default_rng(0).uniform(-3, 3, (64, 3)).astype(np.float32)
    ours = NumpyPolicy(again).predict(obs, deterministic=True)
    theirs = NumpyPolicy(original).predict(obs, deterministic=True)
    np.testing.assert_array_equal(ours[0], theirs[0])


def test_a_zoo_folder_is_never_written_over_without_overwrite_and_never_half(bundles, tmp_path):
    folder = tmp_path / "Pendulum-v1_1"
    export_zoo(bundles["a"], folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(BundleError, match="exists and is not empty.*--force"):
        export_zoo(bundles["b"], folder)
    with pytest.raises(UnsupportedError, match="allow_missing_critic=True"):
        export_zoo(bundles["lean"], tmp_path / "lean_1")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pendulum-v1_1"]  # no half folder, no temporary one
    export_zoo(bundles["b"], folder, overwrite=True)
    np.testing.assert_array_equal(_pickled_mean(folder / "Pendulum-v1" / "vecnormalize.pkl"), [-0.7, 0.4, 2.0])


@needs_zoo
def test_the_zoo_wrappers_and_normalisation_are_in_config_yml(zoo_sample, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = rlport.import_zoo(zoo_sample / "ppo/Walker2d-v3_1", probes=0, fingerprint=False)
    config = zoo_config(bundle)
    assert config["env_wrapper"] == ["sb3_contrib.common.wrappers.TimeFeatureWrapper"]
    assert eval(config["normalize"])["norm_obs"] is True  # noqa: S307


ENJOYED = [("a2c/Pendulum-v1_1", "a2c", 1000), ("ppo/Walker2d-v3_1", "ppo", 2000)]


@pytest.mark.slow
@needs_zoo
@pytest.mark.parametrize("run, algo, steps", ENJOYED, ids=[r for r, _, _ in ENJOYED])
def test_rl_zoos_enjoy_plays_the_exported_run_as_published(zoo_sample, run, algo, steps, tmp_path):
    """Unnormalised, as with the zip and statistics alone, the zoo plays a2c Pendulum at about -1500
    (published -160) and crashes on Walker2d (18-dim observations without the time feature); measured
    here, Walker2d without its statistics scores about 300 (published 2581)."""
    pytest.importorskip("rl_zoo3.enjoy", reason="rl_zoo3 (pip install rl_zoo3) is needed to run the zoo's enjoy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = rlport.import_zoo(zoo_sample / run, probes=0, include_critic=True, fingerprint=False)
    folder = tmp_path / "logs" / algo / f"{bundle.env.id}_1"
    folder.parent.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_zoo(bundle, folder)
    command = [sys.executable, "-m", "rl_zoo3.enjoy", "--algo", algo, "--env", bundle.env.id,
               "-f", str(folder.parents[1]), "--exp-id", "1", "--no-render", "-n", str(steps), "--seed", "0",
               "--device", "cpu"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Loading running average" in done.stdout  # config.yml's normalize was read, vecnormalize.pkl loaded
    found = re.search(r"(\d+) Episodes\nMean reward: (-?[\d.]+) \+/- ([\d.]+)", done.stdout)
    assert found, done.stdout[-2000:]
    episodes, mean, std = int(found.group(1)), float(found.group(2)), float(found.group(3))
    published = bundle.provenance["published_return_mean"]
    if run.startswith("a2c"):
        assert abs(mean - published) <= max(3 * std / math.sqrt(episodes), 0.1 * abs(published)), (mean, published)
    else:  # MuJoCo episodes end early at random: a few of them vary widely around the published mean
        assert mean >= published / 2, (mean, published)


# ---- item 10: the missing critic, refused at once, in the command line's words ------------------------


def test_the_command_line_refuses_a_missing_critic_before_importing_torch(bundles, tmp_path):
    from isolation import BLOCKER

    target = tmp_path / "m.zip"
    code = BLOCKER + (
        "from rlport.cli.main import main\n"
        f"sys.exit(main(['export', {str(bundles['lean'])!r}, '--format', 'sb3', '-o', {str(target)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pass --allow-missing-critic" in done.stderr and "allow_missing_critic=True" not in done.stderr
    assert "blocked" not in done.stderr and not target.exists()


def test_python_callers_are_told_the_keyword(bundles, tmp_path):
    with pytest.raises(UnsupportedError, match=r"pass allow_missing_critic=True$"):
        export_sb3(bundles["lean"], tmp_path / "m.zip")
    assert not list(tmp_path.iterdir())


CRITICS = [ModelSpec("PPO", action="discrete"), ModelSpec("RecurrentPPO", "MlpLstmPolicy"), ModelSpec("SAC"),
           ModelSpec("DQN", action="discrete"), ModelSpec("QRDQN", action="discrete"),
           ModelSpec("ARS", "LinearPolicy")]  # fmt: skip


@pytest.mark.parametrize("spec", CRITICS, ids=str)
def test_the_early_check_refuses_exactly_what_to_sb3_refuses(spec, tmp_path):
    bundle = rlport.from_sb3(make_model(spec), probes=2, fingerprint=False, evaluate=0)
    env = SpacesEnv(OBS_SPACES[spec.obs], ACTION_SPACES[spec.action])
    try:
        rlport.to_sb3(bundle, env=env)
        refused = False
    except UnsupportedError as exc:
        refused = "include_critic=True" in str(exc)
    early = pytest.raises(UnsupportedError, match="critic") if refused else contextlib.nullcontext()
    with early:
        check_critic(bundle, allow_missing_critic=False)
    check_critic(bundle, allow_missing_critic=True)


# ---- item 16 (part): a torch device that is not there ------------------------------------------------


@pytest.mark.parametrize("device", ["cuda:99", "no-such-device"])
def test_to_sb3_refuses_a_device_that_is_not_there(bundles, device):
    with pytest.raises(UnsupportedError, match=f"torch device '{device}' cannot be used here"):
        rlport.to_sb3(bundles["a"], device=device)


def test_to_sb3_on_cuda_uses_it_or_says_it_cannot(bundles):
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedError, match="torch device 'cuda' cannot be used here.*CUDA is not available"):
            rlport.to_sb3(bundles["a"], device="cuda")
        return
    model = rlport.to_sb3(bundles["a"], device="cuda")
    assert model.device.type == "cuda"
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32)
    normalised = model.get_vec_normalize_env().normalize_obs(obs)
    ours, _ = NumpyPolicy(rlport.Bundle.load(bundles["a"])).predict(obs, deterministic=True)
    np.testing.assert_allclose(model.predict(normalised, deterministic=True)[0], ours, atol=1e-5)
