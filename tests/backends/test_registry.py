"""The backend registry: every way to choose a backend or an export format reads one table.

A new backend is one module plus one registry row (shown with a fake one); an op a backend lacks
is the same :class:`UnsupportedError` in every backend, naming the op and the backend.
"""

from __future__ import annotations

import argparse
import sys
import types

import numpy as np
import pytest

import rlport
from rlport import deploy
from rlport.backends import registry
from rlport.backends.numpy import NumpyPolicy
from rlport.cli.commands import cmd_export
from rlport.cli.main import _parser
from rlport.errors import UnsupportedError
from rlport.graph.schema import OPS

SB3 = pytest.importorskip("stable_baselines3")


@pytest.fixture(scope="module")
def bundle() -> rlport.Bundle:
    """A small CartPole PPO (linear, tanh, categorical ops)."""
    import torch

    torch.manual_seed(0)
    model = SB3.PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    return rlport.from_sb3(model, probes=8)


def _with_backend(monkeypatch, entry: registry.Backend) -> None:
    monkeypatch.setitem(registry.BACKENDS, entry.name, entry)


# ---- one table ------------------------------------------------------------------------------------


def test_every_name_comes_from_the_registry():
    assert rlport.BACKENDS == registry.backend_names() == ("numpy", "torch", "onnx", "c")
    assert registry.export_format_names() == ("onnx", "sb3", "zoo", "c")
    assert deploy.BACKENDS == registry.packable_backends() == ("numpy",)
    commands = {
        name: parser for action in _parser()._subparsers._group_actions for name, parser in action.choices.items()
    }
    choices = {a.dest: a.choices for a in commands["run"]._actions} | {
        a.dest: a.choices for a in commands["export"]._actions
    }
    assert tuple(choices["backend"]) == registry.backend_names()
    assert tuple(choices["format"]) == registry.export_format_names()


def test_every_entry_names_code_that_exists():
    for entry in registry.BACKENDS.values():
        assert callable(registry.load_object(entry.loader)), entry.name
        assert entry.export_format is None or entry.export_format in registry.EXPORT_FORMATS
    for fmt in registry.EXPORT_FORMATS.values():
        assert callable(registry.load_object(fmt.writer)), fmt.name


@pytest.mark.parametrize("name", registry.backend_names())
def test_every_backend_runs_every_op_of_the_schema(name):
    assert set(OPS) - registry.supported_ops(registry.backend(name)) == set()


def test_an_op_missing_from_a_table_is_seen_by_the_coverage_check(monkeypatch):
    from rlport.graph import reference as numpy_ops

    monkeypatch.delitem(numpy_ops.IMPLEMENTATIONS, "mish")
    assert set(OPS) - registry.supported_ops(registry.backend("numpy")) == {"mish"}


def test_an_unknown_backend_lists_the_registered_ones(bundle, monkeypatch):
    with pytest.raises(UnsupportedError, match=r"backend 'tflite' is not available; supported: numpy, torch, onnx, c$"):
        rlport.load(bundle, backend="tflite")
    _with_backend(monkeypatch, registry.Backend("tvm", "m:TVM", None, "TVM", ops="m:OPS"))
    with pytest.raises(UnsupportedError, match="supported: numpy, torch, onnx, c, tvm$"):
        rlport.load(bundle, backend="tflite")


def test_an_unknown_export_format_lists_the_registered_ones(tmp_path):
    args = argparse.Namespace(format="tflite", bundle="unread.rlp", output=str(tmp_path / "x"), opset=17)
    with pytest.raises(UnsupportedError, match="export format 'tflite' is not available; supported: onnx, sb3, zoo"):
        cmd_export(args)


def test_a_device_for_a_cpu_backend_is_refused_before_the_file_is_read(tmp_path):
    with pytest.raises(UnsupportedError, match="device='cuda' applies to the torch backend; the onnx backend runs"):
        rlport.load(tmp_path / "never-read.rlp", backend="onnx", device="cuda")


# ---- a new backend: one module plus one row ----------------------------------------------------------


class _FakePolicy(NumpyPolicy):
    """A stand-in for a new backend's policy class: the numpy runtime, recording the seeds it was made with."""

    backend = "fake"
    made: list[int | None] = []

    def __init__(self, bundle, seed=None):
        super().__init__(bundle, seed=seed)
        _FakePolicy.made.append(seed)


def _fake_backend(monkeypatch, ops) -> None:
    """The new backend's module (its policy class and op table) and its one registry row."""
    module = types.ModuleType("rlport_fake_backend")
    module.FakePolicy, module.OPS = _FakePolicy, dict.fromkeys(ops)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    _FakePolicy.made.clear()
    row = registry.Backend("fake", "rlport_fake_backend:FakePolicy", None, "a test", ops="rlport_fake_backend:OPS")
    _with_backend(monkeypatch, row)


def test_a_registered_backend_loads_a_bundle(bundle, monkeypatch):
    _fake_backend(monkeypatch, OPS)
    policy = rlport.load(bundle, backend="fake", seed=3)
    assert isinstance(policy, _FakePolicy) and _FakePolicy.made == [3]
    action, _ = policy.predict(bundle.probes["obs"], deterministic=True)
    np.testing.assert_array_equal(action, bundle.probes["action"])


def test_a_registered_backend_that_lacks_an_op_is_refused_by_name(bundle, monkeypatch):
    _fake_backend(monkeypatch, [op for op in OPS if op != "tanh"])
    with pytest.raises(UnsupportedError, match="op 'tanh' is not implemented by the fake backend; use backend='numpy'"):
        rlport.load(bundle, backend="fake")
    assert _FakePolicy.made == []  # refused before the backend was built


def test_a_backend_needing_a_missing_package_names_its_extra(bundle, monkeypatch):
    _with_backend(monkeypatch, registry.Backend("c", "m:C", "cc", "C", ops="m:OPS", needs=("rlport_not_installed",)))
    with pytest.raises(rlport.MissingDependencyError, match=r'the c backend needs .*pip install "rlport\[cc\]"'):
        rlport.load(bundle, backend="c")


# ---- one error for an op a backend lacks ---------------------------------------------------------


@pytest.mark.parametrize("name", registry.backend_names())
def test_an_op_a_backend_lacks_is_the_same_error_in_every_backend(bundle, monkeypatch, name):
    table = registry.load_object(registry.backend(name).ops)
    monkeypatch.delitem(table, "linear")
    others = [other for other in registry.backend_names() if other != name]
    with pytest.raises(UnsupportedError, match=f"op 'linear' is not implemented by the {name} backend; "
                                               f"use backend='{others[0]}' instead"):  # fmt: skip
        rlport.load(bundle, backend=name)


def test_an_op_no_backend_has_says_so(bundle, monkeypatch):
    for name in registry.backend_names():
        monkeypatch.delitem(registry.load_object(registry.backend(name).ops), "linear")
    with pytest.raises(UnsupportedError, match="not implemented by the numpy backend; no registered backend runs"):
        rlport.load(bundle)
