"""int8 bundles (format 1.1) in C: int8 weights stay int8, int8 activations multiply as int8 x int8 -> int32.

A weights-only int8 bundle gives the numpy backend's actions as closely as a float one does. With
int8 activations, every ``linear``/``conv2d`` input is quantised (round half to even, as numpy and
ONNX do); a value that float rounding puts on the other side of a quantisation boundary moves one
level, so a CNN may differ on a few rows: there the C integer path must equal the C float
fake-quantised path (the same boundaries), and agree with numpy on nearly every row.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
from c_toolchain import assert_close_actions, needs_compiler, strict_compile

import rlport
from rlport.backends.c import network as c_network
from rlport.backends.c.export import export_c
from rlport.backends.c.runtime import CPolicy
from rlport.backends.numpy import NumpyPolicy
from rlport.compression import compress
from rlport.errors import ActionError
from sb3_models import ModelSpec, make_model, sample_obs

pytestmark = needs_compiler

FAMILIES = {
    "ppo-discrete": ModelSpec("PPO", action="discrete"),
    "sac": ModelSpec("SAC"),
    "dqn-discrete-obs": ModelSpec("DQN", obs="discrete", action="discrete"),
    "ppo-cnn": ModelSpec("PPO", "CnnPolicy", obs="rgb", action="box"),
    "recurrent": ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="discrete"),
}
SCHEMES = {"int8": None, "int8-activations": "int8"}


@functools.cache
def _model_and_bundle(family: str):
    model = make_model(FAMILIES[family])
    return model, rlport.from_sb3(model, probes=64, fingerprint=False, evaluate=0)


@functools.cache
def _compressed(family: str, scheme: str):
    return compress(_model_and_bundle(family)[1], weights="int8", activations=SCHEMES[scheme], calibrate=64)


def _act(policy, family: str, n: int = 256):
    model = _model_and_bundle(family)[0]
    obs = sample_obs(model.observation_space, n, seed=5)
    starts = np.zeros(n, bool) if FAMILIES[family].algo == "RecurrentPPO" else None
    return policy.predict(obs, episode_start=starts, deterministic=True)[0]


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_int8_exports_compile_keep_int8_weights_and_act_as_numpy(family, scheme, tmp_path, monkeypatch):
    bundle = _compressed(family, scheme)
    folder = export_c(bundle, tmp_path / "policy")
    strict_compile(folder)
    source = (folder / "rlport_policy.c").read_text()
    int8_arrays = len(re.findall(r"static const int8_t c\d+\[", source))
    networks = sum(node.op in ("linear", "conv2d") for node in bundle.graph.nodes())
    assert int8_arrays >= min(networks, 2)  # the network's weights are stored as int8
    assert ("_q8(" in source) == (scheme == "int8-activations") and ("_w8(" in source) == (scheme == "int8")
    ours, theirs = _act(CPolicy(bundle), family), _act(NumpyPolicy(bundle), family)
    if scheme == "int8" or family != "ppo-cnn":
        assert_close_actions(ours, theirs, bundle.action_space)
        return
    # a CNN with int8 activations: a few rows may cross a quantisation boundary (see the module's docstring);
    # the C float fake-quantised path (the exporter's fallback) shows the same, against numpy and the integer path
    monkeypatch.setattr(c_network, "INT32_SAFE_INPUTS", 0)
    floats = _act(CPolicy(bundle), family)
    for a, b in ((ours, theirs), (floats, theirs), (ours, floats)):
        rows = (
            np.abs(a - b).reshape(len(a), -1).max(axis=1)
            <= 1e-5 * (bundle.action_space.high - bundle.action_space.low).max() / 2
        )
        assert rows.mean() >= 0.97, f"{rows.mean():.1%} of rows agree"


def test_a_nan_observation_with_int8_activations_is_refused_as_numpy_refuses_it():
    bundle = _compressed("sac", "int8-activations")
    obs = np.full((2, *bundle.observation_space.shape), np.nan, np.float32)
    for policy in (NumpyPolicy(bundle), CPolicy(bundle)):
        with pytest.raises(ActionError, match="computed a NaN or infinite action"):
            policy.predict(obs, deterministic=True)


def _constant_bytes(source: str) -> int:
    sizes = {"float": 4, "double": 8, "int8_t": 1, "int": 4}
    return sum(
        sizes[t] * int(n) for t, n in re.findall(r"static const (float|double|int8_t|int) c\d+\[(\d+)\]", source)
    )


def test_int8_weights_take_under_a_third_of_the_float_constants(tmp_path):
    floats = export_c(_model_and_bundle("ppo-cnn")[1], tmp_path / "float") / "rlport_policy.c"
    int8 = export_c(_compressed("ppo-cnn", "int8"), tmp_path / "int8") / "rlport_policy.c"
    assert _constant_bytes(int8.read_text()) <= 0.3 * _constant_bytes(floats.read_text())
