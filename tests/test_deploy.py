"""rlport.deploy: pinned requirements, and a packed folder that runs in a fresh virtual environment."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import rlport
from rlport.bundle.manifest import EnvSpec, WrapperSpec
from rlport.deploy import env_extra, pack, pinned_requirements, requirements
from rlport.deploy_pins import env_package, numpy_pin

NUMPY = metadata.version("numpy")
GYMNASIUM = metadata.version("gymnasium")


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> Path:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    path = tmp_path_factory.mktemp("bundle") / "cartpole.rlp"
    rlport.from_sb3(model, env_id="CartPole-v1").save(path)
    return path


def with_env(path: Path, env: EnvSpec, **provenance) -> rlport.Bundle:
    bundle = rlport.Bundle.load(path)
    return dataclasses.replace(bundle, env=env, provenance={**bundle.provenance, **provenance})


def test_requirements_pin_numpy_and_gymnasium_with_its_extra(cartpole):
    lines = requirements(rlport.Bundle.load(cartpole))
    assert lines == [f"numpy=={NUMPY}", f"gymnasium[classic-control]=={GYMNASIUM}"]
    assert not any(word in line for line in lines for word in ("torch", "stable-baselines3", "sb3"))


def test_requirements_use_the_recorded_versions(cartpole):
    bundle = with_env(cartpole, EnvSpec("Pendulum-v1"), numpy="1.26.4", gymnasium="0.29.1")
    assert requirements(bundle) == ["numpy==1.26.4", "gymnasium[classic-control]==0.29.1"]


def test_old_gym_version_is_not_pinned_as_gymnasium(cartpole):
    bundle = with_env(cartpole, EnvSpec("CartPole-v1"), gymnasium="0.21.0")
    assert requirements(bundle)[1] == f"gymnasium[classic-control]=={GYMNASIUM}"


@pytest.mark.parametrize(
    "env_id, extra",
    [("LunarLander-v3", "box2d"), ("Walker2d-v5", "mujoco"), ("Acrobot-v1", "classic-control")],
)
def test_requirements_name_the_env_extra(cartpole, env_id, extra):
    assert requirements(with_env(cartpole, EnvSpec(env_id)))[1] == f"gymnasium[{extra}]=={GYMNASIUM}"


@pytest.mark.parametrize(
    "env_id, extra",
    [("BipedalWalkerHardcore-v9", "box2d"), ("HumanoidStandup-v9", "mujoco"), ("Ant-v9", "mujoco"),
     ("MountainCarContinuous-v9", "classic-control"), ("Nope/Unknown-v9", None)],
)  # fmt: skip
def test_env_extra_falls_back_to_the_name_table_for_unregistered_ids(env_id, extra):
    assert env_extra(env_id) == extra


def test_without_env_only_numpy(cartpole):
    bundle = rlport.Bundle.load(cartpole)
    assert requirements(bundle, with_env=False) == [f"numpy=={NUMPY}"]
    assert requirements(with_env(cartpole, EnvSpec())) == [f"numpy=={NUMPY}"]


def test_time_feature_wrapper_needs_no_sb3_contrib(cartpole):
    bundle = with_env(cartpole, EnvSpec("Hopper-v5", wrappers=(WrapperSpec("time_feature"),)), sb3_contrib="2.3.0")
    assert requirements(bundle) == [f"numpy=={NUMPY}", f"gymnasium[mujoco]=={GYMNASIUM}"]


def test_unknown_backend_lists_the_supported_ones(cartpole, tmp_path):
    with pytest.raises(rlport.UnsupportedError, match="supported: numpy"):
        requirements(rlport.Bundle.load(cartpole), backend="onnx")
    with pytest.raises(rlport.UnsupportedError):
        pack(cartpole, tmp_path / "out", backend="onnx")
    assert not (tmp_path / "out").exists()


def test_pack_writes_a_self_contained_folder(cartpole, tmp_path):
    out = pack(cartpole, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "cartpole.rlp",
        "requirements.txt",
        "rlport",
        "run.py",
    ]
    assert (out / "cartpole.rlp").read_bytes() == cartpole.read_bytes()
    assert (out / "requirements.txt").read_text().splitlines() == requirements(rlport.Bundle.load(cartpole))
    assert (out / "rlport" / "deploy.py").is_file() and not list(out.rglob("__pycache__"))
    assert "pip install -r requirements.txt" in (out / "README.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind
    pack(cartpole, out)  # a previous pack is replaced


def test_run_py_without_gymnasium_checks_the_probes(cartpole, tmp_path):
    out = pack(cartpole, tmp_path / "out")
    blocker = "import runpy, sys; sys.modules['gymnasium'] = None; runpy.run_path('run.py', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", blocker], cwd=out, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "max probe error 0" in done.stdout


def test_pack_refuses_a_foreign_non_empty_folder(cartpole, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("keep me")
    with pytest.raises(rlport.RlportError, match="not an empty folder or a previous rlport pack"):
        pack(cartpole, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["thesis.tex"]


def test_corrupt_bundle_writes_nothing(cartpole, tmp_path):
    bad = tmp_path / "bad.rlp"
    bad.write_bytes(cartpole.read_bytes()[:-200])
    with pytest.raises(rlport.BundleError):
        pack(bad, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.rlp"]


@pytest.mark.slow
def test_pack_runs_in_a_fresh_venv_without_torch(cartpole, tmp_path):
    out = pack(cartpole, tmp_path / "pack")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "--quiet", "-r", "requirements.txt"]
    subprocess.run(install, cwd=out, check=True, timeout=180)
    done = subprocess.run([python, "run.py", "--episodes", "2"], cwd=out, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "CartPole-v1: mean return" in done.stdout
    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, timeout=60)
    assert no_torch.returncode != 0


# ---- the version policy: pins that install on the target Python (issue 11, item 6) -------------------------


@pytest.mark.parametrize(
    "recorded, python, expected",
    [
        ("1.21.3", (3, 10), "1.24.4"),  # below rlport's numpy>=1.24: the oldest release that has wheels
        ("1.21.3", (3, 11), "1.24.4"),
        ("1.21.3", (3, 12), "1.26.4"),
        ("1.21.3", (3, 13), "2.1.3"),
        ("1.21.3", (3, 14), "2.3.5"),
        ("2.4.6", (3, 10), "2.2.6"),  # no wheels for 3.10: the newest release that has, not newer than recorded
        ("1.26.4", (3, 13), "2.1.3"),  # no release <= 1.26 has 3.13 wheels: the oldest newer one
        ("1.26.4", (3, 12), "1.26.4"),  # installs and satisfies rlport: kept
        ("1.24.1", (3, 11), "1.24.1"),
        ("9.1.0", (3, 12), "9.1.0"),  # newer than the table: kept (the table cannot know)
    ],
)
def test_numpy_pin_installs_on_the_target_python(recorded, python, expected):
    pinned, note = numpy_pin(recorded, python)
    assert pinned == expected
    assert (note is None) == (expected == recorded)
    if note:
        assert recorded in note and expected in note


def test_numpy_pin_keeps_gymnasium_0x_on_numpy_1_where_it_can():
    assert numpy_pin("1.21.3", (3, 12), below_2=True)[0] == "1.26.4"
    assert numpy_pin("2.4.6", (3, 11), below_2=True)[0] == "2.4.6"  # a recorded pair ran together: kept


def test_a_gym_era_mujoco_run_gets_pins_that_install(cartpole):
    walker = EnvSpec("Walker2d-v4", wrappers=(WrapperSpec("time_feature", {"max_steps": 1000}),))
    bundle = with_env(cartpole, walker, numpy="1.21.3", gymnasium="0.19.0", python="3.7.10")
    needs = pinned_requirements(bundle)
    assert needs.python == (3, 10)  # 3.7 is older than rlport runs on
    assert needs.lines == ("numpy==1.24.4", f"gymnasium[mujoco]=={GYMNASIUM}")
    assert any("numpy 1.21.3" in note and "pinned 1.24.4" in note for note in needs.notes)
    assert any("gym 0.19.0" in note and f"gymnasium {GYMNASIUM}" in note for note in needs.notes)
    text = needs.text().splitlines()
    assert text[0] == "# pinned for Python 3.10 by rlport"
    assert [line for line in text if not line.startswith("#")] == list(needs.lines)
    assert pinned_requirements(bundle, python="3.12").lines[0] == "numpy==1.26.4"


def test_the_gym_key_of_newer_imports_is_read_as_gym(cartpole):
    bundle = with_env(cartpole, EnvSpec("CartPole-v1"), gym="0.21.0", gymnasium=None, numpy="1.26.4")
    needs = pinned_requirements(bundle, python="3.11")
    assert needs.lines == ("numpy==1.26.4", f"gymnasium[classic-control]=={GYMNASIUM}")
    assert any("gym 0.21.0" in note for note in needs.notes)


def test_gymnasium_0x_is_raised_where_numpy_must_be_2(cartpole):
    bundle = with_env(cartpole, EnvSpec("Acrobot-v1"), numpy="1.21.3", gymnasium="0.29.1", python="3.10.4")
    assert pinned_requirements(bundle, python="3.12").lines == ("numpy==1.26.4", "gymnasium[classic-control]==0.29.1")
    needs = pinned_requirements(bundle, python="3.13")
    assert needs.lines == ("numpy==2.1.3", "gymnasium[classic-control]==1.0.0")
    assert any("gymnasium 0.29.1 does not run on numpy 2.1.3" in note for note in needs.notes)


@pytest.mark.parametrize("python", ["3.9", "2.7", "3.15", "three", "3"])
def test_a_python_rlport_does_not_run_on_is_refused(cartpole, python):
    with pytest.raises(rlport.UnsupportedError, match="Python"):
        pinned_requirements(rlport.Bundle.load(cartpole), python=python)


# ---- third-party envs (item 14) -------------------------------------------------------------------------------


def test_a_panda_env_needs_panda_gym(cartpole):
    needs = pinned_requirements(with_env(cartpole, EnvSpec("PandaReach-v1")))
    assert needs.lines[-1] == "panda-gym"
    assert any("panda-gym provides 'PandaReach-v1'" in note and "not recorded" in note for note in needs.notes)
    recorded = with_env(cartpole, EnvSpec("PandaReach-v3"), env_packages={"panda_gym": "3.0.7"})
    assert requirements(recorded)[-1] == "panda-gym==3.0.7"


@pytest.mark.parametrize(
    "env_id, package",
    [("panda_gym:PandaPush-v3", "panda-gym"), ("FetchReach-v4", "gymnasium-robotics"), ("ALE/Pong-v5", "ale-py"),
     ("HalfCheetahBulletEnv-v0", "pybullet"), ("highway-fast-v0", "highway-env"), ("MiniGrid-Empty-5x5-v0", "minigrid"),
     ("CartPole-v1", None), ("Walker2d-v5", None), ("FrozenLake-v1", None)],
)  # fmt: skip
def test_env_packages_of_known_third_party_ids(env_id, package):
    assert env_package(env_id)[0] == package
    assert env_package(env_id)[1] == (package is not None)


def test_an_unknown_third_party_env_is_named_in_a_note(cartpole):
    needs = pinned_requirements(with_env(cartpole, EnvSpec("AcmeRobot-v2")))
    assert needs.lines == (f"numpy=={NUMPY}", f"gymnasium=={GYMNASIUM}")
    assert any("'AcmeRobot-v2'" in note and "does not know which package" in note for note in needs.notes)
    assert "# " in needs.text()


def test_run_py_falls_back_to_the_probes_when_the_env_cannot_be_made(cartpole, tmp_path):
    bundle = tmp_path / "panda.rlp"
    with_env(cartpole, EnvSpec("PandaReach-v1")).save(bundle)
    out = pack(bundle, tmp_path / "out")
    done = subprocess.run([sys.executable, "run.py", "--episodes", "1"], cwd=out, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "max probe error 0" in done.stdout and "PASS" in done.stdout
    assert "env PandaReach-v1 cannot be made here" in done.stdout


def test_run_py_exits_1_when_the_probes_differ(cartpole, tmp_path):
    bundle = rlport.Bundle.load(cartpole)
    wrong = {**bundle.probes, "action": 1 - bundle.probes["action"]}  # CartPole's other action, every probe
    path = tmp_path / "wrong.rlp"
    dataclasses.replace(bundle, probes=wrong).save(path)
    out = pack(path, tmp_path / "out")
    done = subprocess.run([sys.executable, "run.py", "--episodes", "1"], cwd=out, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout and "max probe error 1" in done.stdout


@pytest.mark.slow
def test_a_mujoco_zoo_pack_installs_and_runs_in_a_fresh_venv(zoo_sample, tmp_path):
    python = shutil.which("python3.11")
    if python is None:
        pytest.skip("python3.11 is not installed here")
    bundle = tmp_path / "walker.rlp"
    rlport.import_zoo(zoo_sample / "ppo" / "Walker2d-v3_1", fingerprint=False).save(bundle)
    assert rlport.Bundle.load(bundle).provenance["numpy"] == "1.21.3"  # what the run recorded: no wheels today
    out = pack(bundle, tmp_path / "pack", python="3.11")
    lines = (out / "requirements.txt").read_text().splitlines()
    assert "numpy==1.24.4" in lines and any(line.startswith("gymnasium[mujoco]==") for line in lines)
    assert any(line.startswith("#") and "numpy 1.21.3" in line for line in lines)
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", venv], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", "requirements.txt"]
    installed = subprocess.run(pip, cwd=out, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    done = subprocess.run([str(venv / "bin" / "python"), "run.py", "--episodes", "1"], cwd=out, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "max probe error" in done.stdout and "PASS" in done.stdout
    assert "Walker2d-v4: mean return" in done.stdout
    assert "Traceback" not in done.stderr and "\x1b[" not in done.stderr


def test_an_env_id_from_a_file_cannot_add_a_requirement_line(cartpole, tmp_path):
    hostile = with_env(cartpole, EnvSpec("Acme-v0\n--index-url http://evil.example\r\nPandaReach-v1"))
    lines = pinned_requirements(hostile).text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == [f"numpy=={NUMPY}", f"gymnasium=={GYMNASIUM}"]
    assert any("does not know which package" in line for line in lines)
