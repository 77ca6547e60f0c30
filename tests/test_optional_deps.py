"""Loading and running a bundle needs numpy only: proven in a subprocess where torch,
stable_baselines3 and gymnasium cannot be imported at all."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from stable_baselines3 import PPO, SAC

import rlport
from isolation import BLOCKER


def run_blocked(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("nodeps")
    out = {}
    ppo = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    out["ppo"] = rlport.from_sb3(ppo, probes=16).save(folder / "ppo.rlp")
    sac = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    out["sac"] = rlport.from_sb3(sac, probes=16).save(folder / "sac.rlp")
    return out


@pytest.mark.parametrize("name", ["ppo", "sac"])
def test_load_and_predict_import_neither_torch_nor_sb3(bundles, name):
    result = run_blocked(
        f"""
        import json, sys
        import rlport
        policy = rlport.load({str(bundles[name])!r})
        probes = policy.bundle.probes
        action, _ = policy.predict(probes["obs"], deterministic=True)
        sampled, _ = policy.predict(probes["obs"][0], deterministic=False)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "stable_baselines3", "gymnasium"))
        print(json.dumps({{"loaded": loaded, "max_diff": float(abs(action - probes["action"]).max())}}))
        """
    )
    assert result["loaded"] == []
    assert result["max_diff"] <= 1e-5


def test_the_blocker_really_blocks():
    proc = subprocess.run([sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "blocked" in proc.stderr


def test_running_episodes_without_gymnasium_names_the_extra():
    result = run_blocked(
        """
        import json
        from rlport.envs import make_env
        from rlport.bundle.manifest import EnvSpec
        try:
            make_env(EnvSpec(id="CartPole-v1"))
        except ImportError as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        """
    )
    assert result["error"] == "MissingDependencyError"
    assert 'pip install "rlport[sb3]"' in result["message"]


def test_to_sb3_without_sb3_names_the_extra(bundles):
    result = run_blocked(
        f"""
        import json
        import rlport
        try:
            rlport.to_sb3({str(bundles["ppo"])!r})
            print(json.dumps({{"error": None}}))
        except rlport.MissingDependencyError as exc:
            print(json.dumps({{"error": str(exc)}}))
        """
    )
    assert result["error"] is not None and 'pip install "rlport[sb3]"' in result["error"]
