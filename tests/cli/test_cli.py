"""The rlport command line: inspect, run, demo, exit codes and --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.cli.main import main


@pytest.fixture(scope="module")
def cartpole_bundle(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    path = tmp_path_factory.mktemp("cli") / "cartpole.rlp"
    rlport.from_sb3(model, env_id="CartPole-v1", probes=32).save(path)
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "rlport", *args], capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_inspect_table_names_what_is_inside(cartpole_bundle, capsys):
    assert main(["inspect", str(cartpole_bundle)]) == 0
    out = capsys.readouterr().out
    assert "PPO" in out and "CartPole-v1" in out and "Discrete(2)" in out
    assert "linear" in out and "categorical" in out


def test_inspect_json_is_machine_readable(cartpole_bundle, capsys):
    assert main(["inspect", str(cartpole_bundle), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["action_space"] == {"type": "discrete", "n": 2, "start": 0}
    assert data["provenance"]["algorithm"] == "PPO"
    assert data["parameters"] == 4 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2
    assert data["probes"]["count"] == 32


def test_run_reports_returns_as_json(cartpole_bundle, capsys):
    assert main(["run", str(cartpole_bundle), "--episodes", "3", "--seed", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["episodes"] == 3 and len(data["returns"]) == 3
    assert data["env"] == "CartPole-v1"
    assert data["mean_return"] == pytest.approx(np.mean(data["returns"]))


def test_run_is_reproducible_with_a_seed(cartpole_bundle, capsys):
    main(["run", str(cartpole_bundle), "--episodes", "2", "--seed", "3", "--stochastic", "--json"])
    first = json.loads(capsys.readouterr().out)["returns"]
    main(["run", str(cartpole_bundle), "--episodes", "2", "--seed", "3", "--stochastic", "--json"])
    assert json.loads(capsys.readouterr().out)["returns"] == first


def test_run_against_an_env_with_other_spaces_fails_the_check(cartpole_bundle, capsys):
    assert main(["run", str(cartpole_bundle), "--env", "MountainCar-v0", "--episodes", "1"]) == 1
    assert "observation space" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "does-not-exist.rlp"], "cannot read bundle"),
        (["run", "{bundle}", "--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["run", "{bundle}", "--env-kwargs", "{not json"], "not a JSON object"),
    ],
    ids=["missing-file", "unknown-env", "bad-env-kwargs"],
)
def test_bad_input_exits_2_with_a_message(cartpole_bundle, capsys, args, message):
    args = [a.replace("{bundle}", str(cartpole_bundle)) for a in args]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_a_corrupt_bundle_exits_2(cartpole_bundle, tmp_path, capsys):
    broken = tmp_path / "broken.rlp"
    broken.write_bytes(cartpole_bundle.read_bytes()[:-100])
    assert main(["inspect", str(broken)]) == 2
    assert "rlport inspect:" in capsys.readouterr().err


def test_usage_errors_exit_2():
    code, _, err = run_cli("run")
    assert code == 2 and "usage" in err
    code, _, err = run_cli("run", "x.rlp", "--episodes", "0")
    assert code == 2 and "--episodes" in err


def test_console_entry_point_and_version():
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"rlport {rlport.__version__}"


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    code, out, err = run_cli("demo", "--out", str(tmp_path), "--timesteps", "2000", "--episodes", "2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["ok"] is True
    assert data["parity"]["identical"] == data["parity"]["steps"] > 0
    assert data["parity"]["mismatched"] == 0
    assert data["rlport"]["imported"] == {"torch": False, "stable_baselines3": False}
    assert data["rlport"]["episodes"]["returns"] == data["sb3"]["episodes"]["returns"]
    assert data["size_bytes"]["rlport"] < data["size_bytes"]["sb3"]
    assert (tmp_path / "cartpole.rlp").exists() and (tmp_path / "cartpole_sb3.zip").exists()


def test_run_with_the_torch_backend_gives_the_same_returns(cartpole_bundle, capsys):
    main(["run", str(cartpole_bundle), "--episodes", "2", "--seed", "1", "--json"])
    numpy_returns = json.loads(capsys.readouterr().out)["returns"]
    assert main(["run", str(cartpole_bundle), "--episodes", "2", "--seed", "1", "--backend", "torch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["returns"] == numpy_returns


def test_unknown_backend_is_a_clear_error(cartpole_bundle):
    with pytest.raises(rlport.UnsupportedError, match="supported: numpy, torch, onnx"):
        rlport.load(cartpole_bundle, backend="tflite")


def test_export_onnx_then_run_with_the_onnx_backend(cartpole_bundle, tmp_path, capsys):
    import onnx

    target = tmp_path / "policy.onnx"
    assert main(["export", str(cartpole_bundle), "--format", "onnx", "-o", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == str(target)
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)
    main(["run", str(cartpole_bundle), "--episodes", "2", "--seed", "1", "--json"])
    numpy_returns = json.loads(capsys.readouterr().out)["returns"]
    assert main(["run", str(cartpole_bundle), "--episodes", "2", "--seed", "1", "--backend", "onnx", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["returns"] == numpy_returns


def _normalized_pendulum(tmp_path: Path, include_critic: bool) -> tuple[Path, Any]:
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env("Pendulum-v1"), clip_obs=4.0)
    venv.obs_rms.mean, venv.obs_rms.var, venv.obs_rms.count = np.array([0.3, -0.2, 1.0]), np.array([0.5, 2, 3]), 777.0
    model = SAC("MlpPolicy", venv, policy_kwargs={"net_arch": [16]}, buffer_size=100, seed=0, device="cpu")
    path = tmp_path / "pendulum.rlp"
    bundle = rlport.from_sb3(model, vec_normalize=venv, include_critic=include_critic, probes=8, evaluate=0)
    bundle.save(path)
    return path, bundle


def test_export_sb3_gives_files_plain_sb3_loads(tmp_path, capsys):
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    path, bundle = _normalized_pendulum(tmp_path, include_critic=True)
    target = tmp_path / "out" / "pendulum.zip"
    target.parent.mkdir()
    assert main(["export", str(path), "--format", "sb3", "-o", str(target), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    outputs = result["outputs"]
    # issue 11 item 3: the statistics are named after the model, so that a second export cannot replace them
    assert outputs == [str(target), str(target.parent / "pendulum.vecnormalize.pkl")] and result["warnings"] == []
    model = SAC.load(target, device="cpu")
    venv = VecNormalize.load(outputs[1], make_vec_env("Pendulum-v1"))
    assert venv.obs_rms.count == 777.0 and venv.clip_obs == 4.0
    obs = np.random.default_rng(0).uniform(-1, 1, (32, 3)).astype(np.float32)
    ours, _ = NumpyPolicy(bundle).predict(obs, deterministic=True)
    theirs, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_export_sb3_without_critic_is_refused_and_writes_nothing(tmp_path, capsys):
    path, _ = _normalized_pendulum(tmp_path, include_critic=False)
    target = tmp_path / "pendulum.zip"
    assert main(["export", str(path), "--format", "sb3", "-o", str(target)]) == 2
    assert "--include-critic" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "pendulum.vecnormalize.pkl").exists()
    assert main(["export", str(path), "--format", "sb3", "-o", str(target), "--allow-missing-critic"]) == 0
    assert target.exists() and (tmp_path / "pendulum.vecnormalize.pkl").exists()
    assert "warning: critic, critic_target start from a fresh initialisation" in capsys.readouterr().out
