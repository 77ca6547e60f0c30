"""The CleanRL-style examples (examples/*.py) train for a tiny budget and write a bundle that loads and acts.

Each example runs in-process (its ``main(Args(...))``) so that torch and gymnasium load once.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import rlport
from rlport.backends.parity import compare_probes
from rlport.bundle.bundle import Bundle
from zoo import needs_zoo

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"rlport_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


TINY = [
    pytest.param("ppo", {"total_timesteps": 512, "update_epochs": 2}, "CartPole-v1", id="ppo-discrete"),
    pytest.param(
        "ppo", {"env_id": "Pendulum-v1", "total_timesteps": 512, "update_epochs": 2}, "Pendulum-v1", id="ppo-continuous"
    ),  # fmt: skip
    pytest.param("reinforce", {"total_timesteps": 300, "num_envs": 2}, "CartPole-v1", id="reinforce"),
    pytest.param("dqn", {"total_timesteps": 400, "learning_starts": 200, "hidden": 32}, "CartPole-v1", id="dqn"),
    pytest.param(
        "sac", {"total_timesteps": 200, "learning_starts": 100, "batch_size": 32, "hidden": 32}, "Pendulum-v1", id="sac"
    ),  # fmt: skip
]


@pytest.mark.parametrize(("name", "settings", "env_id"), TINY)
def test_example_writes_a_bundle_that_acts(name, settings, env_id, tmp_path):
    module = example(name)
    output = tmp_path / f"{name}.rlp"
    result = module.main(module.Args(**settings, output=str(output)))
    assert result["steps"] >= settings["total_timesteps"]
    bundle = Bundle.load(output)
    assert bundle.env.id == env_id and bundle.source["framework"] == "torch"
    assert compare_probes(bundle).mismatched == 0
    action, _ = rlport.load(output, backend="torch").predict(bundle.probes["obs"][:4], deterministic=True)
    np.testing.assert_allclose(action, rlport.load(output).predict(bundle.probes["obs"][:4], deterministic=True)[0],
                               atol=1e-6)  # fmt: skip


def test_every_example_field_is_documented_and_a_flag():
    """Each Args field has a docstring line (CleanRL's convention) and a command-line flag."""
    for name in ("ppo", "reinforce", "dqn", "sac"):
        module = example(name)
        source = (EXAMPLES / f"{name}.py").read_text()
        for field in dataclasses.fields(module.Args):
            assert f"    {field.name}: " in source
            after = source.split(f"    {field.name}: ", 1)[1].splitlines()[1].strip()
            assert after.startswith('"""'), f"{name}.Args.{field.name} has no docstring"


@needs_zoo
def test_zoo_agent_fine_tunes_in_plain_torch_and_is_written_back(zoo_sample, tmp_path):
    """An imported RL Zoo PPO agent: a few PPO updates with examples/ppo.py --init, written back, reloaded."""
    original = rlport.import_zoo(zoo_sample / "ppo" / "CartPole-v1_1", fingerprint=False)
    original.save(tmp_path / "zoo.rlp")
    ppo = example("ppo")
    output = tmp_path / "tuned.rlp"
    ppo.main(ppo.Args(init=str(tmp_path / "zoo.rlp"), total_timesteps=512, update_epochs=4, output=str(output)))
    tuned = Bundle.load(output)
    assert [n.op for n in tuned.graph.nodes()] == [n.op for n in original.graph.nodes()]
    assert tuned.env == original.env and tuned.source == original.source
    changed = [name for name in original.tensors if not np.array_equal(tuned.tensors[name], original.tensors[name])]
    assert "action_net.weight" in changed and "mlp_extractor.policy_net.0.weight" in changed
    assert compare_probes(tuned).mismatched == 0
    obs = original.probes["obs"][:64]
    for backend in ("numpy", "torch"):
        np.testing.assert_array_equal(rlport.load(output, backend=backend).predict(obs, deterministic=True)[0],
                                      tuned.probes["action"][:64])  # fmt: skip
