"""The RL Zoo sample is found one way (tests/zoo.py), and a missing one fails CI instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo import require_zoo_sample, zoo_files, zoo_params, zoo_sample_path

REPOSITORY = Path(__file__).resolve().parents[1]
# every test module that reads the sample (their sample tests have "zoo" in their names or module)
USERS = [
    "tests/readers/test_safe_pickle.py",
    "tests/readers/test_torch_pth.py",
    "tests/frameworks/test_vecnormalize.py",
    "tests/frameworks/test_zoo_sample.py",
    "tests/security/test_class_table.py",
    "tests/verify/test_verify.py",
]


def _fake_sample(folder: Path) -> Path:
    run = folder / "ppo" / "CartPole-v1_1"
    run.mkdir(parents=True)
    (run / "evaluations.npz").write_bytes(b"")
    return folder


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    return monkeypatch


def test_the_variable_names_the_sample_even_relative(clean_env, tmp_path):
    sample = _fake_sample(tmp_path / "elsewhere")
    clean_env.setenv(zoo.ENV_VAR, str(sample))
    assert require_zoo_sample() == sample.resolve()
    assert zoo_files("*/*/evaluations.npz") == [sample.resolve() / "ppo/CartPole-v1_1/evaluations.npz"]
    clean_env.chdir(tmp_path)
    clean_env.setenv(zoo.ENV_VAR, "elsewhere")
    assert require_zoo_sample() == sample.resolve()


def test_without_the_variable_it_is_shared_beside_the_repository(clean_env, tmp_path):
    clean_env.setattr(zoo, "REPOSITORY", tmp_path / "checkout")
    sample = _fake_sample(tmp_path / "shared" / "zoo-sample")
    assert zoo_sample_path() == sample.resolve()
    assert require_zoo_sample() == sample.resolve()


def test_a_missing_sample_skips_locally_saying_what_to_do(clean_env, tmp_path):
    clean_env.setattr(zoo, "REPOSITORY", tmp_path / "checkout")
    with pytest.raises(pytest.skip.Exception, match=rf"no RL Zoo sample at .*{zoo.ENV_VAR}"):
        require_zoo_sample()
    assert zoo_files("*/*/*.zip") == []
    assert [p.id for p in zoo_params([], width=3)] == ["zoo-sample-missing"]


@pytest.mark.parametrize("why", ["CI", "variable"])
def test_a_missing_sample_fails_in_ci_or_when_named(clean_env, tmp_path, why):
    clean_env.setattr(zoo, "REPOSITORY", tmp_path / "checkout")
    if why == "CI":
        clean_env.setenv("CI", "true")
    else:
        clean_env.setenv(zoo.ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(pytest.fail.Exception, match="expected here"):
        require_zoo_sample()


def test_an_empty_folder_is_no_sample(clean_env, tmp_path):
    clean_env.setenv(zoo.ENV_VAR, str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="no RL Zoo run"):
        require_zoo_sample()


def test_in_ci_every_sample_test_fails_without_the_sample(tmp_path):
    """No test that needs the sample is skipped or passes when CI expects the sample and it is missing."""
    env = {**os.environ, "CI": "true", zoo.ENV_VAR: str(tmp_path / "absent"), "PYTHONPATH": str(REPOSITORY / "tests")}
    command = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-p", "zoo", *USERS]
    proc = subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    summary = out.strip().splitlines()[-1]
    assert "error" in summary and not any(word in summary for word in ("passed", "skipped", "xfail")), out
    errors = [line for line in out.splitlines() if line.startswith(("ERROR ", "FAILED "))]
    assert {line.split()[1].split("::")[0] for line in errors} == set(USERS), out
    assert all(f"no RL Zoo sample at {tmp_path / 'absent'}" in line for line in errors), out
