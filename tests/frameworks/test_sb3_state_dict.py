"""Bare SB3 weights (``torch.save(model.policy.state_dict(), path)``) imported with the algorithm and the spaces.

Every model is built in-process (tests/sb3_models.py), its state_dict saved with torch.save into
tmp_path, imported, and the bundle's deterministic actions compared with the SB3 model's own on
observations it never saw.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import stable_baselines3
import torch
from torch import nn

import rlport
from isolation import BLOCKER
from rlport.errors import RlportWarning, SpaceError, UnsafeFileError, UnsupportedError
from rlport.frameworks.sb3.state_dict import import_state_dict, policy_observation_space
from rlport.frameworks.sb3.state_dict_facts import FAMILIES
from rlport.readers.gym_spaces import spec_from_space
from sb3_models import ACTION_SPACES, ALGOS, OBS_SPACES, ModelSpec, assert_same_actions, make_model, sample_obs, take

N_OBS = 500
SRC = Path(__file__).resolve().parents[2] / "src"


def _save(model, tmp_path: Path) -> Path:
    path = tmp_path / "weights.pth"
    torch.save(model.policy.state_dict(), path)
    return path


def _spaces(spec: ModelSpec) -> dict:
    """The env's spaces as JSON space specs (images channel-last, as the env gives them)."""
    return {"observation_space": spec_from_space(OBS_SPACES[spec.obs]).to_json(),
            "action_space": spec_from_space(ACTION_SPACES[spec.action]).to_json()}  # fmt: skip


def _import(spec: ModelSpec, path: Path, **kwargs):
    kwargs = {**_spaces(spec), "fingerprint": False, "probes": 32, **kwargs}
    return import_state_dict(path, algorithm=spec.algo, **kwargs)


def _check_actions(model, bundle, at_least: int = 3) -> None:
    """The bundle's deterministic actions are the SB3 model's, batched and one at a time, and they vary."""
    policy = rlport.load(bundle)
    obs = sample_obs(model.observation_space, N_OBS, seed=11)
    theirs, _ = model.predict(obs, deterministic=True)
    ours, _ = policy.predict(obs, deterministic=True)
    assert_same_actions(ours, theirs, "batch")
    assert len(np.unique(np.asarray(theirs).reshape(N_OBS, -1), axis=0)) >= at_least, "a constant policy: a weak test"
    for i in range(4):
        assert_same_actions(policy.predict(take(obs, i), deterministic=True)[0],
                            model.predict(take(obs, i), deterministic=True)[0], f"observation {i}")  # fmt: skip


def _case(spec: ModelSpec, given: dict | None = None, id: str | None = None):
    return pytest.param(spec, given or {}, id=id or str(spec))


CASES = [
    _case(ModelSpec("A2C", action="discrete")),
    _case(ModelSpec("A2C", action="box", kwargs={"use_sde": True}), id="A2C-gSDE"),
    _case(ModelSpec("PPO", action="box")),
    _case(ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete")),
    _case(
        ModelSpec("PPO", "CnnPolicy", obs="rgb", action="box", policy_kwargs={"share_features_extractor": False}),
        id="PPO-Cnn-unshared",
    ),
    _case(ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="discrete")),
    _case(
        ModelSpec(
            "PPO",
            action="multidiscrete",
            policy_kwargs={"net_arch": {"pi": [24, 8], "vf": [4]}, "activation_fn": nn.ReLU},
        ),
        {"activation_fn": "ReLU"},
        id="PPO-arch-ReLU",
    ),
    _case(ModelSpec("TRPO", obs="discrete", action="multibinary")),
    _case(ModelSpec("MaskablePPO", action="discrete")),
    _case(ModelSpec("MaskablePPO", "MultiInputPolicy", obs="dict", action="discrete")),
    _case(ModelSpec("DQN", action="discrete")),
    _case(ModelSpec("DQN", "CnnPolicy", obs="gray", action="discrete")),
    _case(ModelSpec("DQN", "MultiInputPolicy", obs="dict_mixed", action="discrete")),
    _case(ModelSpec("QRDQN", obs="box2d", action="discrete")),
    _case(ModelSpec("SAC", action="box")),
    _case(ModelSpec("SAC", action="box2d", kwargs={"use_sde": True}), id="SAC-gSDE"),
    _case(ModelSpec("SAC", "MultiInputPolicy", obs="dict", action="box")),
    _case(
        ModelSpec("SAC", "CnnPolicy", obs="rgb", action="unit", policy_kwargs={"share_features_extractor": True}),
        id="SAC-Cnn-shared",
    ),
    _case(
        ModelSpec("TQC", action="box", policy_kwargs={"n_critics": 3, "activation_fn": nn.LeakyReLU}),
        {"activation_fn": nn.LeakyReLU},
        id="TQC-3-critics-LeakyReLU",
    ),
    _case(ModelSpec("CrossQ", action="box")),
    _case(ModelSpec("TD3", action="box", policy_kwargs={"net_arch": {"pi": [8, 8, 8], "qf": [4]}})),
    _case(ModelSpec("DDPG", "CnnPolicy", obs="gray", action="unit")),
    _case(ModelSpec("ARS", action="box")),
    _case(ModelSpec("ARS", "LinearPolicy", action="discrete")),
    _case(ModelSpec("A2C", action="box", policy_kwargs={"activation_fn": nn.PReLU}), id="A2C-PReLU-read"),
]


@pytest.mark.parametrize(("spec", "given"), CASES)
def test_actions_equal_sb3(spec, given, tmp_path):
    """Every algorithm and policy kind: the bundle acts as the model whose state_dict it was."""
    model = make_model(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = _import(spec, _save(model, tmp_path), policy_kwargs=given)
    _check_actions(model, bundle)
    assumed = bundle.source["assumed"]
    default_activation = not given and "activation_fn" not in spec.policy_kwargs and spec.policy != "LinearPolicy"
    assert ("activation_fn" in assumed) == default_activation
    assert ("normalize_images" in assumed) == (spec.obs in ("gray", "rgb", "dict"))
    warned = " ".join(str(w.message) for w in caught if issubclass(w.category, RlportWarning))
    assert all(name in warned for name in assumed)
    assert bundle.probe_info.source.startswith("stable-baselines3")


@pytest.mark.parametrize("policy_kwargs", [{}, {"shared_lstm": True, "enable_critic_lstm": False},
                                           {"enable_critic_lstm": False, "n_lstm_layers": 2}])  # fmt: skip
def test_recurrent_ppo(policy_kwargs, tmp_path):
    """LSTM sizes, layers and critic layout read from the tensors; states carried step by step."""
    spec = ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box", policy_kwargs=policy_kwargs)
    model = make_model(spec)
    bundle = _import(spec, _save(model, tmp_path))
    assert {k: bundle.source["policy_kwargs"][k] for k in policy_kwargs} == policy_kwargs
    policy, n_envs = rlport.load(bundle), 4
    obs = sample_obs(model.observation_space, n_envs * 50, seed=3)
    ours_state = theirs_state = None
    for t in range(50):
        step, start = take(obs, slice(t * n_envs, (t + 1) * n_envs)), np.full(n_envs, t % 20 == 0)
        theirs, theirs_state = model.predict(step, state=theirs_state, episode_start=start, deterministic=True)
        ours, ours_state = policy.predict(step, state=ours_state, episode_start=start, deterministic=True)
        assert_same_actions(ours, theirs, f"step {t}")


def test_env_id_gives_the_spaces_and_is_recorded(tmp_path):
    """``--env CartPole-v1``: the spaces come from the env, the id is recorded."""
    import gymnasium as gym

    spec = ModelSpec("A2C", action="discrete")
    model = make_model(spec, env=gym.make("CartPole-v1"))
    bundle = import_state_dict(_save(model, tmp_path), algorithm="A2C", env="CartPole-v1", fingerprint=False)
    assert bundle.env.id == "CartPole-v1"
    assert bundle.observation_space == spec_from_space(model.observation_space)
    _check_actions(model, bundle, at_least=2)


def test_policy_pth_out_of_an_sb3_zip(tmp_path):
    """The ``policy.pth`` member of a ``model.save()`` archive is the same format."""
    spec = ModelSpec("SAC", action="box")
    model = make_model(spec)
    model.save(tmp_path / "model.zip")
    member = tmp_path / "policy.pth"
    member.write_bytes(zipfile.ZipFile(tmp_path / "model.zip").read("policy.pth"))
    _check_actions(model, _import(spec, member))


def test_vecnormalize_statistics_are_applied(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from sb3_models import SpacesEnv

    spec = ModelSpec("PPO", action="discrete")
    venv = VecNormalize(DummyVecEnv([lambda: SpacesEnv(OBS_SPACES["box"], ACTION_SPACES["discrete"])]),
                        norm_reward=False, clip_obs=2.0)  # fmt: skip
    rng = np.random.default_rng(0)
    venv.obs_rms.mean, venv.obs_rms.var = rng.normal(size=6), rng.uniform(0.1, 3.0, size=6)
    venv.save(tmp_path / "vecnormalize.pkl")
    model = make_model(spec)
    bundle = _import(spec, _save(model, tmp_path), vecnormalize=tmp_path / "vecnormalize.pkl")
    raw = sample_obs(OBS_SPACES["box"], N_OBS, seed=4)
    theirs, _ = model.predict(venv.normalize_obs(raw), deterministic=True)
    assert_same_actions(rlport.load(bundle).predict(raw, deterministic=True)[0], theirs, "normalised")
    assert not np.array_equal(theirs, model.predict(raw, deterministic=True)[0]), "statistics that change nothing"


def test_channel_last_images_are_transposed_as_sb3_does():
    gray = spec_from_space(OBS_SPACES["gray"])
    assert policy_observation_space(gray).shape == (1, 36, 36)
    first = spec_from_space(OBS_SPACES["rgb_first"])
    assert policy_observation_space(first) is first


def test_the_class_table_is_sb3s_own():
    """Each algorithm's policy aliases name the classes the installed SB3 / sb3-contrib build."""
    for name, family in FAMILIES.items():
        aliases = ALGOS[name].policy_aliases
        assert set(family.classes) == set(aliases), name
        for alias, cls in aliases.items():
            assert f"{family.module}.{family.classes[alias]}" == f"{cls.__module__}.{cls.__name__}", (name, alias)


# ---- facts: given, contradicted, assumed --------------------------------------------------


def test_assumed_activation_is_said_and_recorded(tmp_path):
    spec = ModelSpec("PPO", action="discrete")
    with pytest.warns(RlportWarning, match=r"activation_fn.*assumed activation_fn=Tanh.*--policy-kwargs"):
        bundle = _import(spec, _save(make_model(spec), tmp_path))
    assert bundle.source["assumed"] == ["activation_fn"]
    assert bundle.source["policy_kwargs"]["activation_fn"] == "torch.nn.modules.activation.Tanh"
    assert bundle.source["policy_kwargs"]["net_arch"] == {"pi": [16, 16], "vf": [16, 16]}


def test_a_wrong_activation_the_tensors_cannot_contradict_changes_the_actions(tmp_path):
    """Why an assumed activation is warned about: ReLU given for a Tanh model is taken, and acts otherwise."""
    spec = ModelSpec("PPO", action="discrete")
    model = make_model(spec)
    bundle = _import(spec, _save(model, tmp_path), policy_kwargs={"activation_fn": "ReLU"})
    assert bundle.source["assumed"] == []
    obs = sample_obs(model.observation_space, N_OBS, seed=1)
    assert not np.array_equal(rlport.load(bundle).predict(obs, deterministic=True)[0],
                              model.predict(obs, deterministic=True)[0])  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "given", "named"),
    [
        (ModelSpec("PPO", action="discrete"), {"activation_fn": "PReLU"}, "activation_fn=.*PReLU.*hold no PReLU"),
        (
            ModelSpec("PPO", action="discrete", policy_kwargs={"activation_fn": nn.PReLU}),
            {"activation_fn": "Tanh"},
            "activation_fn=.*Tanh.*hold PReLU weights",
        ),
        (ModelSpec("PPO", action="discrete"), {"net_arch": [64, 64]}, "net_arch="),
        (ModelSpec("SAC", action="box"), {"n_critics": 1}, "n_critics=1"),
        (
            ModelSpec("DQN", "CnnPolicy", obs="gray", action="discrete"),
            {"features_extractor_kwargs": {"features_dim": 8}},
            "features_extractor_kwargs=",
        ),
        (ModelSpec("A2C", action="box"), {"use_sde": True}, "use_sde=True"),
    ],
    ids=["PReLU-given", "PReLU-held", "net_arch", "n_critics", "features_dim", "use_sde"],
)
def test_given_facts_the_tensors_contradict_are_refused(spec, given, named, tmp_path):
    with pytest.raises(UnsupportedError, match=named):
        _import(spec, _save(make_model(spec), tmp_path), policy_kwargs=given)


def test_a_fact_sb3_cannot_build_is_refused_by_the_reference(tmp_path):
    """A fact only SB3 can judge: an argument its policy does not take."""
    spec = ModelSpec("DQN", action="discrete")
    with pytest.raises(UnsupportedError, match="stable-baselines3 cannot build DQNPolicy.*no_such_argument"):
        _import(spec, _save(make_model(spec), tmp_path), policy_kwargs={"no_such_argument": 1})


def test_wrong_algorithm_is_refused(tmp_path):
    spec = ModelSpec("SAC", action="box")
    with pytest.raises(UnsupportedError, match=r"no actor\.mu\.0\.\* tensor, which every TD3 policy has"):
        _import(ModelSpec("TD3", action="box"), _save(make_model(spec), tmp_path))
    with pytest.raises(UnsupportedError, match="algorithm 'Sac' is not one rlport imports weights of; known: A2C"):
        _import(ModelSpec("Sac", action="box"), tmp_path / "weights.pth")


def _edited(model, tmp_path: Path, drop: str | None = None, add: str | None = None) -> Path:
    state = model.policy.state_dict()
    if drop:
        state.pop(drop)
    if add:
        state[add] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(("drop", "add", "message"), [
    ("value_net.weight", None, r"Missing key\(s\).*value_net.weight"),
    (None, "action_net.extra", r"Unexpected key\(s\).*action_net.extra"),
    ("mlp_extractor.policy_net.2.bias", None, "mlp_extractor.policy_net.2.bias"),
])  # fmt: skip
def test_missing_or_extra_tensors_are_refused(drop, add, message, tmp_path):
    spec = ModelSpec("PPO", action="discrete")
    with pytest.raises(UnsupportedError, match=message):
        _import(spec, _edited(make_model(spec), tmp_path, drop, add))


def test_no_spaces_is_refused(tmp_path):
    spec = ModelSpec("PPO", action="discrete")
    with pytest.raises(SpaceError, match="pass the env it was trained in.*--observation-space"):
        import_state_dict(_save(make_model(spec), tmp_path), algorithm="PPO")


# ---- hostile files and no SB3 ---------------------------------------------------------------


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch '{self.target}'",)


def _hostile(tmp_path: Path, zip_format: bool) -> Path:
    """A real torch file whose pickle is replaced by one that would run a command."""
    payload = pickle.dumps({"w": _Payload(tmp_path / "pwned")}, protocol=2)
    path = tmp_path / "hostile.pth"
    if not zip_format:
        path.write_bytes(payload)
        return path
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, payload if info.filename.endswith("/data.pkl") else src.read(info))
    return path


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_hostile_pth_never_runs(zip_format, tmp_path):
    path = _hostile(tmp_path, zip_format)
    with pytest.raises(UnsafeFileError, match="system"):
        _import(ModelSpec("PPO", action="discrete"), path)
    assert not (tmp_path / "pwned").exists()


def test_without_sb3_it_warns_that_nothing_was_compared(tmp_path):
    """torch, SB3 and gymnasium unimportable: rlport reads the tensors alone, says so, and still acts as SB3."""
    spec = ModelSpec("TD3", action="box")
    model = make_model(spec)
    weights, extra = _save(model, tmp_path), _edited(model, tmp_path, add="actor.mu.extra")
    script = BLOCKER + textwrap.dedent("""
        import json, sys, warnings
        from rlport.frameworks.sb3.state_dict import import_state_dict
        spaces = json.loads(sys.argv[1])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bundle = import_state_dict(sys.argv[2], algorithm="TD3", fingerprint=False, **spaces)
        bundle.save(sys.argv[3])
        print("WARN", " ".join(str(w.message) for w in caught))
        try:
            import_state_dict(sys.argv[4], algorithm="TD3", fingerprint=False, **spaces)
        except Exception as exc:
            print("EXTRA", type(exc).__name__, exc)
    """)
    args = [json.dumps(_spaces(spec)), str(weights), str(tmp_path / "x.rlp"), str(extra)]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "no reference compared" in out.stdout and "activation_fn" in out.stdout
    assert "EXTRA UnsupportedError" in out.stdout and "actor.mu.extra" in out.stdout
    bundle = rlport.Bundle.load(tmp_path / "x.rlp")
    assert bundle.probe_info.source.startswith("rlport numpy runtime")
    _check_actions(model, bundle)


def test_sb3_version_is_what_the_probes_name(tmp_path):
    spec = ModelSpec("DQN", action="discrete")
    bundle = _import(spec, _save(make_model(spec), tmp_path))
    assert stable_baselines3.__version__ in bundle.probe_info.source
