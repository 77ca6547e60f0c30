"""Loading and running a bundle needs numpy only: proven in a subprocess where torch,
stable_baselines3 and gymnasium cannot be imported at all."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

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
    assert 'pip install "rlport[envs]"' in result["message"]


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


# ---- a numpy-only install, as pip leaves it: the packages are absent (ModuleNotFoundError), not broken ---------

MISSING = textwrap.dedent(
    """
    import sys, importlib.abc

    MISSING = {missing!r}

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in MISSING:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
    from rlport.cli.main import main
    sys.exit(main(sys.argv[1:]))
    """
)
NUMPY_ONLY = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "gym", "onnx", "onnxruntime", "yaml")


def rlport_without(missing: tuple[str, ...], *args: str, cwd=None) -> subprocess.CompletedProcess:
    """``rlport ARGS`` in a process where the ``missing`` packages are not installed."""
    code = MISSING.format(missing=missing)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, check=False)


def one_line_naming(done: subprocess.CompletedProcess, extra: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert f'pip install "rlport[{extra}]"' in lines[0]
    return lines[0]


def test_demo_on_a_numpy_only_install_names_the_sb3_extra(tmp_path):
    done = rlport_without(NUMPY_ONLY, "demo", "--out", str(tmp_path / "demo"))
    assert one_line_naming(done, "sb3").startswith("rlport demo: ")
    assert not (tmp_path / "demo").exists()  # refused before any work


def test_export_sb3_on_a_numpy_only_install_names_the_sb3_extra(bundles, tmp_path):
    done = rlport_without(NUMPY_ONLY, "export", str(bundles["ppo"]), "--format", "sb3", "-o", str(tmp_path / "m.zip"),
                          "--allow-missing-critic")  # fmt: skip
    one_line_naming(done, "sb3")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_package_with_json_is_a_json_error(bundles, tmp_path):
    done = rlport_without(NUMPY_ONLY, "export", str(bundles["ppo"]), "--format", "sb3", "-o", str(tmp_path / "m.zip"),
                          "--allow-missing-critic", "--json")  # fmt: skip
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "MissingDependencyError" and error["exit_code"] == 2
    assert 'pip install "rlport[sb3]"' in error["message"]


def test_zoo_import_without_yaml_names_the_yaml_extra(tmp_path):
    run = tmp_path / "ppo" / "CartPole-v1_1"
    (run / "CartPole-v1").mkdir(parents=True)
    config = "!!python/object/apply:collections.OrderedDict\n- - - n_envs\n    - 1\n"
    (run / "CartPole-v1" / "config.yml").write_text(config)
    (run / "CartPole-v1.zip").write_bytes(b"")
    done = rlport_without(NUMPY_ONLY, "import", str(run), "-o", str(tmp_path / "out.rlp"))
    assert "rlport[sb3]" not in one_line_naming(done, "yaml")  # YAML alone: not torch, SB3 and MuJoCo


def test_the_yaml_extra_is_declared():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["yaml"] == ["pyyaml>=6"]


def test_the_torch_backend_without_torch_names_the_torch_extra(bundles):
    result = run_blocked(
        f"""
        import json
        import rlport
        try:
            rlport.load({str(bundles["ppo"])!r}, backend="torch")
            print(json.dumps({{"error": None}}))
        except rlport.MissingDependencyError as exc:
            print(json.dumps({{"error": str(exc)}}))
        """
    )
    assert result["error"] is not None and 'pip install "rlport[torch]"' in result["error"]


def test_rlport_run_with_the_torch_backend_without_torch_names_the_torch_extra(bundles):
    done = rlport_without(NUMPY_ONLY, "run", str(bundles["ppo"]), "--backend", "torch")
    assert "rlport[sb3]" not in one_line_naming(done, "torch")  # torch alone: not SB3, MuJoCo and Box2D


def test_each_extra_is_the_smallest_for_its_feature():
    import tomllib

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]
    assert extras["torch"] == ["torch>=2.0"]
    assert extras["onnx"] == ["onnx>=1.15", "onnxruntime>=1.17"]
    assert not any(line.startswith("gymnasium") for line in extras["sb3"] + extras["torch"])
    assert extras["envs"] == ["gymnasium[classic-control,box2d,mujoco]>=0.29"]
    assert extras["all"] == [f"rlport[{','.join(sorted(set(extras) - {'all'}, key=list(extras).index))}]"]


def test_every_backend_names_an_extra_that_is_declared():
    import tomllib

    from rlport.backends.registry import BACKENDS, EXPORT_FORMATS

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    declared = set(extras["optional-dependencies"])
    named = {entry.extra for entry in [*BACKENDS.values(), *EXPORT_FORMATS.values()]} - {None}
    assert named <= declared and named == {"torch", "onnx", "sb3"}
