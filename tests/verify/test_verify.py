"""``rlport verify``: every check PASSes on the honest case and FAILs when made to on purpose."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

import rlport
from rlport.bundle.bundle import Bundle
from rlport.cli.main import main
from rlport.verify.checks import returns_verdict, verify


def _status(report) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = PPO("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    path = tmp_path_factory.mktemp("verify") / "pendulum.rlp"
    rlport.from_sb3(model, env_id="Pendulum-v1", probes=64, evaluate=10).save(path)
    return path


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> Path:
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    path = tmp_path_factory.mktemp("verify") / "cartpole.rlp"
    rlport.from_sb3(model, env_id="CartPole-v1", probes=64, evaluate=5).save(path)
    return path


def test_export_records_a_fingerprint_and_an_evaluation(pendulum):
    bundle = Bundle.load(pendulum)
    assert bundle.verification["evaluation"]["episodes"] == 10
    assert bundle.verification["fingerprint"]["env"]["id"] == "Pendulum-v1"
    assert bundle.fingerprint is not None and "reward" in bundle.fingerprint


def test_the_honest_case_passes(pendulum):
    report = verify(str(pendulum), episodes=10)
    assert _status(report) == {
        "integrity": "PASS",
        "parity": "PASS",
        "spaces": "PASS",
        "dynamics": "PASS",
        "returns": "PASS",
        "dependencies": "PASS",
    }
    assert not report.failed


def test_flipped_weight_byte_fails_integrity(pendulum, tmp_path):
    raw = bytearray(pendulum.read_bytes())
    with zipfile.ZipFile(pendulum) as archive:
        info = archive.getinfo("weights.safetensors")
    raw[info.header_offset + 30 + len(info.filename) + info.file_size - 3] ^= 0xFF  # a byte of the last tensor
    broken = tmp_path / "broken.rlp"
    broken.write_bytes(bytes(raw))
    report = verify(str(broken))
    assert _status(report) == {"integrity": "FAIL"}
    assert "damaged" in report.checks[0].detail or "digest" in report.checks[0].detail


def test_newer_format_major_fails_integrity(pendulum, tmp_path):
    with zipfile.ZipFile(pendulum) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
        comment = archive.comment.replace(b"rlport-bundle 1.0", b"rlport-bundle 2.0")
    newer = tmp_path / "newer.rlp"
    with zipfile.ZipFile(newer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.comment = comment
    report = verify(str(newer))
    assert report.checks[0].status == "FAIL" and "Upgrade rlport" in report.checks[0].detail


def test_wrong_env_fails_spaces(pendulum):
    report = verify(str(pendulum), env_id="MountainCarContinuous-v0", episodes=2)
    assert _status(report)["spaces"] == "FAIL"
    assert "observation space" in next(c for c in report.checks if c.name == "spaces").detail
    assert "returns" not in _status(report)


def test_changed_physics_fails_dynamics(pendulum):
    report = verify(str(pendulum), env_kwargs={"g": 9.0}, episodes=10)
    assert _status(report)["dynamics"] == "FAIL"
    assert _status(report)["spaces"] == "PASS"


def test_shuffled_action_order_fails_parity(cartpole, tmp_path):
    bundle = Bundle.load(cartpole)
    bundle.tensors["action_net.weight"] = bundle.tensors["action_net.weight"][::-1].copy()
    bundle.tensors["action_net.bias"] = bundle.tensors["action_net.bias"][::-1].copy()
    shuffled = bundle.save(tmp_path / "shuffled.rlp")
    report = verify(str(shuffled), episodes=5)
    assert _status(report)["parity"] == "FAIL"
    assert _status(report)["integrity"] == "PASS"


def _balancer(sign: float) -> Bundle:
    """A hand-made CartPole policy: push towards where the pole leans (returns ~500); ``sign=-1`` inverts it."""
    from rlport.bundle.manifest import EnvSpec
    from rlport.bundle.spaces import BoxSpec, DiscreteSpec
    from rlport.graph.graph import Graph, GraphInput, Node

    high = np.array([4.8, np.inf, 0.42, np.inf], dtype=np.float32)
    weight = sign * np.array([[0.0, 0.0, -1.0, -1.0], [0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        output="action",
        preprocess=(Node("cast", ("obs",), ("x",), attrs={"dtype": "float32"}),),
        policy=(
            Node("linear", ("x",), ("logits",), params={"weight": "w"}),
            Node("categorical", ("logits",), ("action",)),
        ),
    )
    return Bundle(BoxSpec.create(-high, high, (4,)), DiscreteSpec(2), graph, {"w": weight}, EnvSpec("CartPole-v1"))


def test_collapsed_returns_fail(tmp_path):
    from rlport.verify.record import record_verification

    good = _balancer(1.0)
    assert record_verification(good, evaluate=10) is None
    assert np.mean(good.verification["evaluation"]["returns"]) > 400
    assert not verify(str(good.save(tmp_path / "good.rlp")), episodes=10).failed
    collapsed = _balancer(-1.0)
    collapsed.verification, collapsed.fingerprint = good.verification, good.fingerprint
    report = verify(str(collapsed.save(tmp_path / "collapsed.rlp")), episodes=10)
    assert _status(report)["returns"] == "FAIL"
    assert "differ" in next(c for c in report.checks if c.name == "returns").detail


@pytest.mark.parametrize(
    ("here", "reference", "expected"),
    [
        ([100.0] * 10, [100.0] * 10, "PASS"),
        ([-150.0, -160.0, -155.0, -149.0, -151.0], [-152.0, -158.0, -150.0, -161.0, -149.0], "PASS"),
        ([-900.0, -950.0, -1000.0, -920.0, -980.0], [-150.0, -160.0, -155.0, -149.0, -151.0], "FAIL"),
        ([-900.0, -950.0], [-150.0, -160.0, -155.0], "WARN"),
        ([500.0] * 10, (500.0, 0.0, 10), "PASS"),
        ([20.0] * 10, (500.0, 0.0, 10), "FAIL"),
    ],
    ids=["identical", "close", "collapsed", "too-few", "published-same", "published-collapsed"],
)
def test_returns_verdict(here, reference, expected):
    assert returns_verdict(here, reference).status == expected


def test_dependency_drift_warns_with_the_reason(pendulum, tmp_path):
    bundle = Bundle.load(pendulum)
    bundle.provenance["gymnasium"] = "0.29.1"
    bundle.provenance["torch"] = "1.13.0"
    drifted = bundle.save(tmp_path / "drifted.rlp")
    check = next(c for c in verify(str(drifted), episodes=2).checks if c.name == "dependencies")
    assert check.status == "WARN"
    assert "gymnasium 0.29.1" in check.measured and "physics" in check.measured
    assert "torch 1.13.0" in check.measured and "not needed" in check.measured


def test_cli_verify_exit_codes_and_json(pendulum, capsys):
    assert main(["verify", str(pendulum), "--episodes", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and {c["name"] for c in data["checks"]} >= {"integrity", "parity", "dynamics"}
    assert main(["verify", str(pendulum), "--env-kwargs", '{"g": 9.0}', "--episodes", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "dynamics" in out


def test_cli_fingerprint_file_is_replayed_by_verify(pendulum, tmp_path, capsys):
    target = tmp_path / "env.json"
    assert main(["fingerprint", "--env", "Pendulum-v1", "-o", str(target), "--env-kwargs", '{"g": 9.0}']) == 0
    capsys.readouterr()
    assert main(["verify", str(pendulum), "--episodes", "3", "--fingerprint", str(target), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    dynamics = [(c["name"], c["status"]) for c in data["checks"] if c["name"].startswith("dynamics")]
    assert dynamics == [("dynamics", "PASS"), ("dynamics (file)", "FAIL")]  # the bundle's own, the file's (g=9 vs 10)


def test_verify_of_an_imported_zoo_run(tmp_path, zoo_sample):
    zoo = zoo_sample / "ppo" / "CartPole-v1_1"
    path = rlport.import_zoo(zoo, probes=32).save(tmp_path / "zoo.rlp")
    report = verify(str(path), episodes=5)
    assert not report.failed, _status(report)
    assert _status(report)["returns"] == "PASS"
    _ = np
