"""The ``lstm`` op's layer-normalised variant against SB2's own cell, rebuilt here from its TensorFlow source.

SB2's ``stable_baselines/common/tf_layers.py`` (``lstm(..., layer_norm=True)`` and ``_ln``) is
written out below in numpy, term for term and in SB2's own layout: kernels ``wx`` (in, 4H) and
``wh`` (H, 4H), one bias ``b``, layer-norm gains and biases ``gx bx gh bh`` (4H) and ``gc bc`` (H),
gates in SB2's order i, f, o, u, the state as ``concat([c, h], axis=1)``, ``_ln``'s epsilon 1e-5
over axis 1 with ``tf.nn.moments``'s population variance. That code never touches the graph; only
:func:`to_graph_tensors` maps SB2's layout onto the op's (the mapping an SB2 importer makes). Each
backend then runs a bundle holding the op, step by step with episode starts, and must agree.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.bundle import Bundle
from rlport.bundle.container import write_container
from rlport.bundle.manifest import canonical_json
from rlport.bundle.spaces import BoxSpec
from rlport.errors import GraphError
from rlport.graph.graph import Graph, GraphInput, Node

IN, HIDDEN = 3, 5
STEPS = 12
BATCH = 2
STARTS = np.zeros((STEPS, BATCH), dtype=np.float32)
STARTS[[0, 5], 0] = 1.0  # row 0 starts again mid-stream; row 1 runs on (its first start is the zero state)
STARTS[[0, 9], 1] = 1.0


# ---- SB2, from stable_baselines/common/tf_layers.py ----------------------------------------


def sb2_sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def sb2_ln(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, epsilon: float = 1e-5) -> np.ndarray:
    """``_ln``: ``tf.nn.moments`` over axes [1] (population variance), then gain and bias."""
    mean = x.mean(axis=1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gain + bias


def sb2_lstm(xs, masks, cell_state_hidden, p, layer_norm=True):
    """``lstm(input_tensor, mask_tensor, cell_state_hidden, ...)``: a list of steps in, a list of hiddens out."""
    cell_state, hidden = np.split(cell_state_hidden, 2, axis=1)
    outputs = []
    for _input, mask in zip(xs, masks, strict=True):
        cell_state = cell_state * (1 - mask)
        hidden = hidden * (1 - mask)
        if layer_norm:
            gates = sb2_ln(_input @ p["wx"], p["gx"], p["bx"]) + sb2_ln(hidden @ p["wh"], p["gh"], p["bh"]) + p["b"]
        else:
            gates = _input @ p["wx"] + hidden @ p["wh"] + p["b"]
        in_gate, forget_gate, out_gate, cell_candidate = np.split(gates, 4, axis=1)
        in_gate, forget_gate, out_gate = sb2_sigmoid(in_gate), sb2_sigmoid(forget_gate), sb2_sigmoid(out_gate)
        cell_candidate = np.tanh(cell_candidate)
        cell_state = forget_gate * cell_state + in_gate * cell_candidate
        if layer_norm:
            hidden = out_gate * np.tanh(sb2_ln(cell_state, p["gc"], p["bc"]))
        else:
            hidden = out_gate * np.tanh(cell_state)
        outputs.append(hidden)
    return outputs, np.concatenate([cell_state, hidden], axis=1)


def sb2_params(rng: np.random.Generator, n_in: int, hidden: int) -> dict[str, np.ndarray]:
    """Random SB2 variables (gains near their initial 1, biases near 0, but all distinct)."""

    def rand(*shape, loc=0.0, scale=0.5):
        return (loc + scale * rng.standard_normal(shape)).astype(np.float32)

    four = 4 * hidden
    return {
        "wx": rand(n_in, four), "wh": rand(hidden, four), "b": rand(four),
        "gx": rand(four, loc=1.0), "bx": rand(four), "gh": rand(four, loc=1.0), "bh": rand(four),
        "gc": rand(hidden, loc=1.0), "bc": rand(hidden),
    }  # fmt: skip


# ---- SB2's layout -> the op's (what an SB2 importer does) ----------------------------------


def _torch_order(hidden: int) -> np.ndarray:
    """Column indices taking SB2's gate blocks (i, f, o, u) to torch's (i, f, g=u, o)."""
    i, f, o, u = (np.arange(k * hidden, (k + 1) * hidden) for k in range(4))
    return np.concatenate([i, f, u, o])


def to_graph_tensors(p: dict[str, np.ndarray], k: int, layer_norm: bool = True) -> dict[str, np.ndarray]:
    """Layer ``k``'s tensors for the op, named by their role."""
    order = _torch_order(p["wh"].shape[0])
    tensors = {
        f"weight_ih.{k}": np.ascontiguousarray(p["wx"][:, order].T),
        f"weight_hh.{k}": np.ascontiguousarray(p["wh"][:, order].T),
        f"bias_ih.{k}": p["b"][order],
        f"bias_hh.{k}": np.zeros_like(p["b"]),
    }
    if layer_norm:
        tensors |= {
            f"ln_ih_gain.{k}": p["gx"][order], f"ln_ih_bias.{k}": p["bx"][order],
            f"ln_hh_gain.{k}": p["gh"][order], f"ln_hh_bias.{k}": p["bh"][order],
            f"ln_c_gain.{k}": p["gc"], f"ln_c_bias.{k}": p["bc"],
        }  # fmt: skip
    return tensors


def lstm_bundle(layers: int = 1, layer_norm: bool = True, seed: int = 0, **attrs) -> tuple[Bundle, list[dict]]:
    """Box(IN) -> lstm -> action: the action is the last layer's hidden (a Box in [-1, 1]).

    Returns the bundle and the SB2 variables of each layer.
    """
    rng = np.random.default_rng(seed)
    layer_params = [sb2_params(rng, IN if k == 0 else HIDDEN, HIDDEN) for k in range(layers)]
    tensors: dict[str, np.ndarray] = {}
    for k, p in enumerate(layer_params):
        tensors |= to_graph_tensors(p, k, layer_norm)
    state = {"shape": (layers, HIDDEN), "batch_axis": 1}
    node_attrs = {"layers": layers, "hidden_size": HIDDEN, **({"layer_norm": True} if layer_norm else {}), **attrs}
    graph = Graph(
        inputs=(
            GraphInput("obs", "observation"),
            GraphInput("lstm_h", "state", output="lstm_h_out", **state),
            GraphInput("lstm_c", "state", output="lstm_c_out", **state),
            GraphInput("episode_start", "episode_start"),
        ),
        policy=(
            Node(
                "lstm",
                ("obs", "lstm_h", "lstm_c", "episode_start"),
                ("action", "lstm_h_out", "lstm_c_out"),
                params={role: role for role in tensors},
                attrs=node_attrs,
            ),
        ),
        output="action",
    )
    bundle = Bundle(
        observation_space=BoxSpec.create(-3.0, 3.0, (IN,)),
        action_space=BoxSpec.create(-1.0, 1.0, (HIDDEN,)),
        graph=graph,
        tensors=tensors,
    )
    return bundle, layer_params


def observations(seed: int = 1) -> np.ndarray:
    return (2.0 * np.random.default_rng(seed).standard_normal((STEPS, BATCH, IN))).astype(np.float32)


def sb2_stream(layer_params: list[dict], obs: np.ndarray, layer_norm: bool = True):
    """SB2's outputs for a stream of steps: per step the top hidden, and the final (h, c) of every layer.

    Layers are stacked as torch stacks them (SB2's policies have one LSTM layer; the stacking is
    the op's, so it is checked as the chain of SB2 cells it is).
    """
    xs = list(obs.astype(np.float64))
    masks = [STARTS[t][:, None].astype(np.float64) for t in range(STEPS)]
    hs, cs = [], []
    for p in layer_params:
        p64 = {name: value.astype(np.float64) for name, value in p.items()}
        zero = np.zeros((BATCH, 2 * HIDDEN))
        xs, state = sb2_lstm(xs, masks, zero, p64, layer_norm)
        c, h = np.split(state, 2, axis=1)
        hs.append(h)
        cs.append(c)
    return np.stack(xs), np.stack(hs), np.stack(cs)


def run_stream(policy, obs: np.ndarray):
    """A backend's actions over the stream, carrying its state, and its final state."""
    state, actions = None, []
    for t in range(STEPS):
        action, state = policy.predict(obs[t], state=state, episode_start=STARTS[t], deterministic=True)
        actions.append(action)
    return np.stack(actions), state


def _backend(name: str, bundle: Bundle):
    if name == "numpy":
        return NumpyPolicy(bundle, seed=0)
    if name == "torch":
        pytest.importorskip("torch")
        from rlport.backends.torch.runtime import TorchPolicy

        return TorchPolicy(bundle, seed=0)
    pytest.importorskip("onnxruntime")
    from rlport.backends.onnx.runtime import OnnxPolicy

    return OnnxPolicy(bundle, seed=0)


BACKENDS = ["numpy", "torch", "onnx"]
ATOL = 2e-5  # float32 against SB2 in float64, over 12 steps


# ---- the cell against SB2 ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_each_backend_steps_as_sb2s_layer_normalised_lstm(backend, layers):
    bundle, layer_params = lstm_bundle(layers)
    obs = observations()
    expected_y, expected_h, expected_c = sb2_stream(layer_params, obs)
    actions, (h, c) = run_stream(_backend(backend, bundle), obs)
    np.testing.assert_allclose(actions, expected_y, atol=ATOL, rtol=0)
    np.testing.assert_allclose(h, expected_h, atol=ATOL, rtol=0)
    np.testing.assert_allclose(c, expected_c, atol=ATOL, rtol=0)
    assert h.dtype == c.dtype == np.float32 and actions.dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_plain_lstm_still_steps_as_sb2s_plain_cell(backend):
    bundle, layer_params = lstm_bundle(1, layer_norm=False)
    obs = observations()
    expected_y, expected_h, expected_c = sb2_stream(layer_params, obs, layer_norm=False)
    actions, (h, c) = run_stream(_backend(backend, bundle), obs)
    np.testing.assert_allclose(actions, expected_y, atol=ATOL, rtol=0)
    np.testing.assert_allclose(c, expected_c, atol=ATOL, rtol=0)


def test_the_comparison_can_fail():
    """The SB2 reference tells the variants apart: layer norm, its epsilon, the gate order, the masks."""
    bundle, layer_params = lstm_bundle(1)
    obs = observations()
    expected_y, *_ = sb2_stream(layer_params, obs)
    plain_y, *_ = sb2_stream(layer_params, obs, layer_norm=False)
    assert np.abs(plain_y - expected_y).max() > 0.05
    for wrong in (
        lstm_bundle(1, layer_norm_epsilon=1.0)[0],
        replace(bundle, tensors=to_graph_tensors({**layer_params[0], "gx": layer_params[0]["gh"]}, 0)),
    ):
        actions, _ = run_stream(NumpyPolicy(wrong), obs)
        assert np.abs(actions - expected_y).max() > 1e-3
    policy, state, differ = NumpyPolicy(bundle), None, False
    for t in range(STEPS):  # without the episode starts, row 0 differs after step 5
        action, state = policy.predict(obs[t], state=state, episode_start=np.zeros(BATCH), deterministic=True)
        differ = differ or np.abs(action - expected_y[t]).max() > 1e-3
    assert differ


def test_the_cell_state_is_carried_unnormalised():
    """``c'`` goes on as computed; only the hidden sees ``LN(c')``: with a gain of 3 it leaves [-1, 1]."""
    rng = np.random.default_rng(3)
    p = sb2_params(rng, IN, HIDDEN)
    p["b"][HIDDEN : 2 * HIDDEN] = 6.0  # forget gate near 1: c accumulates beyond 1
    p["gc"][:] = 3.0
    bundle, _ = lstm_bundle(1)
    bundle = replace(bundle, tensors=to_graph_tensors(p, 0))
    obs = observations()
    _, _, expected_c = sb2_stream([p], obs)
    _, (_, c) = run_stream(NumpyPolicy(bundle), obs)
    assert np.abs(expected_c).max() > 1.5
    np.testing.assert_allclose(c, expected_c, atol=ATOL, rtol=0)


def test_layer_norm_defaults_to_off_and_its_epsilon_to_sb2s():
    from rlport.graph.schema import op_schema

    attrs = op_schema("lstm").attrs
    assert attrs["layer_norm"] is False
    assert attrs["layer_norm_epsilon"] == 1e-5  # SB2's _ln(..., epsilon=1e-5)
    assert math.isclose(attrs["layer_norm_epsilon"], 1e-5)


# ---- malformed nodes are refused at load ---------------------------------------------------


def _write_unchecked(bundle: Bundle, path: Path) -> Path:
    """Write ``bundle`` as :meth:`Bundle.save` does, but without validating it first."""
    members = bundle._members()
    write_container(path, canonical_json(bundle.manifest(members)), members)
    return path


def _with_node(bundle: Bundle, **changes) -> Bundle:
    (node,) = bundle.graph.policy
    return replace(bundle, graph=replace(bundle.graph, policy=(replace(node, **changes),)))


def _without(bundle: Bundle, role: str) -> Bundle:
    (node,) = bundle.graph.policy
    return _with_node(bundle, params={r: t for r, t in node.params.items() if r != role})


def _longer(bundle: Bundle, tensor: str) -> Bundle:
    tensors = dict(bundle.tensors)
    tensors[tensor] = np.concatenate([tensors[tensor], np.ones(1, np.float32)])
    return replace(bundle, tensors=tensors)


def _attrs(bundle: Bundle, **attrs) -> Bundle:
    (node,) = bundle.graph.policy
    return _with_node(bundle, attrs={**node.attrs, **attrs})


MALFORMED = {
    "missing-c-gain": (lambda b: _without(b, "ln_c_gain.0"), r"missing parameter 'ln_c_gain.0'"),
    "missing-ih-bias-layer-1": (lambda b: _without(b, "ln_ih_bias.1"), r"missing parameter 'ln_ih_bias.1'"),
    "ih-gain-too-long": (lambda b: _longer(b, "ln_ih_gain.0"), r"ln_ih_gain.0 must have shape \(20,\), found \(21,\)"),
    "c-bias-too-long": (lambda b: _longer(b, "ln_c_bias.1"), r"ln_c_bias.1 must have shape \(5,\), found \(6,\)"),
    "layer-norm-yes": (lambda b: _attrs(b, layer_norm="yes"), r"attribute 'layer_norm' must be a boolean"),
    "layer-norm-1": (lambda b: _attrs(b, layer_norm=1), r"attribute 'layer_norm' must be a boolean"),
    "epsilon-zero": (lambda b: _attrs(b, layer_norm_epsilon=0.0), r"'layer_norm_epsilon' must be a finite number > 0"),
    "epsilon-negative": (lambda b: _attrs(b, layer_norm_epsilon=-1e-5), r"'layer_norm_epsilon' must be a finite"),
    "epsilon-string": (lambda b: _attrs(b, layer_norm_epsilon="1e-5"), r"'layer_norm_epsilon' must be a number"),
    "ln-params-without-layer-norm": (
        lambda b: _attrs(b, layer_norm=False),
        r"unknown parameter role\(s\) \['ln_c_bias.0', 'ln_c_bias.1', 'ln_c_gain.0'",
    ),
}


def test_a_well_formed_layer_normalised_lstm_loads(tmp_path):
    bundle, _ = lstm_bundle(2)
    loaded = Bundle.load(_write_unchecked(bundle, tmp_path / "ok.rlp"))
    (node,) = loaded.graph.policy
    assert node.attrs["layer_norm"] is True and len(node.params) == 2 * 10


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_a_malformed_layer_normalised_lstm_is_refused_at_load(tmp_path, case):
    edit, message = MALFORMED[case]
    bundle, _ = lstm_bundle(2)
    path = _write_unchecked(edit(bundle), tmp_path / f"{case}.rlp")
    with pytest.raises(GraphError, match=message):
        Bundle.load(path)
