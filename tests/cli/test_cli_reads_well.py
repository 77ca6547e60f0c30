"""The CLI reads well (issue 11): readable inspect, JSON errors, help on every option, plain warnings, load(Bundle)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import rlport
from rlport.bundle.manifest import EnvSpec, WrapperSpec
from rlport.cli.commands import _space_text
from rlport.cli.main import _parser, main
from rlport.cli.output import plain_warnings

F32_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(scope="module")
def gym_era_bundle(tmp_path_factory) -> Path:
    """A CartPole bundle with gym-era bounds (float32 max for infinity), a wrapper, and SB3's ``GPU Enabled``."""
    env = gym.make("CartPole-v1")
    high = np.array([4.8, F32_MAX, 0.41887903, F32_MAX], dtype=np.float32)
    env.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
    model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    bundle = rlport.from_sb3(model, env_id="CartPole-v1", probes=8, fingerprint=False, evaluate=0)
    spec = EnvSpec("CartPole-v1", wrappers=(WrapperSpec("time_limit", {"max_episode_steps": 200}),))
    provenance = {**bundle.provenance, "device": None, "gpu_enabled": "True"}
    path = tmp_path_factory.mktemp("reads") / "gym_era.rlp"
    dataclasses.replace(bundle, env=spec, provenance=provenance).save(path)
    return path


def nesting(text: str) -> int:
    """The deepest parenthesis nesting in ``text``."""
    depth = deepest = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    return deepest


# ---- inspect (item 13) ------------------------------------------------------------------------------------------


def test_inspect_reads_well(gym_era_bundle, capsys):
    assert main(["inspect", str(gym_era_bundle)]) == 0
    out = capsys.readouterr().out
    assert "e+38" not in out and "3.40282" not in out
    assert "low [-4.8, -max, -0.4189, -max], high [4.8, max, 0.4189, max]" in out
    assert "max: the largest finite value" in out
    assert "wrappers: time_limit max_episode_steps=200" in out
    assert "steps on cuda" in out and "on ?" not in out
    assert all(nesting(line) <= 1 for line in out.splitlines()), out


def test_inspect_of_a_bundle_made_here(tmp_path, capsys):
    model = PPO("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    path = tmp_path / "pendulum.rlp"
    rlport.from_sb3(model, probes=4, fingerprint=False, evaluate=0).save(path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Box(3,) float32, low [-1, -1, -8], high [1, 1, 8]" in out
    assert "Box(1,) float32 in [-2, 2]" in out
    assert "steps on cpu" in out and "no wrappers" in out and "max:" not in out


@pytest.mark.parametrize(
    "space, text",
    [
        ({"type": "box", "shape": [18], "dtype": "float32", "low": ["-inf"] * 17 + [0.0],
          "high": ["inf"] * 17 + [1.0]}, "Box(18,) float32, low -inf..0, high 1..inf"),
        ({"type": "box", "shape": [3, 84, 84], "dtype": "uint8", "low": 0, "high": 255},
         "Box(3, 84, 84) uint8 in [0, 255]"),
        ({"type": "box", "shape": [2], "dtype": "float64", "low": [-1e300, -1e300], "high": [0.5, 0.5]},
         "Box(2,) float64, low -1e+300, high 0.5"),
        ({"type": "discrete", "n": 3, "start": 1}, "Discrete(3) starting at 1"),
    ],
)  # fmt: skip
def test_space_text(space, text):
    assert _space_text(space) == text


def test_dict_spaces_get_a_row_per_key(tmp_path, capsys):
    from stable_baselines3 import SAC

    env = gym.make("FetchReachDense-v4") if "FetchReachDense-v4" in gym.registry else None
    if env is None:  # a goal env of our own: Dict observations are what matter here
        env = gym.make("Pendulum-v1")
        box = env.observation_space
        env.observation_space = gym.spaces.Dict({"observation": box, "desired_goal": box})
    model = SAC("MultiInputPolicy", env, policy_kwargs={"net_arch": [8]}, buffer_size=10, device="cpu", seed=0)
    path = tmp_path / "dict.rlp"
    rlport.from_sb3(model, env_id="Pendulum-v1", probes=4, fingerprint=False, evaluate=0).save(path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Dict of 2 keys" in out
    assert "  desired_goal" in out and "  observation" in out
    assert all(nesting(line) <= 1 for line in out.splitlines()), out


# ---- --json errors, help texts (item 16) ------------------------------------------------------------------------


def test_json_errors_are_a_json_object_on_stdout(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.rlp"), "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["type"] == "BundleError" and error["exit_code"] == 2
    assert "missing.rlp" in error["message"]
    assert captured.err.count("\n") == 1 and captured.err.startswith("rlport inspect: ")


def test_without_json_errors_stay_off_stdout(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.rlp")]) == 2
    assert capsys.readouterr().out == ""


def test_usage_errors_with_json_are_json_too(capsys):
    assert main(["run", "x.rlp", "--episodes", "0", "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["type"] == "UsageError" and error["exit_code"] == 2 and "--episodes" in error["message"]
    assert "usage:" in captured.err


def test_internal_errors_with_json_are_json(gym_era_bundle, monkeypatch, capsys):
    import rlport.bundle.bundle as bundle_module

    def broken(self):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(bundle_module.Bundle, "summary", broken)
    assert main(["inspect", str(gym_era_bundle), "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "InternalError" and "ZeroDivisionError: a bug" in error["message"]


def _options(parser: argparse.ArgumentParser, prefix: str = "rlport"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prefix} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield f"{prefix} {'/'.join(action.option_strings)}", action.help


def test_every_option_has_a_help_text():
    missing = [name for name, text in _options(_parser()) if not text or text == argparse.SUPPRESS]
    assert missing == []


def test_requirements_and_pack_take_a_target_python(gym_era_bundle, tmp_path, capsys):
    bundle = rlport.Bundle.load(gym_era_bundle)
    old = dataclasses.replace(bundle, provenance={**bundle.provenance, "numpy": "1.21.3", "python": "3.7.10"})
    path = tmp_path / "old.rlp"
    old.save(path)
    assert main(["requirements", str(path), "--python", "3.12"]) == 0
    out = capsys.readouterr().out
    assert "numpy==1.26.4" in out.splitlines() and "# pinned for Python 3.12 by rlport" in out
    assert main(["pack", str(path), "-o", str(tmp_path / "pack"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["python"] == "3.10" and "numpy==1.24.4" in result["requirements"]
    assert any("numpy 1.21.3" in note for note in result["notes"])
    assert main(["pack", str(path), "-o", str(tmp_path / "pack")]) == 0
    assert "note" in capsys.readouterr().out
    assert main(["requirements", str(path), "--python", "3.9"]) == 2
    assert "Python 3.10 to 3.14" in capsys.readouterr().err


# ---- load(Bundle) (item 16) ------------------------------------------------------------------------------------------


def test_load_takes_a_bundle_as_well_as_a_path(gym_era_bundle):
    bundle = rlport.Bundle.load(gym_era_bundle)
    obs = bundle.probes["obs"]
    from_path = rlport.load(gym_era_bundle).predict(obs, deterministic=True)[0]
    from_bundle = rlport.load(bundle).predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(from_bundle, from_path)
    assert rlport.load(bundle, backend="torch").bundle is bundle
    with pytest.raises(rlport.BundleError, match="a bundle's path or a Bundle, not int"):
        rlport.load(42)


# ---- warnings (item 15) ---------------------------------------------------------------------------------------------


def test_library_warnings_show_once_plainly(capsys):
    library = str(Path(gym.__file__).parent / "logger.py")
    with plain_warnings("rlport run"):
        for _ in range(3):
            warnings.warn_explicit("\x1b[33mWARN: obs is not within the observation space\x1b[0m", UserWarning,
                                   library, 40)  # fmt: skip
        warnings.warn_explicit("\x1b[33mWARN: old env version\x1b[0m", DeprecationWarning, library, 41)
        warnings.warn("the id was renamed", rlport.RlportWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "rlport run: warning from gymnasium: obs is not within the observation space",
        "rlport run: warning: the id was renamed",
    ]


@pytest.mark.slow
def test_run_prints_no_escape_codes_and_no_library_deprecations(tmp_path):
    model = PPO("MlpPolicy", "Walker2d-v4", policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    path = tmp_path / "walker.rlp"
    rlport.from_sb3(model, env_id="Walker2d-v4", probes=4, fingerprint=False, evaluate=0).save(path)
    done = subprocess.run([sys.executable, "-m", "rlport", "run", str(path), "--episodes", "1"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stderr and "out of date" not in done.stderr
    assert "Walker2d-v4" in done.stdout
