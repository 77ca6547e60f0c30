"""rlport.distillation: students of small in-process teachers (CartPole, Pendulum), their reports, and bad input.

The teachers are built here with the graph builder: wide random-feature MLPs fitted by least
squares to simple controllers (so they act well and need no training), in the layout an SB3
import has (cast, network, action op, post-processing).
"""

from __future__ import annotations

import json
import warnings
from contextlib import redirect_stdout
from io import StringIO

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlport
from rlport.assemble import assemble
from rlport.bundle.manifest import EnvSpec
from rlport.distillation import distill
from rlport.distillation.api import teacher_digest
from rlport.distillation.evaluate import agreement, paired_difference, t_quantile
from rlport.distillation.student import fold_standardisation, forward, loss_of, make_student
from rlport.distillation.teacher import split_teacher
from rlport.errors import EnvError, RlportWarning, UnsupportedError
from rlport.graph.builder import GraphBuilder
from rlport.graph.graph import Graph, GraphInput, Node
from rlport.readers.gym_spaces import spec_from_space

CARTPOLE_GAINS = np.array([0.1, 0.5, 2.0, 1.0])  # action 1 when gains . obs > 0: 500 steps on every seed tried


def _features(rng: np.random.Generator, states: np.ndarray, width: int, scale: np.ndarray):
    w1 = rng.normal(0, 1, (width, states.shape[1])) / scale
    b1 = rng.normal(0, 0.5, width)
    return w1.astype(np.float32), b1.astype(np.float32), np.tanh(states @ w1.T + b1)


def _teacher(env_id: str, head: str, width: int = 256, seed: int = 0) -> rlport.Bundle:
    """A wide teacher fitted to a controller: ``categorical`` (CartPole), or ``deterministic`` (Pendulum)."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    if env_id == "CartPole-v1":
        scale = np.array([2.4, 2.0, 0.2, 2.0])
        states = rng.uniform(-1, 1, (4000, 4)) * scale
        z = 5.0 * states @ CARTPOLE_GAINS
        target = np.stack([-z, z], axis=1)
    else:
        scale = np.array([1.0, 1.0, 8.0])
        angle = rng.uniform(-np.pi, np.pi, 4000)
        states = np.stack([np.cos(angle), np.sin(angle), rng.uniform(-8, 8, 4000)], axis=1)
        target = (-2.0 * states[:, 1] - 0.3 * states[:, 2])[:, None]  # pre-tanh, in the squashed space
    w1, b1, hidden = _features(rng, states, width, scale)
    design = np.concatenate([hidden, np.ones((len(hidden), 1))], axis=1)
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    w2, b2 = solution[:-1].T.astype(np.float32), solution[-1].astype(np.float32)
    b = GraphBuilder()
    obs = b.input("obs", "observation")
    b.stage = "preprocess"
    x = b.add("cast", [obs], attrs={"dtype": "float32"})
    b.stage = "policy"
    h = b.add("linear", [x], params={"weight": b.tensor("net.0.weight", w1), "bias": b.tensor("net.0.bias", b1)})
    h = b.add("tanh", [h])
    out = b.add("linear", [h], params={"weight": b.tensor("head.weight", w2), "bias": b.tensor("head.bias", b2)})
    b.stage = "postprocess"
    if head == "categorical":
        b.stage = "policy"
        act = b.add("categorical", [out])
        b.stage = "postprocess"
        action = b.add("identity", [act], name="action")
    else:
        b.stage = "policy"
        squashed = b.add("tanh", [out])
        b.stage = "postprocess"
        low = b.tensor("space.action.low", env.action_space.low)
        high = b.tensor("space.action.high", env.action_space.high)
        action = b.add("rescale_to_bounds", [squashed], params={"low": low, "high": high}, name="action")
    return assemble(
        b.build(action), b.tensors, spec_from_space(env.observation_space), spec_from_space(env.action_space),
        EnvSpec(env_id), {}, {"algorithm": "handmade"}, probes=16,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cartpole() -> rlport.Bundle:
    return _teacher("CartPole-v1", "categorical")


@pytest.fixture(scope="module")
def pendulum() -> rlport.Bundle:
    return _teacher("Pendulum-v1", "deterministic")


# ---- distillation end to end -----------------------------------------------------------------


def test_cartpole_student_agrees_keeps_its_return_and_its_teachers_parts(cartpole, tmp_path):
    student, report = distill(cartpole, hidden=(32, 32), steps=6000, episodes=5, seed=1)
    assert report["kind"] == "categorical"
    assert report["agreement"]["share"] >= 0.95, report["agreement"]
    assert report["agreement"]["states"] >= 300
    assert report["teacher"]["mean_return"] == 500.0  # the controller the teacher fits balances on every seed
    assert report["student"]["mean_return"] >= 0.9 * report["teacher"]["mean_return"], report["student"]["returns"]
    assert report["student"]["bytes"] < report["teacher"]["bytes"]
    assert report["difference"]["episodes"] == 5
    # the student keeps the teacher's spaces, pre- and post-processing and env; the network is its own
    assert student.observation_space == cartpole.observation_space and student.action_space == cartpole.action_space
    assert student.env == cartpole.env
    assert [n.op for n in student.graph.preprocess] == ["cast"]
    assert [n.op for n in student.graph.postprocess] == ["identity"]
    assert [n.op for n in student.graph.policy] == ["flatten", "linear", "tanh", "linear", "tanh", "linear",
                                                    "categorical"]  # fmt: skip
    prov = student.provenance
    assert prov["distilled_from"]["manifest_sha256"] == teacher_digest(cartpole) == report["teacher_digest"]
    assert prov["distillation"]["settings"]["hidden"] == [32, 32]
    assert prov["distillation"]["results"]["agreement"] == report["agreement"]["share"]
    path = student.save(tmp_path / "student.rlp")
    loaded = rlport.Bundle.load(path)
    assert loaded.probe_info is not None and loaded.probe_info.count > 0  # checked against the torch student
    held = np.random.default_rng(0).uniform(-0.1, 0.1, (50, 4)).astype(np.float32)
    teacher_acts = rlport.load(cartpole).predict(held, deterministic=True)[0]
    assert np.mean(rlport.load(loaded).predict(held, deterministic=True)[0] == teacher_acts) >= 0.9


def test_pendulum_deterministic_student_learns_the_squashed_action(pendulum):
    split = split_teacher(pendulum)
    assert (split.kind, split.squash) == ("deterministic", True)
    student, report = distill(pendulum, hidden=(32, 32), steps=6000, episodes=4, seed=0)
    assert report["agreement"]["share"] >= 0.9, report["agreement"]
    assert report["agreement"]["mean_error"] < 0.02
    teacher_return = report["teacher"]["mean_return"]
    assert abs(report["difference"]["mean"]) <= 0.05 * abs(teacher_return), report["difference"]
    assert [n.op for n in student.graph.postprocess] == ["rescale_to_bounds"]
    assert student.graph.policy[-1].op == "tanh"  # the teacher's squash is kept after the student's network


def test_student_at_least_as_large_as_its_teacher_warns():
    small = _teacher("CartPole-v1", "categorical", width=8)
    with pytest.warns(RlportWarning, match="at least as many"):
        distill(small, hidden=(64, 64), steps=400, episodes=1)


# ---- the parts --------------------------------------------------------------------------------


def _graph(policy: list[Node], inputs: tuple[GraphInput, ...] | None = None) -> rlport.Bundle:
    inputs = inputs or (GraphInput("obs", "observation"),)
    bundle = _teacher("Pendulum-v1", "deterministic", width=4)
    pre = (Node("cast", ("obs",), ("x",), attrs={"dtype": "float32"}),)
    post = (Node("identity", (policy[-1].outputs[0],), ("action",)),)
    bundle.graph = Graph(tuple(inputs), "action", pre, tuple(policy), post)
    return bundle


def _lin(x: str, y: str) -> Node:
    return Node("linear", (x,), (y,), {"weight": "head.weight", "bias": "head.bias"})


@pytest.mark.parametrize(
    ("policy", "kind"),
    [
        ([_lin("x", "q"), Node("greedy", ("q",), ("a",), attrs={"n": 1})], "q_values"),
        ([_lin("x", "m"), Node("gaussian", ("m",), ("a",), {"log_std": "net.0.bias"})], "gaussian_fixed"),
        ([_lin("x", "m"), _lin("x", "s"), Node("gaussian", ("m", "s"), ("a",))], "gaussian"),
        (
            [
                _lin("x", "m"),
                Node("tanh", ("x",), ("l",)),
                Node("gsde", ("m", "l"), ("a",), {"log_std": "net.0.weight"}),
            ],
            "gsde",
        ),  # fmt: skip
        ([_lin("x", "m"), Node("clip", ("m",), ("a",), attrs={"min": -1.0, "max": 1.0})], "deterministic"),
    ],
    ids=["greedy", "gaussian-fixed-std", "gaussian-state-std", "gsde", "deterministic-unsquashed"],
)
def test_split_finds_the_head_of_every_kind(policy, kind):
    split = split_teacher(_graph(policy))
    assert split.kind == kind
    assert split.inputs == ("x",)


def test_recurrent_teacher_is_refused_before_anything_runs():
    state = GraphInput("h", "state", shape=(1, 4), batch_axis=1, output="h_next")
    bundle = _graph([_lin("x", "a"), Node("identity", ("h",), ("h_next",))], (GraphInput("obs", "observation"), state))
    with pytest.raises(UnsupportedError, match="recurrent"):
        distill(bundle, steps=10)


def test_post_processing_that_reads_inside_the_network_is_refused():
    gaussian = Node("gaussian", ("m",), ("g",), {"log_std": "net.0.bias"})
    concat = Node("concat", ("g", "t"), ("a",))
    policy = [_lin("x", "h"), Node("tanh", ("h",), ("t",)), _lin("t", "m"), gaussian, concat]
    with pytest.raises(UnsupportedError, match="reads 't' from inside the network"):
        split_teacher(_graph(policy))


def test_a_teacher_without_an_env_or_with_one_that_cannot_be_made_gets_a_clear_error(pendulum):
    import dataclasses

    bundle = dataclasses.replace(pendulum, env=EnvSpec())
    with pytest.raises(EnvError, match="records no env; .* --env ID"):
        distill(bundle, steps=10)
    bundle = dataclasses.replace(pendulum, env=EnvSpec("NoSuchEnvAnywhere-v0"))
    with pytest.raises(EnvError, match=r"'NoSuchEnvAnywhere-v0'.*pip install .*or pass --env ID"):
        distill(bundle, steps=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps must be"),
        ({"activation": "gelu"}, "activation 'gelu'"),
        ({"hidden": (64, 0)}, "hidden must be"),
        ({"device": "nonsense"}, "device 'nonsense'"),
    ],  # fmt: skip
    ids=["steps", "activation", "hidden", "device"],
)
def test_bad_settings_are_refused(pendulum, kwargs, match):
    with pytest.raises(UnsupportedError, match=match):
        distill(pendulum, **kwargs)


def test_int8_uses_compress_or_says_it_is_not_there_yet(pendulum):
    import importlib.util

    if importlib.util.find_spec("rlport.compression") is None:
        with pytest.raises(UnsupportedError, match="rlport.compress, which this rlport does not have yet"):
            distill(pendulum, steps=10, int8=True)
    else:
        student, report = distill(pendulum, hidden=(16,), steps=400, episodes=1, int8=True)
        assert {n for n in student.encodings.tensors} >= {"student.0.weight", "student.head.weight"}
        floats = sum(student.tensors[n].nbytes for n in ("student.0.weight", "student.head.weight"))
        assert report["student"]["bytes"] < floats  # reported as stored (int8), not as float32


def test_folding_the_standardisation_keeps_the_function():
    torch.manual_seed(0)
    for hidden in ((8,), (8, 8)):
        module = make_student(3, 2, hidden, "tanh", "gaussian")
        module.in_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        module.in_std.copy_(torch.tensor([0.5, 3.0, 2.0]))
        x = torch.randn(16, 3)
        before = [v.detach().clone() for v in forward(module, x)]
        fold_standardisation(module)
        after = forward(module, x)
        assert float(module.in_std.sum()) == 3.0  # the standardisation is gone from the module ...
        for b, a in zip(before, after, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)  # ... and in its first layer


@pytest.mark.parametrize("kind", ["categorical", "q_values", "bernoulli", "gaussian_fixed", "gaussian", "gsde"])
def test_each_loss_is_smallest_at_the_teacher(kind):
    module = make_student(3, 4, (4,), "tanh", kind)
    target = torch.randn(32, 4)
    log_std = torch.randn(32, 4) * 0.3
    labels = {"target": target, "log_std": log_std}
    exact = loss_of(module, target, log_std, labels, False, [])
    off = loss_of(module, target + 0.5 * torch.randn(32, 4), log_std + 0.3, labels, False, [])
    if kind in ("categorical", "gaussian_fixed", "gaussian", "gsde"):
        assert abs(float(exact)) < 1e-5  # a KL divergence from a distribution to itself
    assert float(off) > float(exact) + 1e-3


def test_confidence_interval_and_agreement():
    assert t_quantile(1) == 12.706 and abs(t_quantile(100) - 1.98397) < 1e-3 and abs(t_quantile(31) - 2.0395) < 1e-3
    d = paired_difference([10.0, 12.0, 14.0], [11.0, 12.0, 13.0])  # differences 1, 0, -1: sd 1
    assert d["mean"] == 0.0 and abs(d["high"] - 4.303 / np.sqrt(3)) < 1e-9 and d["low"] == -d["high"]
    assert paired_difference([1.0], [2.0])["low"] is None
    box = spec_from_space(gym.spaces.Box(-2.0, 2.0, (1,), np.float32))
    share = agreement(np.array([[0.0], [1.0], [2.0]]), np.array([[0.1], [1.3], [2.0]]), box)["share"]
    assert share == pytest.approx(2 / 3)  # 0.1 of a range of 4 agrees, 0.3 does not
    discrete = spec_from_space(gym.spaces.Discrete(2))
    assert agreement(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), discrete)["share"] == 0.75


# ---- the command line --------------------------------------------------------------------------


def test_cli_distills_end_to_end_with_json(cartpole, tmp_path):
    from rlport.cli.main import main

    teacher_path = cartpole.save(tmp_path / "teacher.rlp")
    out = tmp_path / "student.rlp"
    buffer = StringIO()
    with redirect_stdout(buffer), warnings.catch_warnings():
        code = main(["distill", str(teacher_path), "-o", str(out), "--hidden", "16,16", "--steps", "3000",
                     "--episodes", "2", "--activation", "relu", "--json"])  # fmt: skip
    assert code == 0, buffer.getvalue()
    report = json.loads(buffer.getvalue())
    assert report["output"] == str(out) and report["size_bytes"] == out.stat().st_size
    assert report["settings"]["hidden"] == [16, 16] and report["settings"]["activation"] == "relu"
    assert set(report) >= {"teacher", "student", "agreement", "difference", "seconds", "teacher_digest"}
    student = rlport.Bundle.load(out)
    assert student.provenance["distilled_from"]["file"] == "teacher.rlp"
    assert student.provenance["distilled_from"]["manifest_sha256"] == teacher_digest(rlport.Bundle.load(teacher_path))
    assert "relu" in [n.op for n in student.graph.policy]


def test_cli_refuses_bad_input_in_one_line(tmp_path, capsys):
    from rlport.cli.main import main

    assert main(["distill", "t.rlp", "-o", str(tmp_path / "s.rlp"), "--hidden", "64,0"]) == 2
    assert "--hidden" in capsys.readouterr().err
    assert main(["distill", str(tmp_path / "missing.rlp"), "-o", str(tmp_path / "s.rlp"), "--json"]) == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["error"]["exit_code"] == 2 and "Traceback" not in answer["error"]["message"]
    assert not (tmp_path / "s.rlp").exists()


def test_ctrl_c_leaves_no_partial_output(cartpole, tmp_path, monkeypatch, capsys):
    """Ctrl-C in the middle of the data loop (raised by the progress bar's 20th update): exit 130, nothing written."""
    from rlport.cli import progress
    from rlport.cli.main import main

    teacher_path = cartpole.save(tmp_path / "teacher.rlp")
    updates = []

    def update(self, n: int = 1, note: str = "") -> None:
        updates.append(n)
        if len(updates) == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.Progress, "update", update)
    code = main(["distill", str(teacher_path), "-o", str(tmp_path / "student.rlp"), "--steps", "100000"])
    assert code == 130 and len(updates) == 20
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.rlp"]  # no student, no temporary file
