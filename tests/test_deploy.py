"""rlport.deploy: pinned requirements, and a packed folder that runs in a fresh virtual environment."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import rlport
from rlport.bundle.manifest import EnvSpec, WrapperSpec
from rlport.deploy import env_extra, pack, requirements

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
