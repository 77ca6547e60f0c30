"""``rlport.to_sb3``: bundle back into SB3, same weights and actions, training resumes, clear refusals.

Round trip = a perturbed in-process model, exported (``include_critic=True``), saved, rebuilt by
``to_sb3``: every ``state_dict`` tensor equal to the original's, equal deterministic actions, and
``.learn()`` changes the weights.
"""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit

import rlport
from old_layouts import LAYOUTS
from rlport.backends.numpy import NumpyPolicy
from rlport.errors import RlportWarning, SpaceError, UnsupportedError
from sb3_models import ACTION_SPACES, OBS_SPACES, ModelSpec, SpacesEnv, assert_same_actions, make_model, sample_obs

N_OBS = 64

FAMILIES = [
    ModelSpec("PPO", action="discrete"),
    ModelSpec("PPO", kwargs={"use_sde": True}),
    ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete"),
    ModelSpec("A2C", "MultiInputPolicy", obs="dict", policy_kwargs={"share_features_extractor": False}),
    ModelSpec("A2C", obs="multidiscrete", action="multibinary"),
    ModelSpec("TRPO", action="multidiscrete"),
    ModelSpec("MaskablePPO", action="discrete"),
    ModelSpec("RecurrentPPO", "MlpLstmPolicy", policy_kwargs={"n_lstm_layers": 2}),
    ModelSpec("DQN", obs="discrete", action="discrete"),
    ModelSpec("QRDQN", "CnnPolicy", obs="rgb", action="discrete"),
    ModelSpec("SAC", kwargs={"use_sde": True}),
    ModelSpec("SAC", "MultiInputPolicy", obs="dict_vec"),
    ModelSpec("TD3", action="box2d"),
    ModelSpec("DDPG", obs="box64", action="box64"),
    ModelSpec("TQC"),
    ModelSpec("CrossQ", obs="multibinary"),
    ModelSpec("ARS", "LinearPolicy"),
]


def _env(spec: ModelSpec) -> SpacesEnv:
    return SpacesEnv(OBS_SPACES[spec.obs], ACTION_SPACES[spec.action])


def _export(model, tmp_path, **kwargs) -> rlport.Bundle:
    """Export (critic kept by default), save and load again: to_sb3 reads what a file holds."""
    kwargs.setdefault("include_critic", True)
    bundle = rlport.from_sb3(model, probes=8, fingerprint=False, evaluate=0, **kwargs)
    return rlport.Bundle.load(bundle.save(tmp_path / "model.rlp"))


def _state(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.policy.state_dict().items()}


def _assert_same_predictions(ours, theirs, obs, **kwargs) -> None:
    a, _ = ours.predict(obs, deterministic=True, **kwargs)
    b, _ = theirs.predict(obs, deterministic=True, **kwargs)
    assert_same_actions(a, b, "to_sb3 model vs original")


@pytest.mark.parametrize("spec", FAMILIES, ids=str)
def test_round_trip_restores_every_tensor_and_action(spec, tmp_path):
    original = make_model(spec)
    _export(original, tmp_path)
    rebuilt = rlport.to_sb3(tmp_path / "model.rlp", env=_env(spec))  # a path, as users pass it
    assert type(rebuilt) is type(original)
    assert type(rebuilt.policy) is type(original.policy)
    expected, found = _state(original), _state(rebuilt)
    assert sorted(found) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(found[name], value), f"{name} differs after to_sb3"
    _assert_same_predictions(rebuilt, original, sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=5))


LEARN_SPECS = [
    ModelSpec("PPO", action="discrete"),
    ModelSpec("RecurrentPPO", "MlpLstmPolicy"),
    ModelSpec("MaskablePPO", action="multidiscrete"),
    ModelSpec("SAC", kwargs={"use_sde": True}),
    ModelSpec("DQN", action="discrete", kwargs={"learning_starts": 0, "train_freq": 4}),
    ModelSpec("ARS", "LinearPolicy"),
]


class _Rewarded(gym.Wrapper):
    """A reward that depends on the action, so that every algorithm has something to learn."""

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, -float(np.sum(np.square(np.asarray(action, dtype=np.float64)))), terminated, truncated, info


@pytest.mark.parametrize("spec", LEARN_SPECS, ids=str)
def test_learn_continues_training_from_the_bundle(spec, tmp_path):
    env = TimeLimit(_Rewarded(_env(spec)), max_episode_steps=16)  # ARS learns from whole episodes
    model = rlport.to_sb3(_export(make_model(spec), tmp_path), env=env)
    before = _state(model)
    steps = 64
    model.learn(steps)
    changed = [name for name, value in _state(model).items() if not torch.equal(value, before[name])]
    assert changed, "learn() did not change any weight"
    assert model.num_timesteps >= steps


def test_hyperparameters_gSDE_and_timesteps_come_back(tmp_path):
    schedule = lambda progress: 3e-4 * progress  # noqa: E731 - SB3 takes a callable of the progress remaining
    spec = ModelSpec(
        "PPO",
        kwargs={"gamma": 0.93, "n_epochs": 3, "clip_range": 0.15, "learning_rate": schedule, "use_sde": True},
    )
    original = make_model(spec)
    original.num_timesteps = 12_345
    model = rlport.to_sb3(_export(original, tmp_path), env=_env(spec))
    assert (model.gamma, model.n_epochs, model.use_sde) == (0.93, 3, True)
    assert model.clip_range(0.5) == pytest.approx(0.15)  # a constant schedule again
    assert model.learning_rate == pytest.approx(3e-4)  # a schedule's start value, not its end (0)
    assert model.num_timesteps == 12_345
    assert rlport.to_sb3(tmp_path / "model.rlp", env=_env(spec), gamma=0.5).gamma == 0.5  # kwargs win


@pytest.mark.parametrize("use_rms_prop, optimizer", [(True, torch.optim.RMSprop), (False, torch.optim.Adam)])
@pytest.mark.parametrize("route", ["from_sb3", "import_sb3"])
def test_a2c_comes_back_with_its_optimizer(use_rms_prop, optimizer, route, tmp_path):
    spec = ModelSpec("A2C", kwargs={"use_rms_prop": use_rms_prop})
    original = make_model(spec)
    assert type(original.policy.optimizer) is optimizer
    if route == "from_sb3":
        bundle = _export(original, tmp_path)
    else:
        original.save(tmp_path / "a2c.zip")
        bundle = rlport.import_sb3(tmp_path / "a2c.zip", probes=0, include_critic=True, fingerprint=False)
    assert type(rlport.to_sb3(bundle, env=_env(spec), algorithm="A2C").policy.optimizer) is optimizer


def test_train_frequency_in_episodes_comes_back(tmp_path):
    spec = ModelSpec("SAC", kwargs={"train_freq": (2, "episode"), "gradient_steps": 3})
    model = rlport.to_sb3(_export(make_model(spec), tmp_path), env=_env(spec))
    assert (model.train_freq.frequency, model.train_freq.unit.value) == (2, "episode")
    assert model.gradient_steps == 3


def test_a_bundle_without_critic_says_so_and_can_start_it_afresh(tmp_path):
    spec = ModelSpec("SAC")
    original = make_model(spec)
    bundle = _export(original, tmp_path, include_critic=False)
    with pytest.raises(UnsupportedError, match=r"include_critic=True.*allow_missing_critic=True") as err:
        rlport.to_sb3(bundle, env=_env(spec))
    assert "critic" in str(err.value)
    with pytest.warns(RlportWarning, match="critic.*fresh"):
        model = rlport.to_sb3(bundle, env=_env(spec), allow_missing_critic=True)
    _assert_same_predictions(model, original, sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=6))
    expected = original.policy.critic.state_dict()
    assert not all(torch.equal(v, expected[k]) for k, v in model.policy.critic.state_dict().items())


@pytest.mark.parametrize("algo", ["SAC", "TQC", "CrossQ"])
def test_the_learned_entropy_coefficient_comes_back(algo, tmp_path):
    spec = ModelSpec(algo)
    original = make_model(spec)
    with torch.no_grad():
        original.log_ent_coef.fill_(-2.75)
    model = rlport.to_sb3(_export(original, tmp_path), env=_env(spec))
    assert model.log_ent_coef.item() == pytest.approx(-2.75)
    assert model.ent_coef_optimizer.param_groups[0]["params"][0] is model.log_ent_coef, "the optimizer lost it"
    zip_path = tmp_path / "original.zip"
    original.save(zip_path)
    imported = rlport.import_sb3(zip_path, probes=0, include_critic=True, fingerprint=False)
    assert rlport.to_sb3(imported, env=_env(spec)).log_ent_coef.item() == pytest.approx(-2.75)
    with pytest.warns(RlportWarning, match="fresh"):
        fresh = rlport.to_sb3(
            _export(original, tmp_path, include_critic=False), env=_env(spec), allow_missing_critic=True
        )
    assert fresh.log_ent_coef.item() == 0.0, "an acting-only bundle keeps no training state"


def test_the_variables_member_of_sb3_before_1_0_is_read(tmp_path):
    """SB3 < 1.0 named ``pytorch_variables.pth`` ``tensors.pth``."""
    import zipfile

    spec = ModelSpec("SAC")
    original = make_model(spec)
    with torch.no_grad():
        original.log_ent_coef.fill_(-1.5)
    original.save(tmp_path / "new.zip")
    with zipfile.ZipFile(tmp_path / "new.zip") as src, zipfile.ZipFile(tmp_path / "old.zip", "w") as dst:
        for info in src.infolist():
            name = "tensors.pth" if info.filename == "pytorch_variables.pth" else info.filename
            dst.writestr(name, src.read(info))
    imported = rlport.import_sb3(tmp_path / "old.zip", probes=0, include_critic=True, fingerprint=False)
    assert rlport.to_sb3(imported, env=_env(spec)).log_ent_coef.item() == pytest.approx(-1.5)


def test_an_imported_variables_member_keeps_only_plain_attribute_names(tmp_path):
    import io
    import zipfile

    spec = ModelSpec("SAC")
    make_model(spec).save(tmp_path / "model.zip")
    crafted = io.BytesIO()
    torch.save({"log_ent_coef": torch.full((1,), -0.5), "policy.actor.mu.bias": torch.zeros(3)}, crafted)
    with zipfile.ZipFile(tmp_path / "model.zip") as src, zipfile.ZipFile(tmp_path / "crafted.zip", "w") as dst:
        for info in src.infolist():
            is_variables = info.filename == "pytorch_variables.pth"
            dst.writestr(info.filename, crafted.getvalue() if is_variables else src.read(info))
    bundle = rlport.import_sb3(tmp_path / "crafted.zip", probes=0, include_critic=True, fingerprint=False)
    assert bundle.source["variables"] == ["log_ent_coef"]
    assert rlport.to_sb3(bundle, env=_env(spec)).log_ent_coef.item() == pytest.approx(-0.5)


def test_a_fixed_entropy_coefficient_follows_the_arguments(tmp_path):
    spec = ModelSpec("SAC", kwargs={"ent_coef": 0.2})
    bundle = _export(make_model(spec), tmp_path)
    assert bundle.source["variables"] == ["ent_coef_tensor"]
    assert rlport.to_sb3(bundle, env=_env(spec)).ent_coef_tensor.item() == pytest.approx(0.2)
    assert rlport.to_sb3(bundle, env=_env(spec), ent_coef=0.05).ent_coef_tensor.item() == pytest.approx(0.05)
    learned = _export(make_model(ModelSpec("SAC")), tmp_path)
    model = rlport.to_sb3(learned, env=_env(spec), ent_coef=0.05)  # the user's choice stands
    assert model.log_ent_coef is None and model.ent_coef_tensor.item() == pytest.approx(0.05)


def test_an_entropy_coefficient_of_another_shape_is_refused(tmp_path):
    spec = ModelSpec("SAC")
    bundle = _export(make_model(spec), tmp_path)
    bundle.tensors["variables.log_ent_coef"] = np.zeros(2, np.float32)
    with pytest.raises(UnsupportedError, match=r"log_ent_coef has shape \(2,\)"):
        rlport.to_sb3(bundle, env=_env(spec))


@pytest.mark.parametrize("names", [["policy.actor.mu.weight"], ["__class__"], "log_ent_coef", [3]])
def test_variables_that_are_not_plain_attribute_names_are_refused(names, tmp_path):
    spec = ModelSpec("SAC")
    bundle = _export(make_model(spec), tmp_path)
    bundle.source["variables"] = names
    with pytest.raises(UnsupportedError, match="source.variables must list attribute names"):
        rlport.to_sb3(bundle, env=_env(spec))


def test_crossq_without_critic_names_the_actors_batch_renorm_counters(tmp_path):
    spec = ModelSpec("CrossQ")
    bundle = _export(make_model(spec), tmp_path, include_critic=False)
    with pytest.raises(UnsupportedError, match=r"CrossQ's actor's BatchRenorm step counters, critic are not in it"):
        rlport.to_sb3(bundle, env=_env(spec))


def test_target_networks_start_as_copies_when_the_bundle_has_only_the_actor(tmp_path):
    spec = ModelSpec("DQN", action="discrete")
    original = make_model(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RlportWarning)  # nothing is missing: no warning
        model = rlport.to_sb3(_export(original, tmp_path, include_critic=False), env=_env(spec))
    online, target = model.policy.q_net.state_dict(), model.policy.q_net_target.state_dict()
    assert all(torch.equal(online[k], target[k]) for k in online)
    assert all(torch.equal(online[k], v) for k, v in original.policy.q_net.state_dict().items())


def _vec_normalize(spec: ModelSpec, **kwargs):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([lambda: _env(spec)]), clip_obs=2.5, gamma=0.97, **kwargs)
    rng = np.random.default_rng(11)
    rms = {} if not venv.norm_obs else venv.obs_rms if isinstance(venv.obs_rms, dict) else {None: venv.obs_rms}
    for stats in rms.values():
        stats.mean = rng.normal(0.0, 1.0, stats.mean.shape)
        stats.var = rng.uniform(0.1, 3.0, stats.var.shape)
        stats.count = 4321.0
    venv.ret_rms.mean, venv.ret_rms.var, venv.ret_rms.count = 1.5, 7.0, 99.0
    return venv


@pytest.mark.parametrize(
    "spec, kwargs",
    [(ModelSpec("PPO"), {}), (ModelSpec("SAC", "MultiInputPolicy", obs="dict_vec"), {"norm_obs_keys": ["pos"]})],
    ids=["box", "dict-one-key"],
)
def test_vec_normalize_statistics_and_counts_come_back(spec, kwargs, tmp_path):
    original_venv = _vec_normalize(spec, **kwargs)
    original = make_model(spec, env=original_venv)
    bundle = _export(original, tmp_path, vec_normalize=original_venv)
    model = rlport.to_sb3(bundle, env=_env(spec))
    venv = model.get_vec_normalize_env()
    assert venv is not None and venv.training
    assert (venv.clip_obs, venv.gamma, venv.norm_obs_keys) == (2.5, 0.97, original_venv.norm_obs_keys)
    ours = venv.obs_rms if isinstance(venv.obs_rms, dict) else {None: venv.obs_rms}
    theirs = original_venv.obs_rms if isinstance(original_venv.obs_rms, dict) else {None: original_venv.obs_rms}
    for key in theirs:
        np.testing.assert_array_equal(ours[key].mean, theirs[key].mean)
        np.testing.assert_array_equal(ours[key].var, theirs[key].var)
        assert ours[key].count == 4321.0
    assert (venv.ret_rms.mean, venv.ret_rms.var, venv.ret_rms.count) == (1.5, 7.0, 99.0)
    obs = sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=8)
    actions, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    assert_same_actions(actions, NumpyPolicy(bundle).predict(obs, deterministic=True)[0], "normalised predict")


def test_statistics_without_a_count_are_frozen(tmp_path):
    spec = ModelSpec("PPO")
    venv = _vec_normalize(spec)
    bundle = _export(make_model(spec, env=venv), tmp_path, vec_normalize=venv)
    del bundle.source["vec_normalize"]["obs_count"]  # as bundles written before counts were kept
    with pytest.warns(RlportWarning, match="frozen"):
        model = rlport.to_sb3(bundle, env=_env(spec))
    assert model.get_vec_normalize_env().training is False


def test_a_user_vec_normalize_gets_the_bundles_statistics(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    spec = ModelSpec("PPO")
    venv = _vec_normalize(spec)
    bundle = _export(make_model(spec, env=venv), tmp_path, vec_normalize=venv)
    mine = VecNormalize(DummyVecEnv([lambda: _env(spec)]))
    model = rlport.to_sb3(bundle, env=mine)
    assert model.get_vec_normalize_env() is mine
    np.testing.assert_array_equal(mine.obs_rms.mean, venv.obs_rms.mean)


def test_without_env_the_bundles_env_is_made(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    original = PPO("MlpPolicy", make_vec_env("Pendulum-v1"), n_steps=64, batch_size=64, device="cpu", seed=0)
    model = rlport.to_sb3(_export(original, tmp_path))
    assert model.get_env().envs[0].unwrapped.spec.id == "Pendulum-v1"
    model.learn(64)


def test_without_any_env_the_model_still_predicts_and_says_how_to_learn(tmp_path):
    spec = ModelSpec("TD3")
    original = make_model(spec)
    bundle = _export(original, tmp_path)
    assert bundle.env.id is None  # SpacesEnv is not registered
    with pytest.warns(RlportWarning, match=r"set_env"):
        model = rlport.to_sb3(bundle)
    assert model.get_env() is None
    _assert_same_predictions(model, original, sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=9))
    sac = _export(make_model(ModelSpec("SAC")), tmp_path)
    del sac.source["hyperparameters"]["target_entropy"]  # as SB3 zips hold it: serialized, unread
    with pytest.warns(RlportWarning):
        assert rlport.to_sb3(sac).target_entropy == -3.0  # SB3's "auto", worked out without an env


def test_env_spaces_are_checked(tmp_path):
    spec = ModelSpec("PPO")
    bundle = _export(make_model(spec), tmp_path)
    wide = SpacesEnv(OBS_SPACES["box"], spaces.Box(-5.0, 5.0, (3,), np.float32))
    with pytest.raises(SpaceError, match="action space"):
        rlport.to_sb3(bundle, env=wide)
    other_bounds = SpacesEnv(spaces.Box(-np.inf, np.inf, (6,), np.float64), ACTION_SPACES["box"])
    model = rlport.to_sb3(bundle, env=other_bounds)  # observation bounds and float width may differ
    assert model.observation_space.dtype == np.float64
    image = _export(make_model(ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete")), tmp_path)
    not_image = SpacesEnv(spaces.Box(0.0, 1.0, (36, 36, 1), np.uint8), ACTION_SPACES["discrete"])
    with pytest.raises(SpaceError, match="image"):
        rlport.to_sb3(image, env=not_image)


def test_only_sb3_bundles_and_known_algorithms(tmp_path):
    spec = ModelSpec("A2C")
    bundle = _export(make_model(spec), tmp_path)
    bundle.source["algorithm"] = None
    with pytest.raises(UnsupportedError, match="algorithm="):
        rlport.to_sb3(bundle, env=_env(spec))
    assert type(rlport.to_sb3(bundle, env=_env(spec), algorithm="A2C")).__name__ == "A2C"
    with pytest.raises(UnsupportedError, match="'HAL9000' is not supported"):
        rlport.to_sb3(bundle, env=_env(spec), algorithm="HAL9000")
    bundle.source = {}
    with pytest.raises(UnsupportedError, match="not made from a Stable-Baselines3 model"):
        rlport.to_sb3(bundle, env=_env(spec))


@pytest.mark.parametrize(
    "field, value",
    [
        ("policy_class", "os.system"),
        ("activation_fn", "builtins.eval"),
        ("features_extractor_class", "subprocess.Popen"),
    ],
)
def test_classes_outside_torch_and_sb3_are_never_imported(field, value, tmp_path):
    spec = ModelSpec("PPO")
    bundle = _export(make_model(spec), tmp_path)
    if field == "policy_class":
        bundle.source[field] = value
    else:
        bundle.source["policy_kwargs"][field] = value
    with pytest.raises(UnsupportedError, match=rf"{field} is {value}, which is not part of torch"):
        rlport.to_sb3(bundle, env=_env(spec))


def test_a_class_can_be_passed_instead(tmp_path):
    spec = ModelSpec("PPO", policy_kwargs={"activation_fn": torch.nn.ELU})
    original = make_model(spec)
    bundle = _export(original, tmp_path)
    bundle.source["policy_kwargs"]["activation_fn"] = "mypackage.layers.ELU"  # a class of the user's own
    model = rlport.to_sb3(bundle, env=_env(spec), policy_kwargs={"activation_fn": torch.nn.ELU})
    _assert_same_predictions(model, original, sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=10))


def test_weights_that_do_not_fit_are_named(tmp_path):
    spec = ModelSpec("PPO")
    bundle = _export(make_model(spec), tmp_path)
    bundle.source["policy_kwargs"]["net_arch"] = [32, 32]  # not the architecture the weights came from
    with pytest.raises(UnsupportedError, match=r"do not fit the PPO .*other shapes: mlp_extractor"):
        rlport.to_sb3(bundle, env=_env(spec))
    bundle.source["policy_kwargs"]["net_arch"] = [16]
    with pytest.raises(UnsupportedError, match="names it does not have: mlp_extractor.policy_net.2"):
        rlport.to_sb3(bundle, env=_env(spec))


def test_a_saved_zip_imported_without_naming_the_algorithm(tmp_path):
    for spec in (ModelSpec("A2C"), ModelSpec("PPO"), ModelSpec("TRPO")):
        original = make_model(spec)
        original.save(tmp_path / "model.zip")
        bundle = rlport.import_sb3(tmp_path / "model.zip", include_critic=True, fingerprint=False)
        assert bundle.source["algorithm"] == spec.algo
        model = rlport.to_sb3(bundle, env=_env(spec))
        assert type(model) is type(original)
        _assert_same_predictions(model, original, sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=12))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_files_in_older_layouts_come_back(layout, tmp_path):
    spec = ModelSpec("A2C", policy_kwargs={"activation_fn": torch.nn.ELU})
    original = make_model(spec)
    original.save(tmp_path / "model.zip")
    bundle = rlport.import_sb3(LAYOUTS[layout](tmp_path / "model.zip"), include_critic=True, fingerprint=False)
    model = rlport.to_sb3(bundle, env=_env(spec))
    assert model.policy.activation_fn is torch.nn.ELU and model.policy.optimizer_class is torch.optim.RMSprop
    _assert_same_predictions(model, original, sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=13))


def test_layers_shared_by_actor_and_critic_before_sb3_1_8_are_untied(tmp_path):
    """SB3 < 1.8 could share layers (``mlp_extractor.shared_net``); today's SB3 gets them in both branches."""
    spec = ModelSpec("PPO", policy_kwargs={"net_arch": {"pi": [16, 12], "vf": [16, 8]}})
    original = make_model(spec)
    with torch.no_grad():  # tie the first layers, as a shared layer is
        original.policy.mlp_extractor.value_net[0].load_state_dict(
            original.policy.mlp_extractor.policy_net[0].state_dict()
        )
    bundle = _export(original, tmp_path)
    renames = {
        "mlp_extractor.policy_net.0.": "mlp_extractor.shared_net.0.",
        "mlp_extractor.policy_net.2.": "mlp_extractor.policy_net.0.",
        "mlp_extractor.value_net.2.": "mlp_extractor.value_net.0.",
    }

    def old(name: str) -> str | None:
        if name.startswith("mlp_extractor.value_net.0."):
            return None  # the shared layer's copy did not exist
        return next((new + name[len(o) :] for o, new in renames.items() if name.startswith(o)), name)

    bundle.tensors = {old(n): v for n, v in bundle.tensors.items() if old(n)}
    bundle.source["state_dict"] = [old(n) for n in bundle.source["state_dict"] if old(n)]
    bundle.source["policy_kwargs"]["net_arch"] = [16, {"pi": [12], "vf": [8]}]  # how SB3 1.x wrote it
    model = rlport.to_sb3(bundle, env=_env(spec))
    assert model.policy.net_arch == {"pi": [16, 12], "vf": [16, 8]}
    obs = sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=14)
    _assert_same_predictions(model, original, obs)
    tensor = torch.as_tensor(obs)
    torch.testing.assert_close(model.policy.predict_values(tensor), original.policy.predict_values(tensor))


def test_settings_this_sb3_cannot_build_are_an_unsupported_error(tmp_path):
    spec = ModelSpec("PPO")
    bundle = _export(make_model(spec), tmp_path)
    bundle.source["policy_kwargs"]["net_arch"] = {"pi": "wide"}
    with pytest.raises(UnsupportedError, match="cannot be built with the recorded settings"):
        rlport.to_sb3(bundle, env=_env(spec))


def test_reward_normalisation_alone_comes_back_too(tmp_path):
    spec = ModelSpec("PPO")
    venv = _vec_normalize(spec, norm_obs=False)
    bundle = _export(make_model(spec, env=venv), tmp_path, vec_normalize=venv)
    assert not any(name.startswith("vecnormalize.") for name in bundle.tensors)
    wrapper = rlport.to_sb3(bundle, env=_env(spec)).get_vec_normalize_env()
    assert wrapper is not None and (wrapper.norm_obs, wrapper.norm_reward) == (False, True)
    assert (wrapper.ret_rms.var, wrapper.ret_rms.count) == (7.0, 99.0)


class GoalEnv(gym.Env):
    """A goal-conditioned env (the HER interface: dict observation and ``compute_reward``)."""

    observation_space = spaces.Dict(
        {
            "observation": spaces.Box(-1.0, 1.0, (3,), np.float32),
            "achieved_goal": spaces.Box(-1.0, 1.0, (2,), np.float32),
            "desired_goal": spaces.Box(-1.0, 1.0, (2,), np.float32),
        }
    )
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.steps += 1
        obs = self.observation_space.sample()
        return (
            obs,
            float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], {})),
            False,
            self.steps >= 5,
            {},
        )

    def compute_reward(self, achieved_goal, desired_goal, info):
        return -np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)


def _her_model():
    from stable_baselines3 import SAC, HerReplayBuffer

    kwargs = {"n_sampled_goal": 2, "goal_selection_strategy": "final"}
    return SAC("MultiInputPolicy", GoalEnv(), replay_buffer_class=HerReplayBuffer, replay_buffer_kwargs=kwargs,
               buffer_size=200, learning_starts=10, policy_kwargs={"net_arch": [16]}, device="cpu", seed=0)  # fmt: skip


@pytest.mark.parametrize("route", ["from_sb3", "import_sb3"])
def test_a_her_model_comes_back_with_its_replay_buffer(route, tmp_path):
    original = _her_model()
    if route == "from_sb3":
        bundle = _export(original, tmp_path)
    else:
        original.save(tmp_path / "her.zip")
        bundle = rlport.import_sb3(tmp_path / "her.zip", probes=0, include_critic=True, fingerprint=False)
    recorded = bundle.source["hyperparameters"]
    assert recorded["replay_buffer_class"] == "stable_baselines3.her.her_replay_buffer.HerReplayBuffer"
    model = rlport.to_sb3(bundle, env=GoalEnv())
    buffer = model.replay_buffer
    assert type(buffer).__name__ == "HerReplayBuffer"
    assert (buffer.n_sampled_goal, buffer.goal_selection_strategy.name) == (2, "FINAL")
    model.learn(30)  # samples from the HER buffer after learning_starts


def test_a_her_model_without_env_says_how_to_keep_her(tmp_path):
    bundle = _export(_her_model(), tmp_path)
    with pytest.warns(RlportWarning) as caught:
        model = rlport.to_sb3(bundle)
    assert any(re.search(r"HerReplayBuffer.*pass env=", str(w.message)) for w in caught), [
        str(w.message) for w in caught
    ]
    assert model.replay_buffer_class.__name__ == "DictReplayBuffer"


def test_replay_buffer_settings_this_sb3_dropped_are_left_out_with_a_warning(tmp_path):
    bundle = _export(_her_model(), tmp_path)
    bundle.source["hyperparameters"]["replay_buffer_kwargs"] = {"online_sampling": True, "n_sampled_goal": 3}
    with pytest.warns(RlportWarning, match="online_sampling dropped"):
        model = rlport.to_sb3(bundle, env=GoalEnv())
    assert model.replay_buffer.n_sampled_goal == 3


def test_a_replay_buffer_class_outside_sb3_is_refused_and_can_be_passed(tmp_path):
    from stable_baselines3.common.buffers import DictReplayBuffer

    bundle = _export(_her_model(), tmp_path)
    bundle.source["hyperparameters"]["replay_buffer_class"] = "mypkg.buffers.MyBuffer"
    with pytest.raises(UnsupportedError, match=r"rlport imports only those.*replay_buffer_class=YourClass"):
        rlport.to_sb3(bundle, env=GoalEnv())
    model = rlport.to_sb3(bundle, env=GoalEnv(), replay_buffer_class=DictReplayBuffer, replay_buffer_kwargs={})
    assert type(model.replay_buffer) is DictReplayBuffer


def test_exporting_a_her_model_says_how_sb3_loads_it(tmp_path):
    from stable_baselines3 import SAC

    from rlport.frameworks.sb3.to_sb3 import export_sb3

    with pytest.warns(RlportWarning, match=r"SAC.load\(path, env=goal_env\)"):
        (path,) = export_sb3(_export(_her_model(), tmp_path), tmp_path / "her.zip")
    assert type(SAC.load(path, env=GoalEnv(), device="cpu").replay_buffer).__name__ == "HerReplayBuffer"


MALFORMED = [
    ("algorithm", ["PPO"], r"algorithm \['PPO'\] is not supported"),
    ("framework", "x" * 1_000_000, "not made from a Stable-Baselines3 model"),
    ("state_dict", "mlp_extractor", "source.state_dict must list tensor names, found mlp_extractor"),
    ("state_dict", [["unhashable"]], "source.state_dict must list tensor names"),
    ("vec_normalize", [1.0], "source.vec_normalize must be a dict, found a list"),
    ("vec_normalize", {"norm_obs": "yes"}, "norm_obs must be true or false, found a str"),
    ("vec_normalize", {"norm_obs": True, "clip_obs": "inf"}, "clip_obs must be a finite number, found 'inf'"),
    ("vec_normalize", {"norm_obs": True, "clip_obs": float("nan")}, "clip_obs must be a finite number"),
    ("vec_normalize", {"norm_reward": True, "ret_var": -1.0}, "ret_var must be a finite non-negative number"),
    ("vec_normalize", {"norm_obs": True, "norm_obs_keys": "pos"}, "norm_obs_keys must list observation keys"),
    ("hyperparameters", {"n_steps": "x" * 1_000_000}, r"cannot be built with the recorded settings .*characters"),
]


@pytest.mark.parametrize("field, value, message", MALFORMED, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(MALFORMED)])
def test_malformed_source_fields_are_refused_with_short_messages(field, value, message, tmp_path):
    spec = ModelSpec("PPO")
    bundle = _export(make_model(spec), tmp_path)
    bundle.source[field] = value
    with pytest.raises(UnsupportedError, match=message) as caught:
        rlport.to_sb3(bundle, env=_env(spec))
    assert len(str(caught.value)) < 2000


def test_normalisation_statistics_missing_or_of_another_shape_are_refused(tmp_path):
    spec = ModelSpec("PPO")
    venv = _vec_normalize(spec)
    bundle = _export(make_model(spec, env=venv), tmp_path, vec_normalize=venv)
    bundle.tensors["vecnormalize.obs.var"] = np.ones(3, np.float32)
    with pytest.raises(UnsupportedError, match=r"vecnormalize.obs.mean / .var are missing or not of the env's"):
        rlport.to_sb3(bundle, env=_env(spec))
    del bundle.tensors["vecnormalize.obs.var"]
    with pytest.raises(UnsupportedError, match=r"vecnormalize.obs.mean / .var are missing"):
        rlport.to_sb3(bundle, env=_env(spec))


def test_a_replay_buffer_larger_than_any_machine_is_refused(tmp_path):
    spec = ModelSpec("DQN", obs="discrete", action="discrete")
    bundle = _export(make_model(spec), tmp_path)
    bundle.source["hyperparameters"]["buffer_size"] = 10**15  # petabytes: numpy refuses it at once, nothing is touched
    with pytest.raises(UnsupportedError, match=r"do not fit in memory .*buffer_size="):
        rlport.to_sb3(bundle, env=_env(spec))


def test_branch_layers_without_weights_are_refused(tmp_path):
    spec = ModelSpec("PPO")
    bundle = _export(make_model(spec), tmp_path)
    bundle.tensors["mlp_extractor.shared_net.0.weight"] = bundle.tensors["mlp_extractor.policy_net.0.weight"]
    bundle.tensors["mlp_extractor.policy_net.7.bias"] = np.zeros(3, np.float32)  # a layer with a bias only
    bundle.source["state_dict"] += ["mlp_extractor.shared_net.0.weight", "mlp_extractor.policy_net.7.bias"]
    with pytest.raises(UnsupportedError, match="mlp_extractor.policy_net layers lack a 2-d weight each"):
        rlport.to_sb3(bundle, env=_env(spec))
