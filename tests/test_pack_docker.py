"""``rlport pack --docker``: the Dockerfile's steps work (run in a fresh venv), and it builds where docker works."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import rlport
from rlport.cli.main import main
from rlport.deploy import pack


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> Path:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    path = tmp_path_factory.mktemp("bundle") / "CartPole Policy.rlp"  # a name docker would refuse as a tag
    rlport.from_sb3(model, env_id="CartPole-v1", probes=16, fingerprint=False, evaluate=0).save(path)
    return path


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` for each line of a Dockerfile that is not a comment (no continuations used)."""
    lines = [line.strip() for line in dockerfile.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_has_the_recorded_python_a_non_root_user_and_run_py(cartpole, tmp_path):
    out = pack(cartpole, tmp_path / "out", docker=True)
    text = (out / "Dockerfile").read_text()
    steps = instructions(text)
    python = rlport.Bundle.load(cartpole).provenance["python"].rsplit(".", 1)[0]
    assert steps[0] == ("FROM", f"python:{python}-slim")
    assert ("RUN", "pip install --no-cache-dir -r requirements.txt") in steps
    user = next(args for name, args in steps if name == "USER")
    assert user != "root" and any(name == "RUN" and "useradd" in args and user in args for name, args in steps)
    names = [name for name, _ in steps]
    assert names.index("USER") < names.index("ENTRYPOINT")
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["python", "run.py"]
    assert "docker buildx build --platform linux/arm64" in text
    tags = re.findall(r"docker build -t (\S+)", text)
    assert tags and all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", tag) for tag in tags)
    assert "Dockerfile" not in [p.name for p in pack(cartpole, tmp_path / "plain").iterdir()]


def test_dockerfile_python_follows_the_target(cartpole, tmp_path):
    out = pack(cartpole, tmp_path / "out", docker=True, python="3.12")
    assert instructions((out / "Dockerfile").read_text())[0] == ("FROM", "python:3.12-slim")


def test_cli_pack_docker_says_how_to_build(cartpole, tmp_path, capsys):
    assert main(["pack", str(cartpole), "-o", str(tmp_path / "out"), "--docker"]) == 0
    out = capsys.readouterr().out
    assert "Dockerfile" in out and "docker build" in out
    assert main(["pack", str(cartpole), "-o", str(tmp_path / "out"), "--docker", "--json"]) == 0
    assert "Dockerfile" in json.loads(capsys.readouterr().out)["files"]


@pytest.mark.slow
def test_the_dockerfile_steps_work_in_a_fresh_venv(cartpole, tmp_path):
    """The Dockerfile's RUN pip line and its ENTRYPOINT + CMD, run as written, in a venv of the image's Python."""
    out = pack(cartpole, tmp_path / "app", docker=True)
    steps = instructions((out / "Dockerfile").read_text())
    python = shutil.which(f"python{dict(steps)['FROM'].split(':')[1].removesuffix('-slim')}")
    if python is None:
        pytest.skip(f"no {dict(steps)['FROM']} Python here to build the venv with")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", venv], check=True, timeout=120)
    bin_dir = venv / "bin"
    for name, args in steps:
        if name == "RUN" and args.startswith("pip "):
            command = shlex.split(args)
            done = subprocess.run([str(bin_dir / "python"), "-m", *command], cwd=out, capture_output=True,
                                  text=True, timeout=600)  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
    entry = [str(bin_dir / "python"), *json.loads(dict(steps)["ENTRYPOINT"])[1:], *json.loads(dict(steps)["CMD"])]
    done = subprocess.run(entry, cwd=out, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "max probe error 0" in done.stdout and "CartPole-v1: mean return" in done.stdout
    assert subprocess.run([str(bin_dir / "python"), "-c", "import torch"], capture_output=True).returncode != 0


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _docker_works(), reason="no working container engine here (`docker info` fails)")
def test_the_dockerfile_builds_and_runs_with_docker(cartpole, tmp_path):
    out = pack(cartpole, tmp_path / "app", docker=True)
    tag = "rlport-test-pack"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(out)], check=True, timeout=900)
    try:
        done = subprocess.run(["docker", "run", "--rm", tag, "--episodes", "2"], capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "CartPole-v1: mean return" in done.stdout
        whoami = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True,
                                text=True, timeout=120)  # fmt: skip
        assert whoami.stdout.strip() != "0"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
