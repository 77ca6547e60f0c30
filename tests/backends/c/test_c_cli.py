"""The C export and backend from the command line: ``rlport export --format c`` and ``rlport run --backend c``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from c_toolchain import needs_compiler, strict_compile

from rlport.cli.main import main
from zoo import needs_zoo

pytestmark = needs_compiler


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory, zoo_sample) -> Path:
    """The zoo sample's PPO CartPole agent as a bundle."""
    path = tmp_path_factory.mktemp("zoo") / "cartpole.rlp"
    assert main(["import", str(zoo_sample / "ppo" / "CartPole-v1_1"), "-o", str(path), "--json"]) == 0
    return path


@needs_zoo
def test_export_format_c_writes_the_folder_and_reports_it_as_json(cartpole, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "cartpole_c"
    assert main(["export", str(cartpole), "--format", "c", "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "c" and Path(data["output"]) == out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "rlport_policy.c", "rlport_policy.h"]
    strict_compile(out)


@needs_zoo
def test_export_format_c_refuses_a_missing_parent_with_exit_2(cartpole, tmp_path, capsys):
    assert main(["export", str(cartpole), "--format", "c", "-o", str(tmp_path / "no" / "dir"), "--json"]) == 2
    assert not (tmp_path / "no").exists()


@needs_zoo
def test_run_backend_c_plays_the_zoo_agent_with_the_numpy_return(cartpole, capsys):
    capsys.readouterr()
    returns = {}
    for backend in ("numpy", "c"):
        assert main(["run", str(cartpole), "--backend", backend, "--episodes", "2", "--seed", "3", "--json"]) == 0
        returns[backend] = json.loads(capsys.readouterr().out)["returns"]
    assert returns["c"] == returns["numpy"] and min(returns["c"]) >= 400  # the trained agent balances the pole


@needs_zoo
def test_run_backend_c_samples_reproducibly_with_a_seed(cartpole, capsys):
    capsys.readouterr()
    returns = []
    for _ in range(2):
        argv = ["run", str(cartpole), "--backend", "c", "--stochastic", "--episodes", "1", "--seed", "4", "--json"]
        assert main(argv) == 0
        returns.append(json.loads(capsys.readouterr().out)["returns"])
    assert returns[0] == returns[1]


@needs_zoo
def test_run_backend_c_plays_the_int8_zoo_agent_as_numpy_does(cartpole, tmp_path, capsys):
    """int8 weights and activations: int8 x int8 -> int32 in C, the numpy backend's returns."""
    from rlport.compression import compress

    path = compress(str(cartpole), weights="int8", activations="int8", calibrate=64).save(tmp_path / "int8.rlp")
    capsys.readouterr()
    returns = {}
    for backend in ("numpy", "c"):
        assert main(["run", str(path), "--backend", backend, "--episodes", "2", "--seed", "3", "--json"]) == 0
        returns[backend] = json.loads(capsys.readouterr().out)["returns"]
    assert returns["c"] == returns["numpy"]
