"""RL Zoo run folders beyond the plain layout (issue 13 part 1): best_model.zip beside ENV.zip, env ids whose
observation layout changed (migrations with kwargs), HER runs with Dict-observation normalisation."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import rlport
from rlport.cli.main import main
from rlport.errors import BundleError
from sb3_models import SpacesEnv

_ARGS = "!!python/object/apply:collections.OrderedDict\n- - - algo\n    - {algo}\n  - - env\n    - {env}\n"


def _run(tmp_path: Path, model, env_id: str, algo: str = "ppo", config: str | None = None) -> Path:
    """A zoo run folder ``ALGO/ENV_1`` holding ``model`` as ``ENV.zip`` and an args.yml recording ``env_id``."""
    run = tmp_path / algo / f"{env_id}_1"
    (run / env_id).mkdir(parents=True)
    model.save(run / f"{env_id}.zip")
    (run / env_id / "args.yml").write_text(_ARGS.format(algo=algo, env=env_id))
    if config is not None:
        (run / env_id / "config.yml").write_text(config)
    return run


def _ppo(obs: int, act: int, seed: int = 0):
    from stable_baselines3 import PPO

    env = SpacesEnv(spaces.Box(-np.inf, np.inf, (obs,), "float32"), spaces.Box(-1, 1, (act,), "float32"))
    return PPO("MlpPolicy", env, seed=seed, device="cpu", policy_kwargs={"net_arch": [8]})


def _actions(bundle: rlport.Bundle, obs: np.ndarray) -> np.ndarray:
    return rlport.load(bundle).predict(obs, deterministic=True)[0]


# -- best_model.zip beside ENV.zip ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models():
    return _ppo(3, 1, seed=0), _ppo(3, 1, seed=1)


def _best_run(tmp_path: Path, two_models) -> Path:
    final, best = two_models
    run = _run(tmp_path, final, "Pendulum-v1")
    best.save(run / "best_model.zip")
    return run


def test_the_final_model_by_default_best_model_on_request(tmp_path, two_models):
    run = _best_run(tmp_path, two_models)
    final = rlport.import_zoo(run, probes=4, fingerprint=False)
    best = rlport.import_zoo(run, probes=4, fingerprint=False, best=True)
    assert final.provenance["zoo_model"] == "Pendulum-v1.zip" and best.provenance["zoo_model"] == "best_model.zip"
    obs = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    for bundle, model in zip((final, best), two_models, strict=True):
        np.testing.assert_allclose(_actions(bundle, obs), model.predict(obs, deterministic=True)[0], atol=1e-5)
    assert best.env.id == "Pendulum-v1"  # the run's env files serve best_model.zip too


def test_cli_best(tmp_path, two_models, capsys):
    run = _best_run(tmp_path, two_models)
    out = tmp_path / "best.rlp"
    assert main(["import", str(run), "-o", str(out), "--best", "--probes", "4", "--no-fingerprint"]) == 0
    assert rlport.Bundle.load(out).provenance["zoo_model"] == "best_model.zip"
    assert main(["import", str(run / "Pendulum-v1.zip"), "-o", str(tmp_path / "x.rlp"), "--best"]) == 2
    assert "--best is for an RL Zoo run folder" in capsys.readouterr().err


def test_other_layouts_list_their_zips(tmp_path, two_models):
    run = _best_run(tmp_path, two_models)
    two_models[0].save(run / "rl_model_1000_steps.zip")
    with pytest.raises(BundleError, match=r"found 3 \(Pendulum-v1.zip, best_model.zip, rl_model_1000_steps.zip\)"):
        rlport.import_zoo(run, fingerprint=False)
    plain = _run(tmp_path / "plain", two_models[0], "Pendulum-v1")
    with pytest.raises(BundleError, match="no best_model.zip .*drop --best"):
        rlport.import_zoo(plain, fingerprint=False, best=True)


# -- env ids whose observation layout changed ---------------------------------------------------------------------


def _imported(run: Path) -> tuple[rlport.Bundle, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", rlport.RlportWarning)
        bundle = rlport.import_zoo(run, probes=4, fingerprint=False)
    return bundle, [str(w.message) for w in caught if issubclass(w.category, rlport.RlportWarning)]


@pytest.mark.parametrize(
    ("obs", "expected_id", "expected_kwargs"),
    [
        (111, "Ant-v4", {"use_contact_forces": True}),  # the RL Zoo's Ant-v3 agents: contact forces
        (105, "Ant-v5", {"include_cfrc_ext_in_observation": True}),
        (27, "Ant-v4", {}),
    ],
    ids=["contact-forces", "v5-layout", "no-contact-forces"],
)
def test_ant_v3_migrates_with_the_kwargs_that_reproduce_its_observation(tmp_path, obs, expected_id, expected_kwargs):
    pytest.importorskip("mujoco")
    bundle, messages = _imported(_run(tmp_path, _ppo(obs, 8), "Ant-v3"))
    assert (bundle.env.id, dict(bundle.env.kwargs)) == (expected_id, expected_kwargs), messages
    assert any(f"Ant-v3 is now {expected_id}" in m for m in messages), messages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(bundle.env.id, **bundle.env.kwargs)
    assert env.observation_space.shape == (obs,)
    saved = tmp_path / "ant.rlp"
    bundle.save(saved)
    assert dict(rlport.Bundle.load(saved).env.kwargs) == expected_kwargs


def test_time_feature_counts_in_the_space_check(tmp_path):
    pytest.importorskip("mujoco")
    config = "env_wrapper: sb3_contrib.common.wrappers.TimeFeatureWrapper\n"
    bundle, messages = _imported(_run(tmp_path, _ppo(112, 8), "Ant-v3", config=config))
    assert (bundle.env.id, dict(bundle.env.kwargs)) == ("Ant-v4", {"use_contact_forces": True}), messages


def test_no_migration_reproduces_the_spaces_import_warns_and_keeps_the_id(tmp_path):
    pytest.importorskip("mujoco")
    bundle, messages = _imported(_run(tmp_path, _ppo(30, 8), "Ant-v3"))
    assert bundle.env.id == "Ant-v3" and dict(bundle.env.kwargs) == {}
    note = bundle.provenance["env_id_note"]
    assert "Ant-v3 was renamed Ant-v4 with use_contact_forces=True, but the spaces differ" in note
    assert "with Ant-v4 they differ too" in note and note in messages


def test_every_migration_target_is_a_registered_id():
    from rlport.frameworks.zoo.run import ENV_MIGRATIONS

    for old, candidates in ENV_MIGRATIONS.items():
        assert candidates, old
        for new, kwargs in candidates:
            assert new in gym.envs.registry, (old, new)
            assert isinstance(kwargs, dict)


# -- HER with Dict-observation normalisation ----------------------------------------------------------------------


class GoalEnv(gym.Env):
    """Reach a 2-d goal: the smallest goal env SB3's HerReplayBuffer accepts."""

    observation_space = spaces.Dict(
        {
            "observation": spaces.Box(-10, 10, (3,), np.float32),
            "achieved_goal": spaces.Box(-10, 10, (2,), np.float32),
            "desired_goal": spaces.Box(-10, 10, (2,), np.float32),
        }
    )
    action_space = spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.goal = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.steps = 0
        return self._obs(), {}

    def _obs(self):
        extra = np.array([np.linalg.norm(self.pos - self.goal)], np.float32)
        return {"observation": np.concatenate([self.pos, extra]), "achieved_goal": self.pos.copy(),
                "desired_goal": self.goal.copy()}  # fmt: skip

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action, np.float32), -10, 10).astype(np.float32)
        reward = float(self.compute_reward(self.pos, self.goal, {}))
        self.steps += 1
        return self._obs(), reward, reward == 0.0, self.steps >= 10, {}

    def compute_reward(self, achieved_goal, desired_goal, info):
        return -(np.linalg.norm(np.asarray(achieved_goal) - desired_goal, axis=-1) > 0.1).astype(np.float32)


def test_her_run_with_dict_normalisation_acts_as_sb3(tmp_path):
    from stable_baselines3 import SAC, HerReplayBuffer
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([GoalEnv]), norm_obs_keys=["observation", "desired_goal"], norm_reward=False)
    model = SAC("MultiInputPolicy", venv, replay_buffer_class=HerReplayBuffer, learning_starts=30, seed=0,
                device="cpu", policy_kwargs={"net_arch": [16]})  # fmt: skip
    model.learn(60)  # moves the statistics away from 0/1
    assert not np.allclose(venv.obs_rms["observation"].mean, 0)
    model.save(tmp_path / "her.zip")
    venv.save(tmp_path / "vecnormalize.pkl")
    bundle = rlport.import_sb3(tmp_path / "her.zip", vecnormalize=tmp_path / "vecnormalize.pkl", probes=4,
                               fingerprint=False)  # fmt: skip
    space = GoalEnv.observation_space
    raw = {key: np.stack([space[key].sample() for _ in range(5)]) for key in space}
    expected = model.predict(venv.normalize_obs(raw), deterministic=True)[0]
    np.testing.assert_allclose(_actions(bundle, raw), expected, atol=1e-5)
    np.testing.assert_array_equal(raw["achieved_goal"], venv.normalize_obs(raw)["achieved_goal"])  # not normalised
    np.testing.assert_allclose(rlport.load(bundle, backend="onnx").predict(raw, deterministic=True)[0], expected,
                               atol=1e-5)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = rlport.to_sb3(bundle, env=DummyVecEnv([GoalEnv]), allow_missing_critic=True)
    normalised = back.get_env().normalize_obs(raw)  # the bundle's statistics, per key, back in SB3's VecNormalize
    np.testing.assert_allclose(back.predict(normalised, deterministic=True)[0], expected, atol=1e-5)


# -- SAC/TQC with a fixed ent_coef --------------------------------------------------------------------------------


def test_a_fixed_ent_coef_saved_as_none_imports_and_goes_back_to_sb3(tmp_path, capsys):
    import io
    import zipfile

    import torch
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", "Pendulum-v1", ent_coef=0.1, seed=0, device="cpu", policy_kwargs={"net_arch": [8]})
    model.save(tmp_path / "sac.zip")
    variables = io.BytesIO()
    torch.save({"log_ent_coef": None}, variables)  # what SB3 < 1.6 wrote with a fixed ent_coef
    with zipfile.ZipFile(tmp_path / "sac.zip") as src, zipfile.ZipFile(tmp_path / "old.zip", "w") as out:
        for name in src.namelist():
            out.writestr(name, variables.getvalue() if name == "pytorch_variables.pth" else src.read(name))
    out = tmp_path / "sac.rlp"
    assert main(["import", str(tmp_path / "old.zip"), "-o", str(out), "--include-critic", "--no-fingerprint",
                 "--probes", "4"]) == 0, capsys.readouterr().err  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = rlport.to_sb3(out)
    assert float(back.ent_coef_tensor) == pytest.approx(0.1)
    obs = np.linspace(-1, 1, 9, dtype=np.float32).reshape(3, 3)
    np.testing.assert_allclose(back.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0],
                               atol=1e-5)  # fmt: skip
    with pytest.raises(BundleError, match="expected a state_dict"):  # elsewhere a None is still refused
        from rlport.readers.torch_pth import read_torch_file

        read_torch_file(variables.getvalue(), what="x.pth")
