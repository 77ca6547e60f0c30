"""One bundle assembly for every producer (``rlport.assemble``); imports never fail because of the env."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import rlport
from rlport.assemble import Reference, assemble, created, exporter
from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.manifest import EnvSpec
from rlport.cli.main import main
from rlport.errors import RlportWarning, UnsupportedError

SRC = Path(rlport.__file__).parent
CORE = ("rlport._version", "rlport.graph", "rlport.bundle", "rlport.errors")


def _rlport_imports(path: Path) -> set[str]:
    """Every ``rlport...`` module a source file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "rlport" or name.startswith("rlport.")}


@pytest.mark.parametrize(("module", "allowed"), [("assemble.py", ("rlport.backends",)), ("bundle/probes.py", ())])
def test_the_assembly_imports_only_the_core(module, allowed):
    """The assembly runs the numpy backend to record probes, and nothing of a framework, envs or verify."""
    outside = {name for name in _rlport_imports(SRC / module) if not name.startswith(CORE + allowed)}
    assert outside == set()


def test_the_import_check_sees_an_upward_import(tmp_path):
    upward = tmp_path / "up.py"
    upward.write_text("def f():\n    from rlport.backends.numpy import NumpyPolicy\n")
    assert _rlport_imports(upward) == {"rlport.backends.numpy"}


def test_exporter_and_created(monkeypatch):
    assert exporter() == f"rlport {rlport.__version__}"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert created() == "1970-01-02T00:00:00Z"


@pytest.fixture(scope="module")
def parts():
    """A small imported policy taken apart: what a producer hands to ``assemble``."""
    from gymnasium import spaces
    from stable_baselines3 import DQN

    from sb3_models import SpacesEnv

    model = DQN("MlpPolicy", SpacesEnv(spaces.Box(-1, 1, (5,), "float32"), spaces.Discrete(4)), device="cpu")
    bundle = rlport.from_sb3(model, probes=0, fingerprint=False, evaluate=0)
    return model, bundle


def _assemble(bundle, **kwargs):
    return assemble(bundle.graph, dict(bundle.tensors), bundle.observation_space, bundle.action_space,
                    EnvSpec("CartPole-v1"), {"framework": "test"}, {"algorithm": "DQN"}, **kwargs)  # fmt: skip


def test_assemble_records_runtime_probes_and_never_verification(parts):
    _, source = parts
    bundle = _assemble(source, probes=20)
    assert bundle.probe_info.count == 20 and bundle.probe_info.source == "rlport numpy runtime at import"
    assert bundle.verification is None and bundle.fingerprint is None  # the env exists, but was not made
    assert set(bundle.provenance) == {"algorithm", "created", "exporter"}
    action = NumpyPolicy(bundle).predict(bundle.probes["obs"], deterministic=True)[0]
    np.testing.assert_array_equal(action, bundle.probes["action"])


def _reference(model, offset: int = 0, cannot_express=()) -> Reference:
    def observations(count):
        return np.random.default_rng(1).uniform(-1, 1, (count, 5)).astype(np.float32)

    def predict(obs, state, episode_start):
        action, state = model.predict(obs, deterministic=True)
        return (action + offset) % 4, state

    return Reference("stable-baselines3", predict, observations, False, "SB3 (test)", cannot_express)


def test_assemble_keeps_the_references_probes(parts):
    model, source = parts
    bundle = _assemble(source, probes=17, reference=_reference(model))
    assert bundle.probe_info.count == 17 and bundle.probe_info.source == "SB3 (test)"
    np.testing.assert_array_equal(bundle.probes["action"], model.predict(bundle.probes["obs"], deterministic=True)[0])


@pytest.mark.parametrize("probes", [0, 5])
def test_assemble_refuses_a_bundle_acting_otherwise_than_its_reference(parts, probes):
    model, source = parts
    with pytest.raises(UnsupportedError, match=r"does not act as the stable-baselines3 policy.*Mine\._predict"):
        _assemble(source, probes=probes, reference=_reference(model, offset=1, cannot_express=["Mine._predict"]))


def test_assemble_refuses_a_graph_that_does_not_validate(parts):
    _, source = parts
    tensors = dict(source.tensors)
    named = next(node for node in source.graph.nodes() if node.params)
    tensors.pop(next(iter(named.params.values())))  # a weight the graph names
    with pytest.raises(UnsupportedError, match=r"model\.zip: the graph made from it does not validate"):
        assemble(source.graph, tensors, source.observation_space, source.action_space, EnvSpec(), {}, {},
                 what="model.zip")  # fmt: skip


def test_cli_import_of_a_zoo_run_builds_the_policy_once(zoo_sample, tmp_path, monkeypatch):
    builds = []
    real = NumpyPolicy.__init__

    def counting(self, *args, **kwargs):
        builds.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(NumpyPolicy, "__init__", counting)
    out = tmp_path / "cartpole.rlp"
    assert main(["import", str(zoo_sample / "ppo" / "CartPole-v1_1"), "-o", str(out)]) == 0
    count = len(builds)
    assert rlport.Bundle.load(out).verification["fingerprint"]  # the fingerprint is recorded: the env was made
    assert count == 1, f"rlport import built the numpy policy {count} times (once: its dry run serves the probes)"


# ---- import never fails because of the env -----------------------------------------------------


def _zoo_run(model, tmp_path: Path, env_id: str) -> Path:
    """An RL Zoo run folder of ``model`` whose args.yml records ``env_id``."""
    run = tmp_path / "dqn" / f"{env_id}_1"
    (run / env_id).mkdir(parents=True)
    model.save(run / f"{env_id}.zip")
    (run / env_id / "args.yml").write_text(
        f"!!python/object/apply:collections.OrderedDict\n- - - algo\n    - dqn\n  - - env\n    - {env_id}\n"
    )
    return run


def _import_warns(run: Path, out: Path, capsys) -> list[str]:
    """The warnings ``rlport import --json`` reports (it succeeds)."""
    capsys.readouterr()
    assert main(["import", str(run), "-o", str(out), "--probes", "8", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["warnings"]


def test_a_renamed_env_with_other_spaces_imports_with_a_warning_and_run_fails(parts, tmp_path, capsys):
    pytest.importorskip("Box2D")
    model, _ = parts  # observes 5 numbers; today's LunarLander-v3 observes 8
    out = tmp_path / "lander.rlp"
    messages = _import_warns(_zoo_run(model, tmp_path, "LunarLander-v2"), out, capsys)
    assert any("LunarLander-v2 was renamed LunarLander-v3, but the spaces differ" in m and "shape" in m
               for m in messages), messages  # fmt: skip
    assert any("no fingerprint recorded" in m for m in messages), messages
    bundle = rlport.Bundle.load(out)
    assert bundle.env.id == "LunarLander-v2" and bundle.verification is None
    assert bundle.observation_space.shape == (5,)  # the file's spaces
    capsys.readouterr()
    assert main(["run", str(out), "--episodes", "1"]) == 2  # the recorded id cannot be made today
    assert "LunarLander-v3" in capsys.readouterr().err
    assert main(["run", str(out), "--episodes", "1", "--env", "LunarLander-v3"]) == 1  # its spaces differ
    assert "differs from the bundle's" in capsys.readouterr().err


def test_an_env_id_that_does_not_exist_imports_with_a_warning_and_run_fails(parts, tmp_path, capsys):
    model, _ = parts
    out = tmp_path / "nowhere.rlp"
    messages = _import_warns(_zoo_run(model, tmp_path, "NoSuchEnvAnywhere-v0"), out, capsys)
    assert any("no fingerprint recorded" in m and "NoSuchEnvAnywhere-v0" in m for m in messages), messages
    assert rlport.Bundle.load(out).env.id == "NoSuchEnvAnywhere-v0"
    capsys.readouterr()
    assert main(["run", str(out), "--episodes", "1"]) == 2
    assert "NoSuchEnvAnywhere-v0" in capsys.readouterr().err


def test_import_sb3_with_an_env_of_other_spaces_warns_and_writes(parts, tmp_path, capsys):
    model, _ = parts
    path = tmp_path / "dqn.zip"
    model.save(path)
    with pytest.warns(RlportWarning, match=r"no fingerprint recorded.*differs from the bundle's"):
        bundle = rlport.import_sb3(path, env_id="CartPole-v1", probes=0)
    assert bundle.verification is None and bundle.env.id == "CartPole-v1"
    bundle.save(tmp_path / "dqn.rlp")
    assert main(["run", str(tmp_path / "dqn.rlp"), "--episodes", "1"]) == 1
    assert "differs from the bundle's" in capsys.readouterr().err


def test_no_warning_when_no_env_id_is_recorded(parts, tmp_path):
    model, _ = parts
    path = tmp_path / "dqn.zip"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RlportWarning)
        assert rlport.import_sb3(path, probes=0).env.id is None


def test_the_version_is_pyprojects():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert rlport.__version__ == pyproject["project"]["version"]
