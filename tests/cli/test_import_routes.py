"""``rlport import SOURCE -o OUT.rlp`` routed by what SOURCE is, end to end through the command line.

Each route (an SB3 ``.zip``, bare SB3 weights ``.pth``, an RL Zoo run folder or the model inside one, a
Stable Baselines 2 ``.pkl`` / ``.zip``) makes a bundle that ``rlport run`` plays and whose actions are the
source's: the SB3 model built here for SB3 files, SB3's own load of the RL Zoo's ``.zip``, the published
return for the real SB2 agents of ``../shared/sb2-sample`` (``$RLPORT_SB2_SAMPLE``), which TensorFlow-era
files give no other way to check. Every refusal exits 2 with one message and leaves no file behind.

The SB2 sample is expected in CI (``CI=true``) and when ``$RLPORT_SB2_SAMPLE`` is set: there a missing
sample fails; elsewhere the tests that need it skip.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from torch import nn

import rlport
from rlport.cli.main import main
from rlport.readers.gym_spaces import spec_from_space
from sb3_models import ACTION_SPACES, OBS_SPACES, ModelSpec, assert_same_actions, make_model, perturb, sample_obs

REPOSITORY = Path(__file__).resolve().parents[2]
SB2_ENV_VAR = "RLPORT_SB2_SAMPLE"
SB2_DEFAULT = Path("..") / "shared" / "sb2-sample"
PUBLISHED = {
    "a2c/CartPole-v1.pkl": ("CartPole-v1", 499.9, 1.7, 300),
    "trpo/CartPole-v1.pkl": ("CartPole-v1", 485.4, 70.5, 309),
    "acktr/Pendulum-v0.zip": ("Pendulum-v1", -213.8, 137.9, 750),
}
"""Agent -> (env today, published mean, std, episodes): the RL Zoo's benchmark.md as the sample's README quotes it."""
EPISODES = 5
"""Episodes each SB2 agent plays: verify's returns check decides from 5 on."""


def _sb2_sample_path() -> Path:
    value = os.environ.get(SB2_ENV_VAR, "").strip()
    return Path(value).expanduser().resolve() if value else (REPOSITORY / SB2_DEFAULT).resolve()


SB2_SAMPLE = _sb2_sample_path()


@pytest.fixture(scope="module")
def sb2_sample() -> Path:
    """The SB2 sample folder; fails where it is expected (CI, or $RLPORT_SB2_SAMPLE set), skips elsewhere."""
    if all((SB2_SAMPLE / agent).is_file() for agent in PUBLISHED):
        return SB2_SAMPLE
    hint = f"no SB2 sample ({', '.join(PUBLISHED)}) at {SB2_SAMPLE}; set {SB2_ENV_VAR} or place it at {SB2_DEFAULT}"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"} or os.environ.get(SB2_ENV_VAR, "").strip():
        pytest.fail(f"{hint} (the sample is expected here)", pytrace=False)
    pytest.skip(hint)


def _cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """``rlport ARGV`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()  # what earlier steps printed is not this command's
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _import_json(capsys, source: Path, output: Path, *options: str) -> dict[str, Any]:
    """``rlport import SOURCE -o OUTPUT --json``, which must succeed; its JSON answer."""
    code, out, err = _cli(capsys, "import", source, "-o", output, "--json", *options)
    assert code == 0, err
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["output"] == str(output) and data["size_bytes"] == output.stat().st_size > 0
    return data


def _run_json(capsys, bundle: Path, episodes: int = 1) -> dict[str, Any]:
    """``rlport run BUNDLE --episodes N --json`` (the env recorded in the bundle), which must succeed."""
    code, out, err = _cli(capsys, "run", bundle, "--episodes", str(episodes), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["episodes"] == episodes == len(result["returns"])
    return result


def _cartpole_obs(n: int = 400, seed: int = 3) -> np.ndarray:
    """CartPole observations a policy meets (the space's bounds are float32's largest value: not for sampling)."""
    scale = np.array([1.0, 1.5, 0.12, 1.5], np.float32)
    return (np.random.default_rng(seed).normal(size=(n, 4)) * scale).astype(np.float32)


def _same_actions_as(bundle: Path, theirs_of: Any, obs: np.ndarray, at_least: int = 2) -> None:
    """The bundle's deterministic actions on ``obs`` are ``theirs_of(obs)``, and they vary."""
    ours, _ = rlport.load(bundle).predict(obs, deterministic=True)
    theirs = theirs_of(obs)
    assert_same_actions(ours, theirs, str(bundle))
    assert len(np.unique(np.asarray(theirs).reshape(len(obs), -1), axis=0)) >= at_least, "a constant policy"


def _sb3_actions(model: Any) -> Any:
    return lambda obs: model.predict(obs, deterministic=True)[0]


def _left(folder: Path) -> list[str]:
    """Every file under ``folder`` (a refused import must leave none, temporary ones included)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ---- SB3 models built here -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartpole_ppo() -> PPO:
    """A PPO on CartPole-v1 with every weight perturbed (seeded): its actions depend on the observation."""
    torch.manual_seed(0)
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    perturb(model.policy, seed=0)
    model.policy.set_training_mode(False)
    return model


@pytest.fixture(scope="module")
def cartpole_files(cartpole_ppo, tmp_path_factory) -> Path:
    """The model as ``model.save`` writes it (model.zip) and as ``torch.save(policy.state_dict())`` (weights.pth)."""
    folder = tmp_path_factory.mktemp("cartpole-sources")
    cartpole_ppo.save(folder / "model.zip")
    torch.save(cartpole_ppo.policy.state_dict(), folder / "weights.pth")
    return folder


def test_an_sb3_zip_imports_runs_and_acts_as_the_model(cartpole_ppo, cartpole_files, tmp_path, capsys):
    bundle = tmp_path / "zip.rlp"
    data = _import_json(capsys, cartpole_files / "model.zip", bundle, "--env", "CartPole-v1")
    assert (data["framework"], data["algorithm"]) == ("SB3", "PPO")
    assert data["sb3_version"] == stable_baselines3.__version__
    assert data["env"]["id"] == "CartPole-v1" and data["normalized"] is False
    assert data["zoo_run"] is None and data["note"] is None and data["published_return"] is None
    _same_actions_as(bundle, _sb3_actions(cartpole_ppo), _cartpole_obs())
    assert _run_json(capsys, bundle)["env"] == "CartPole-v1"


def test_bare_weights_import_with_the_algorithm_and_env(cartpole_ppo, cartpole_files, tmp_path, capsys):
    bundle = tmp_path / "weights.rlp"
    data = _import_json(capsys, cartpole_files / "weights.pth", bundle, "--algorithm", "PPO", "--env", "CartPole-v1")
    assert (data["framework"], data["algorithm"]) == ("SB3", "PPO")
    assert data["env"]["id"] == "CartPole-v1" and data["normalized"] is False and data["zoo_run"] is None
    # what the tensors cannot tell is assumed, and said: the activation is SB3's default, Tanh (as built here)
    assert any("activation_fn" in w and "Tanh" in w for w in data["warnings"]), data["warnings"]
    assert rlport.load(bundle).bundle.provenance["imported_from"] == "weights.pth"
    _same_actions_as(bundle, _sb3_actions(cartpole_ppo), _cartpole_obs())
    assert _run_json(capsys, bundle)["env"] == "CartPole-v1"


def test_bare_weights_take_the_algorithm_in_any_case(cartpole_ppo, cartpole_files, tmp_path, capsys):
    bundle = tmp_path / "weights.rlp"
    data = _import_json(capsys, cartpole_files / "weights.pth", bundle, "--algorithm", "ppo", "--env", "CartPole-v1")
    assert data["algorithm"] == "PPO"
    _same_actions_as(bundle, _sb3_actions(cartpole_ppo), _cartpole_obs())


@pytest.fixture(scope="module")
def relu_ppo(tmp_path_factory) -> tuple[Any, Path, list[str]]:
    """A PPO built with ReLU on a Box -> Box env that exists nowhere; its weights; its spaces as CLI options."""
    model = make_model(ModelSpec("PPO", obs="box", action="box", policy_kwargs={"activation_fn": nn.ReLU}))
    path = tmp_path_factory.mktemp("relu") / "relu.pth"
    torch.save(model.policy.state_dict(), path)
    spaces = ["--observation-space", json.dumps(spec_from_space(OBS_SPACES["box"]).to_json()),
              "--action-space", json.dumps(spec_from_space(ACTION_SPACES["box"]).to_json())]  # fmt: skip
    return model, path, spaces


def test_bare_weights_with_json_spaces_and_policy_kwargs(relu_ppo, tmp_path, capsys):
    model, path, spaces = relu_ppo
    bundle = tmp_path / "relu.rlp"
    data = _import_json(capsys, path, bundle, "--algorithm", "PPO", *spaces, "--policy-kwargs",
                        '{"activation_fn": "ReLU"}')  # fmt: skip
    assert data["env"]["id"] is None and data["algorithm"] == "PPO"
    assert not any("activation_fn" in w for w in data["warnings"]), data["warnings"]
    obs = sample_obs(OBS_SPACES["box"], 300, seed=5)
    _same_actions_as(bundle, _sb3_actions(model), obs, at_least=50)
    code, _, err = _cli(capsys, "run", bundle, "--episodes", "1")
    assert code == 2 and "records no environment id; pass one with --env" in err, err


def test_without_policy_kwargs_the_assumed_activation_is_said_and_acts_otherwise(relu_ppo, tmp_path, capsys):
    """The check that --policy-kwargs is used: without it the default (Tanh) is assumed, warned, and differs."""
    model, path, spaces = relu_ppo
    bundle = tmp_path / "tanh.rlp"
    data = _import_json(capsys, path, bundle, "--algorithm", "PPO", *spaces)
    assert any("assumed activation_fn=Tanh" in w for w in data["warnings"]), data["warnings"]
    obs = sample_obs(OBS_SPACES["box"], 300, seed=5)
    ours, _ = rlport.load(bundle).predict(obs, deterministic=True)
    assert not np.allclose(ours, model.predict(obs, deterministic=True)[0], atol=1e-3)


def test_bare_weights_with_vecnormalize_statistics(cartpole_ppo, cartpole_files, tmp_path, capsys):
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]), clip_obs=5.0)
    rng = np.random.default_rng(7)
    venv.obs_rms.mean = rng.normal(0, 0.5, 4)
    venv.obs_rms.var = rng.uniform(0.05, 3.0, 4)
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    bundle = tmp_path / "normalized.rlp"
    data = _import_json(capsys, cartpole_files / "weights.pth", bundle, "--algorithm", "PPO", "--env", "CartPole-v1",
                        "--vecnormalize", str(tmp_path / "vecnormalize.pkl"))  # fmt: skip
    assert data["normalized"] is True
    obs = _cartpole_obs()
    _same_actions_as(bundle, lambda o: cartpole_ppo.predict(venv.normalize_obs(o), deterministic=True)[0], obs)
    ours, _ = rlport.load(bundle).predict(obs, deterministic=True)
    assert not np.array_equal(ours, cartpole_ppo.predict(obs, deterministic=True)[0]), "the statistics change nothing"
    _run_json(capsys, bundle)


@pytest.mark.parametrize(
    "route, options",
    [("model.zip", ["--env", "CartPole-v1"]), ("weights.pth", ["--algorithm", "PPO", "--env", "CartPole-v1"])],
    ids=["sb3-zip", "state-dict"],
)
def test_json_names_no_source_for_a_published_return_there_is_not(cartpole_files, tmp_path, capsys, route, options):
    """Without a published return, --json names no file it came from (it said evaluations.npz: see the report)."""
    data = _import_json(capsys, cartpole_files / route, tmp_path / "b.rlp", *options)
    assert data["published_return"] is None
    assert data["published_return_source"] is None


# ---- the RL Zoo sample -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_cartpole(zoo_sample) -> tuple[Path, PPO]:
    """The sample's ppo/CartPole-v1_1 run and SB3's own load of its model (today's SB3 needs custom_objects)."""
    run = zoo_sample / "ppo" / "CartPole-v1_1"
    env = gym.make("CartPole-v1")
    custom = {"observation_space": env.observation_space, "action_space": env.action_space,
              "lr_schedule": lambda _: 0.0, "learning_rate": 0.0, "clip_range": lambda _: 0.0}  # fmt: skip
    return run, PPO.load(run / "CartPole-v1.zip", custom_objects=custom, device="cpu")


@pytest.mark.parametrize("inside", [False, True], ids=["run-folder", "model-inside-the-run"])
def test_an_rl_zoo_run_imports_runs_and_acts_as_its_model(zoo_cartpole, tmp_path, capsys, inside):
    run, model = zoo_cartpole
    bundle = tmp_path / "zoo.rlp"
    data = _import_json(capsys, run / "CartPole-v1.zip" if inside else run, bundle)
    assert (data["framework"], data["algorithm"]) == ("SB3", "PPO")
    assert data["zoo_run"] == str(run) and data["env"]["id"] == "CartPole-v1"
    assert (data["note"] is not None) == inside  # the model alone would lose the run's files: said
    if inside:
        assert "imported the whole run" in data["note"] and "--no-vecnormalize" in data["note"]
    evaluations = np.load(run / "evaluations.npz")["results"]
    assert data["published_return"] == pytest.approx(float(np.mean(evaluations[-1])))
    assert data["published_return_source"] == "evaluations.npz"
    _same_actions_as(bundle, _sb3_actions(model), _cartpole_obs())
    _run_json(capsys, bundle)


def test_a_zoo_model_with_no_vecnormalize_is_imported_alone(zoo_cartpole, tmp_path, capsys):
    run, model = zoo_cartpole
    bundle = tmp_path / "alone.rlp"
    data = _import_json(capsys, run / "CartPole-v1.zip", bundle, "--no-vecnormalize")
    assert data["zoo_run"] is None and data["note"] is None and data["published_return"] is None
    _same_actions_as(bundle, _sb3_actions(model), _cartpole_obs())


# ---- Stable Baselines 2: the real published agents --------------------------------------------


@pytest.fixture(scope="module")
def sb2_a2c(sb2_sample, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """The sample's a2c/CartPole-v1.pkl imported by ``python -m rlport import`` in a fresh process: (bundle, JSON)."""
    bundle = tmp_path_factory.mktemp("sb2-a2c") / "a2c.rlp"
    source = sb2_sample / "a2c" / "CartPole-v1.pkl"
    proc = subprocess.run([sys.executable, "-m", "rlport", "import", str(source), "-o", str(bundle), "--json"],
                          capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return bundle, json.loads(proc.stdout)


def test_an_sb2_pkl_imports_in_a_fresh_process(sb2_a2c, sb2_sample):
    bundle, data = sb2_a2c
    env_id, mean, std, episodes = PUBLISHED["a2c/CartPole-v1.pkl"]
    assert (data["framework"], data["algorithm"]) == ("Stable Baselines 2", "a2c")
    assert data["source"] == str(sb2_sample / "a2c" / "CartPole-v1.pkl")
    assert data["env"]["id"] == env_id and data["normalized"] is False and data["zoo_run"] is None
    assert data["published_return"] == pytest.approx(mean)
    assert data["published_return_source"].endswith("README.md")
    assert data["size_bytes"] == bundle.stat().st_size
    loaded = rlport.load(bundle).bundle
    assert loaded.provenance["framework"] == "stable-baselines"
    assert loaded.provenance["published_return_std"] == pytest.approx(std)
    assert loaded.provenance["published_episodes"] == episodes


def _near_published(returns: list[float], mean: float, std: float, episodes: int) -> None:
    """Within max(10%, 3 standard errors of the difference of the means), as the SB2 sample tests decide."""
    here = float(np.mean(returns))
    spread = math.sqrt(float(np.var(returns, ddof=1)) / len(returns) + std**2 / episodes)
    assert abs(here - mean) <= max(0.1 * abs(mean), 3 * spread), f"{returns} vs published {mean} ± {std}"


@pytest.mark.parametrize("agent", list(PUBLISHED))
def test_an_sb2_agent_imports_and_plays_its_published_return(sb2_sample, agent, tmp_path, capsys):
    """An SB2 .pkl and an SB2 .zip (acktr, in its zoo folder beside config.yml: see the report)."""
    env_id, mean, std, episodes = PUBLISHED[agent]
    bundle = tmp_path / "agent.rlp"
    data = _import_json(capsys, sb2_sample / agent, bundle)
    assert data["framework"] == "Stable Baselines 2" and data["algorithm"] == agent.split("/")[0]
    assert data["env"]["id"] == env_id and data["published_return"] == pytest.approx(mean)
    result = _run_json(capsys, bundle, EPISODES)
    assert result["env"] == env_id
    _near_published(result["returns"], mean, std, episodes)


def test_an_sb2_zip_outside_its_zoo_folder_imports_and_plays(sb2_sample, tmp_path, capsys):
    """The SB2 .zip route itself, with the model copied out of its folder (no config.yml beside it)."""
    env_id, mean, std, episodes = PUBLISHED["acktr/Pendulum-v0.zip"]
    (tmp_path / "acktr").mkdir()
    source = Path(shutil.copy(sb2_sample / "acktr" / "Pendulum-v0.zip", tmp_path / "acktr"))
    data = _import_json(capsys, source, tmp_path / "acktr.rlp")
    assert data["framework"] == "Stable Baselines 2" and data["algorithm"] == "acktr"
    assert data["env"]["id"] == env_id and data["published_return"] is None  # no table beside the copy
    assert any("Pendulum-v0 is now Pendulum-v1" in w for w in data["warnings"]), data["warnings"]
    _near_published(_run_json(capsys, tmp_path / "acktr.rlp", EPISODES)["returns"], mean, std, episodes)


def test_an_sb2_file_takes_the_algorithm_in_any_case_and_refuses_another_family(sb2_sample, tmp_path, capsys):
    data = _import_json(capsys, sb2_sample / "a2c" / "CartPole-v1.pkl", tmp_path / "b.rlp", "--algorithm", "A2C")
    assert data["algorithm"] == "a2c"
    code, _, err = _cli(capsys, "import", sb2_sample / "a2c" / "CartPole-v1.pkl", "-o", tmp_path / "c.rlp",
                        "--algorithm", "dqn")  # fmt: skip
    assert code == 2 and not (tmp_path / "c.rlp").exists()  # a DQN network is not what the file holds
    assert err.startswith("rlport import: ") and "not to dqn" in err and "Traceback" not in err


def test_export_sb3_of_an_sb2_bundle_loads_in_sb3_and_acts_alike(sb2_a2c, tmp_path, capsys):
    bundle, _ = sb2_a2c
    target = tmp_path / "a2c_sb3.zip"
    code, out, err = _cli(capsys, "export", bundle, "--format", "sb3", "-o", target, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["outputs"] == [str(target)] and data["algorithm"] == "A2C" and data["warnings"] == []
    model = A2C.load(target, device="cpu")
    _same_actions_as(bundle, _sb3_actions(model), _cartpole_obs())


def test_export_onnx_of_an_sb2_bundle_runs_in_onnxruntime_as_numpy_does(sb2_a2c, tmp_path, capsys):
    import onnxruntime

    bundle, _ = sb2_a2c
    target = tmp_path / "a2c.onnx"
    code, out, err = _cli(capsys, "export", bundle, "--format", "onnx", "-o", target, "--json")
    assert code == 0, err
    assert json.loads(out)["size_bytes"] == target.stat().st_size > 0
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (obs_input,) = session.get_inputs()
    obs = _cartpole_obs()
    ours, _ = rlport.load(bundle, backend="numpy").predict(obs, deterministic=True)
    theirs = session.run(None, {obs_input.name: obs})[0]
    assert_same_actions(ours, theirs, "onnxruntime vs rlport's numpy backend")
    assert set(np.unique(theirs)) == {0, 1}, "a constant policy"


def _returns_check(capsys, bundle: Path, expected_code: int) -> dict[str, Any]:
    code, out, err = _cli(capsys, "verify", bundle, "--episodes", str(EPISODES), "--json")
    assert code == expected_code, err + out
    return next(check for check in json.loads(out)["checks"] if check["name"] == "returns")


def test_verify_of_an_sb2_bundle_compares_with_the_published_return(sb2_a2c, capsys):
    bundle, _ = sb2_a2c
    returns = _returns_check(capsys, bundle, 0)
    assert returns["status"] == "PASS", returns
    assert returns["data"]["reference_mean"] == pytest.approx(PUBLISHED["a2c/CartPole-v1.pkl"][1])
    assert returns["data"]["episodes"] == EPISODES
    assert "reference: published RL Zoo evaluation" in returns["detail"]


def test_verify_fails_against_a_published_return_the_policy_does_not_reach(sb2_sample, tmp_path, capsys):
    """The reference is the table's number, not a constant: a table that says 123.4 makes verify fail."""
    (tmp_path / "a2c").mkdir()
    shutil.copy(sb2_sample / "a2c" / "CartPole-v1.pkl", tmp_path / "a2c")
    (tmp_path / "README.md").write_text("| agent | env today | published return | n | notes |\n|---|---|---|---|---|\n"
                                        "| a2c/CartPole-v1.pkl | CartPole-v1 | 123.4 ± 1.0 | 300 | |\n")  # fmt: skip
    _import_json(capsys, tmp_path / "a2c" / "CartPole-v1.pkl", tmp_path / "b.rlp")
    returns = _returns_check(capsys, tmp_path / "b.rlp", 1)
    assert returns["status"] == "FAIL" and returns["data"]["reference_mean"] == pytest.approx(123.4)
    (tmp_path / "README.md").unlink()  # no table: no reference, said
    _import_json(capsys, tmp_path / "a2c" / "CartPole-v1.pkl", tmp_path / "c.rlp")
    returns = _returns_check(capsys, tmp_path / "c.rlp", 0)
    assert returns["status"] == "WARN" and "reference_mean" not in returns["data"], returns


# ---- refusals ----------------------------------------------------------------------------------


class _Payload:
    """Pickles as ``func(*args)``: what a hostile model file holds."""

    def __init__(self, func: Any, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _hostile_pkl(folder: Path, marker: Path, where: str) -> Path:
    """An SB2-shaped ``(data, params)`` pickle, in the zoo layout, with a payload that would create ``marker``."""
    payload = {"data": _Payload(os.system, (f"touch {marker}",)),
               "params": _Payload(exec, (f"open({str(marker)!r}, 'w').close()",))}[where]  # fmt: skip
    data: dict[str, Any] = {"gamma": 0.99, "n_steps": 5, "vf_coef": 0.25, "verbose": 0}
    params: list[Any] = [np.zeros((4, 8), np.float32), np.zeros(8, np.float32)]
    if where == "data":
        data["verbose"] = payload
    else:
        params.append(payload)
    path = folder / "a2c" / "CartPole-v1.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps((data, params), protocol=2))
    return path


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
@pytest.mark.parametrize("where", ["data", "params"])
def test_a_hostile_pkl_is_refused_and_runs_nothing(tmp_path, capsys, where, json_flag):
    marker = tmp_path / "PWNED"
    source = _hostile_pkl(tmp_path / "zoo", marker, where)
    (tmp_path / "out").mkdir()
    before = _left(tmp_path)
    code, out, err = _cli(capsys, "import", source, "-o", tmp_path / "out" / "b.rlp", *json_flag)
    assert not marker.exists(), "the payload ran"
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("rlport import: ") and "refused global" in err and "Traceback" not in err
    assert _left(tmp_path) == before  # no bundle, no temporary file
    if json_flag:
        error = json.loads(out)["error"]
        assert (error["type"], error["exit_code"]) == ("UnsafeFileError", 2) and "refused global" in error["message"]
    else:
        assert out == ""


def _sources(cartpole_files: Path, sb2_sample: Path | None) -> dict[str, Path]:
    sources = {"pth": cartpole_files / "weights.pth", "zip": cartpole_files / "model.zip"}
    if sb2_sample is not None:
        sources["sb2"] = sb2_sample / "a2c" / "CartPole-v1.pkl"
    return sources


REFUSALS = [
    pytest.param("pth", [], "UnsupportedError", "pass --algorithm", id="pth-without-algorithm"),
    pytest.param("pth", ["--algorithm", "PPO"], "SpaceError", "does not hold its spaces", id="pth-without-spaces"),
    pytest.param("zip", ["--policy-kwargs", "{}"], None, "--policy-kwargs is for bare weights",
                 id="policy-kwargs-on-a-zip"),
    pytest.param("zip", ["--observation-space", '{"type": "discrete", "n": 2}'], None,
                 "--observation-space is for bare weights", id="observation-space-on-a-zip"),
    pytest.param("sb2", ["--vecnormalize", "{tmp}/vecnormalize.pkl"], "UnsupportedError",
                 "--vecnormalize is not for a Stable Baselines 2 model", id="vecnormalize-on-sb2"),
    pytest.param("sb2", ["--no-vecnormalize"], "UnsupportedError",
                 "--no-vecnormalize is not for a Stable Baselines 2 model", id="no-vecnormalize-on-sb2"),
    pytest.param("sb2", ["--include-critic"], "UnsupportedError",
                 "--include-critic is not for a Stable Baselines 2 model", id="include-critic-on-sb2"),
    pytest.param("sb2", ["--algorithm", "PPO"], "UnsupportedError", "is not an SB2 algorithm",
                 id="sb3-algorithm-on-sb2"),
    pytest.param("pth", ["--algorithm", "ppo2", "--env", "CartPole-v1"], "UnsupportedError",
                 "not one rlport imports weights of", id="sb2-algorithm-on-pth"),
    pytest.param("pth", ["--algorithm", "PPO", "--observation-space", "{not json", "--action-space", "{}"],
                 "UsageError", "argument --observation-space: is not a JSON object", id="bad-json-observation-space"),
    pytest.param("pth", ["--algorithm", "PPO", "--observation-space", "[1, 2]", "--action-space", "{}"],
                 "UsageError", "argument --observation-space: is not a JSON object", id="json-list-observation-space"),
    pytest.param("pth", ["--algorithm", "PPO", "--observation-space", '{"type": "circle"}', "--action-space",
                         '{"type": "discrete", "n": 2}'], "SpaceError", "circle", id="unknown-space-type"),
    pytest.param("pth", ["--algorithm", "NoSuchAlgo"], "UsageError", "unknown algorithm 'NoSuchAlgo'",
                 id="unknown-algorithm"),
]  # fmt: skip


@pytest.mark.parametrize(("route", "options", "error_type", "message"), REFUSALS)
def test_a_refused_import_exits_2_says_why_and_writes_nothing(
    cartpole_files, tmp_path, capsys, request, route, options, error_type, message
):
    sb2 = request.getfixturevalue("sb2_sample") if route == "sb2" else None
    (tmp_path / "vecnormalize.pkl").write_bytes(pickle.dumps(None, protocol=4))  # a file, to be refused unread
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    output = tmp_path / "out" / "b.rlp"
    (tmp_path / "out").mkdir()
    code, out, err = _cli(capsys, "import", _sources(cartpole_files, sb2)[route], "-o", output, "--json", *options)
    assert code == 2, err
    assert message in err and "Traceback" not in err and "internal error" not in err, err
    assert err.splitlines()[-1].startswith("rlport import: "), err
    assert _left(tmp_path / "out") == []
    error = json.loads(out)["error"]
    assert error["exit_code"] == 2 and message in error["message"]
    assert error["type"] == (error_type or error["type"])


def test_an_sb2_zoo_folder_stands_for_the_model_beside_it(sb2_sample, tmp_path, capsys):
    """``rlport import ALGO/ENV`` (the folder of statistics) imports ``ALGO/ENV.pkl`` with them."""
    folder = sb2_sample / "acer" / "Acrobot-v1"
    data = _import_json(capsys, folder, tmp_path / "acer.rlp")
    assert data["source"] == str(folder.with_suffix(".pkl")) and data["normalized"] is True
    lone = tmp_path / "Acrobot-v1"  # a folder with no model beside it is not an SB2 agent
    lone.mkdir()
    code, _, err = _cli(capsys, "import", lone, "-o", tmp_path / "none.rlp")
    assert code == 2 and "expected one model .zip" in err


def test_a_pkl_that_is_no_pickle_is_named_as_an_sb2_file(tmp_path, capsys):
    """A ``.pkl`` is read as SB2's (SB3 never writes one): the error says what an SB2 model is, not SB3's zip."""
    bad = tmp_path / "garbage.pkl"
    bad.write_bytes(bytes(range(256)) * 4)
    code, _, err = _cli(capsys, "import", bad, "-o", tmp_path / "x.rlp")
    assert code == 2 and "neither an SB2 .pkl" in err and "SB3" not in err and not (tmp_path / "x.rlp").exists()
