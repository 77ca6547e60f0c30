"""``rlport verify`` (and ``run``) tell the truth: no OK it cannot back, no warning about a difference that is not one.

Issue 11: a zoo model imported alone (items 2), one-episode returns (7), provenance labels (8),
the table's width (11) and representation-only space differences (12).
"""

from __future__ import annotations

import json
import platform
import shutil
import stat
import zipfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import rlport
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.bundle.spaces import BoxSpec, DiscreteSpec
from rlport.cli.main import main
from rlport.envs import check_spaces
from rlport.errors import SpaceError
from rlport.graph.graph import Graph, GraphInput, Node
from rlport.readers.gym_spaces import spec_from_space
from rlport.verify.checks import check_dependencies, returns_verdict, verify
from rlport.verify.record import env_package, record_verification
from rlport.verify.render import render_report

FLOAT32_MAX = float(np.finfo(np.float32).max)
CARTPOLE_HIGH = np.array([4.8, np.inf, 0.41887903, np.inf], dtype=np.float32)


def _status(report) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


def _check(report, name: str):
    return next(check for check in report.checks if check.name == name)


def _balancer(high: np.ndarray = CARTPOLE_HIGH) -> Bundle:
    """A hand-made CartPole policy that pushes where the pole leans (returns of several hundred)."""
    weight = np.array([[0.0, 0.0, -1.0, -1.0], [0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        output="action",
        preprocess=(Node("cast", ("obs",), ("x",), attrs={"dtype": "float32"}),),
        policy=(
            Node("linear", ("x",), ("logits",), params={"weight": "w"}),
            Node("categorical", ("logits",), ("action",)),
        ),
    )
    observation = BoxSpec((4,), "float32", -high.copy(), high.copy())
    return Bundle(observation, DiscreteSpec(2), graph, {"w": weight}, EnvSpec("CartPole-v1"))


@pytest.fixture(scope="module")
def balancer(tmp_path_factory) -> Path:
    bundle = _balancer()
    assert record_verification(bundle, evaluate=5) is None
    return bundle.save(tmp_path_factory.mktemp("truth") / "balancer.rlp")


# item 7: fewer than 5 episodes never PASS the returns check


@pytest.mark.parametrize(
    ("here", "reference"),
    [([100.0], [100.0] * 10), ([500.0] * 4, (500.0, 0.0, 10)), ([500.0] * 10, (500.0, 0.0, 3))],
    ids=["one-episode-identical", "four-episodes-published", "reference-of-three"],
)
def test_too_few_episodes_warn_even_when_the_figures_agree(here, reference):
    result = returns_verdict(here, reference)
    assert result.status == "WARN"
    assert "too few episodes" in result.detail


def test_verify_with_one_episode_does_not_end_ok(balancer, tmp_path, capsys):
    bundle = Bundle.load(balancer)
    evaluation = bundle.verification["evaluation"]
    evaluation["returns"] = [evaluation["returns"][0]] * 5  # the reference: exactly what seed 0 gives here
    same = bundle.save(tmp_path / "same.rlp")
    assert main(["verify", str(same), "--episodes", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    returns = next(c for c in data["checks"] if c["name"] == "returns")
    assert returns["status"] == "WARN" and returns["data"]["mean"] == returns["data"]["reference_mean"]
    assert "returns" in data["warned"]
    assert main(["verify", str(same), "--episodes", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("WARN") and "returns" in last


def test_five_episodes_that_agree_pass(balancer):
    assert _status(verify(str(balancer), episodes=5))["returns"] == "PASS"


# item 12: representation differences are no differences


def _policy(observation) -> SimpleNamespace:
    return SimpleNamespace(observation_space=observation, action_space=DiscreteSpec(2))


def test_float32_max_bounds_equal_infinite_ones():
    env = gym.make("CartPole-v1")
    ours = BoxSpec((4,), "float32", -np.where(np.isinf(CARTPOLE_HIGH), FLOAT32_MAX, CARTPOLE_HIGH),
                   np.where(np.isinf(CARTPOLE_HIGH), FLOAT32_MAX, CARTPOLE_HIGH).astype(np.float32))  # fmt: skip
    check_spaces(_policy(ours), env)  # exact: raised before


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # gymnasium's own cast
def test_float64_observations_equal_float32_ones_of_the_same_values():
    env = gym.wrappers.DtypeObservation(gym.make("Pendulum-v1"), np.float64)
    theirs = spec_from_space(env.observation_space)
    ours = BoxSpec(theirs.shape, "float32", theirs.low.astype(np.float32), theirs.high.astype(np.float32))
    check_spaces(SimpleNamespace(observation_space=ours, action_space=spec_from_space(env.action_space)), env)


def test_bounds_of_other_values_still_differ():
    env = gym.make("CartPole-v1")
    high = CARTPOLE_HIGH.copy()
    high[0] = 5.0
    with pytest.raises(SpaceError, match="observation space bounds"):
        check_spaces(_policy(BoxSpec((4,), "float32", -high, high)), env, hint="HINT")


@pytest.fixture(scope="module")
def float32_max_bundle(tmp_path_factory) -> Path:
    """The balancer as an older gym wrote CartPole's space: float32's largest value for infinity."""
    bundle = _balancer(np.where(np.isinf(CARTPOLE_HIGH), FLOAT32_MAX, CARTPOLE_HIGH).astype(np.float32))
    return bundle.save(tmp_path_factory.mktemp("truth") / "float32max.rlp")


def test_run_and_verify_do_not_ask_for_another_env_when_it_is_the_same(float32_max_bundle, capsys):
    assert main(["run", str(float32_max_bundle), "--episodes", "1", "--json"]) == 0
    assert "pass the env" not in capsys.readouterr().err
    spaces = _check(verify(str(float32_max_bundle), episodes=1), "spaces")
    assert spaces.status == "PASS" and "bounds equal up to representation" in spaces.measured


def test_other_bound_values_warn_without_asking_for_another_env(tmp_path, capsys):
    high = CARTPOLE_HIGH.copy()
    high[0] = 5.0
    path = _balancer(high).save(tmp_path / "wider.rlp")
    spaces = _check(verify(str(path), episodes=1), "spaces")
    assert spaces.status == "WARN" and "observation space bounds" in spaces.detail
    assert "pass the env the policy was trained on" not in spaces.detail
    assert main(["run", str(path), "--episodes", "1", "--json"]) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "pass the env the policy was trained on" not in err


# item 8: provenance labels


def _sb3_zip(tmp_path: Path, system_info: str | None = None) -> Path:
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    path = tmp_path / "model.zip"
    model.save(path)
    if system_info is not None:  # as an older SB3 wrote it
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        members["system_info.txt"] = system_info.encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    return path


GYM_ERA = """- OS: Linux-4.12.14-lp151.28.91-default-x86_64-with-glibc2.10 #1 SMP Tue Jan 12 23:05:46 UTC 2021 (e284d31)
- Python: 3.7.10
- Stable-Baselines3: 1.3.1a0
- PyTorch: 1.10.0
- GPU Enabled: False
- Numpy: 1.21.3
- Gym: 0.19.0
"""


def test_a_gym_era_file_is_recorded_as_gym_not_gymnasium(tmp_path):
    bundle = rlport.import_sb3(_sb3_zip(tmp_path, GYM_ERA), env_id="CartPole-v1", fingerprint=False)
    assert bundle.provenance["gym"] == "0.19.0" and bundle.provenance["gymnasium"] is None
    assert bundle.provenance["platform"] == "Linux-x86_64"
    check = check_dependencies(bundle)
    assert check.status == "WARN" and "gym 0.19.0 -> gymnasium" in check.measured


def test_a_file_saved_here_reports_no_platform_change(tmp_path):
    bundle = rlport.import_sb3(_sb3_zip(tmp_path), env_id="CartPole-v1", fingerprint=False)
    assert bundle.provenance["gymnasium"] == gym.__version__ and bundle.provenance["gym"] is None
    assert bundle.provenance["os"].startswith(platform.system())  # SB3's full text, kept aside
    assert "platform" not in check_dependencies(bundle).measured


def test_a_full_platform_string_of_this_machine_is_no_change(balancer):
    bundle = Bundle.load(balancer)
    bundle.provenance["platform"] = f"{platform.platform()} {platform.version()}"  # what SB3's system_info holds
    assert "platform" not in check_dependencies(bundle).measured
    bundle.provenance["platform"] = "Windows-10-10.0.19041-SP0"
    assert "platform Windows" in check_dependencies(bundle).measured


def test_only_the_physics_package_the_env_needs_is_recorded_and_compared(balancer):
    assert (env_package("LunarLander-v3"), env_package("Walker2d-v4"), env_package("Pendulum-v1")) == (
        "box2d", "mujoco", None)  # fmt: skip
    bundle = Bundle.load(balancer)
    assert bundle.provenance["env_packages"] == {}  # CartPole needs neither Box2D nor MuJoCo
    bundle.provenance["env_packages"] = {"box2d": "0.0.1", "mujoco": "0.0.1"}  # as older bundles recorded
    assert "box2d" not in check_dependencies(bundle).measured and "mujoco" not in check_dependencies(bundle).measured
    bundle.env = replace(bundle.env, id="LunarLander-v3")
    assert "box2d 0.0.1 ->" in check_dependencies(bundle).measured


# item 11: the table fits the terminal and keeps every word


@pytest.fixture()
def drifted(balancer, tmp_path) -> Path:
    bundle = Bundle.load(balancer)
    bundle.provenance.update(gymnasium="0.26.3", numpy="1.21.3", python="3.7.10", torch="1.10.0",
                             framework_version="1.3.1a0", platform="Darwin-13.4-arm64")  # fmt: skip
    return bundle.save(tmp_path / "drifted.rlp")


@pytest.mark.parametrize("columns", [100, 72])
def test_the_verify_table_fits_the_terminal_and_keeps_every_word(drifted, tmp_path, capsys, monkeypatch, columns):
    fingerprint = tmp_path / "env.json"
    assert main(["fingerprint", "--env", "CartPole-v1", "-o", str(fingerprint)]) == 0
    capsys.readouterr()
    args = ["verify", str(drifted), "--episodes", "5", "--fingerprint", str(fingerprint)]
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(args) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= columns
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    words = {word.rstrip(";") for word in text.split()}  # notes joined by "; " in --json start lines in the table
    for check in data["checks"]:
        for field in ("measured", "tolerance", "detail"):
            missing = [word for word in check[field].split() if word.rstrip(";") not in words]
            assert not missing, (check["name"], field, missing)
    names = [c["name"] for c in data["checks"]]
    assert names.count("dynamics") == 1 and "dynamics (file)" in names
    assert "dynamics (file)" in text


def test_a_long_detail_goes_on_its_own_lines_uncut():
    detail = "the env's observation space " + " ".join(f"token{i:03d}" for i in range(60))
    report = {"ok": False, "checks": [{"name": "spaces", "status": "FAIL", "measured": "layout differs",
                                       "tolerance": "same", "detail": detail}]}  # fmt: skip
    text = render_report(report, 80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert text.split().count("token059") == 1 and all(f"token{i:03d}" in text.split() for i in range(60))
    assert text.splitlines()[1].rstrip().endswith("same")  # the row itself, detail below it
    assert text.strip().splitlines()[-1].startswith("FAILED")


# item 2: a zoo model imported by its .zip acts as the run's agent, and verify knows the published returns


@pytest.fixture()
def a2c_run(zoo_sample, tmp_path) -> Path:
    run = tmp_path / "a2c" / "Pendulum-v1_1"
    shutil.copytree(zoo_sample / "a2c" / "Pendulum-v1_1", run, copy_function=shutil.copyfile)
    for path in [run, *run.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert (run / "Pendulum-v1" / "vecnormalize.pkl").is_file()
    return run


def test_importing_the_zip_of_a_zoo_run_imports_the_run(a2c_run, tmp_path, capsys):
    out = tmp_path / "from-zip.rlp"
    assert main(["import", str(a2c_run / "Pendulum-v1.zip"), "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["normalized"] is True and data["zoo_run"] == str(a2c_run)
    assert "whole run" in data["note"] and "--no-vecnormalize" in data["note"]
    assert data["published_return"] == pytest.approx(-160.2, abs=0.1)
    folder = rlport.import_zoo(a2c_run, probes=256, fingerprint=False)
    from_zip = Bundle.load(out)
    assert sorted(from_zip.tensors) == sorted(folder.tensors)
    assert all(np.array_equal(from_zip.tensors[k], folder.tensors[k]) for k in folder.tensors)
    assert from_zip.env == folder.env
    report = verify(str(out), episodes=5)
    returns = _check(report, "returns")
    assert "published RL Zoo evaluation" in returns.detail and returns.status == "PASS"


def test_no_vecnormalize_imports_the_zip_alone_and_verify_does_not_say_ok(a2c_run, tmp_path, capsys):
    out = tmp_path / "bare.rlp"
    args = ["import", str(a2c_run / "Pendulum-v1.zip"), "-o", str(out), "--env", "Pendulum-v1", "--json"]
    assert main([*args, "--no-vecnormalize"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["normalized"] is False and data["zoo_run"] is None
    assert any("vecnormalize.pkl is not applied" in w for w in data["warnings"])
    assert main(["verify", str(out), "--episodes", "5"]) == 0
    assert not capsys.readouterr().out.strip().splitlines()[-1].startswith("OK")


def test_contradicting_or_misplaced_vecnormalize_options_are_usage_errors(a2c_run, tmp_path, capsys):
    out = str(tmp_path / "x.rlp")
    pkl = str(a2c_run / "Pendulum-v1" / "vecnormalize.pkl")
    model = str(a2c_run / "Pendulum-v1.zip")
    assert main(["import", model, "-o", out, "--vecnormalize", pkl, "--no-vecnormalize"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main(["import", str(a2c_run), "-o", out, "--no-vecnormalize"]) == 2
    assert "--no-vecnormalize" in capsys.readouterr().err


def test_import_sb3_of_a_zoo_model_says_what_it_leaves_out(a2c_run):
    with pytest.warns(rlport.RlportWarning, match="vecnormalize.pkl is not applied"):
        rlport.import_sb3(a2c_run / "Pendulum-v1.zip", env_id="Pendulum-v1", fingerprint=False)
