"""Hand-made graphs that use every op of the format: the C backend computes what graph/reference.py computes.

Each graph is built from nodes and random weights (no SB3), compiled strictly with every compiler
at hand, and run by the C backend and the numpy backend on the same observations.
"""

from __future__ import annotations

import numpy as np
import pytest
from c_toolchain import needs_compiler, strict_compile

from rlport.backends.c.export import export_c
from rlport.backends.c.ops import EMITTERS
from rlport.backends.c.runtime import CPolicy
from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.bundle import Bundle
from rlport.bundle.spaces import BoxSpec, DictSpec, DiscreteSpec, MultiBinarySpec, MultiDiscreteSpec
from rlport.graph.builder import GraphBuilder
from rlport.graph.schema import OPS

pytestmark = needs_compiler

ACTIVATIONS = [
    ("relu", {}), ("relu6", {}), ("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 0.7}),
    ("celu", {"alpha": 1.5}), ("selu", {}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}),
    ("mish", {}), ("sigmoid", {}), ("logsigmoid", {}), ("hardsigmoid", {}), ("hardswish", {}),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}), ("tanh", {}), ("tanhshrink", {}), ("softplus", {}),
    ("softplus", {"beta": 2.0, "threshold": 5.0}), ("softsign", {}), ("softmax", {"axis": -1}),
    ("softmax", {"axis": 1}), ("log_softmax", {"axis": -1}), ("hardshrink", {"lambd": 0.3}),
    ("softshrink", {"lambd": 0.3}), ("threshold", {"threshold": 0.1, "value": -3.0}), ("rrelu", {}),
    ("identity", {}),
]  # fmt: skip
BIG = 1e4


def _rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _linear(b: GraphBuilder, rng, x: str, n_in: int, n_out: int, scale=1.0) -> str:
    w = b.tensor(b.fresh("w"), _rand(rng, n_out, n_in, scale=scale))
    bias = b.tensor(b.fresh("b"), _rand(rng, n_out))
    return b.add("linear", [x], {"weight": w, "bias": bias})


def _box_out(b: GraphBuilder, x: str, n: int) -> tuple[str, BoxSpec]:
    """A clip to wide bounds: a continuous action whose values are the graph's, checked within 1e-5."""
    low = b.tensor("space.low", np.full(n, -BIG, np.float32))
    high = b.tensor("space.high", np.full(n, BIG, np.float32))
    return b.add("clip_to_bounds", [x], {"low": low, "high": high}), BoxSpec.create(-BIG, BIG, (n,))


def _bundle(b: GraphBuilder, output: str, observation_space, action_space) -> Bundle:
    return Bundle(observation_space=observation_space, action_space=action_space, graph=b.build(output),
                  tensors=b.tensors)  # fmt: skip


def _compare(bundle: Bundle, obs, tmp_path, rtol=1e-5, **kwargs) -> CPolicy:
    strict_compile(export_c(bundle, tmp_path / "policy"))
    policy = CPolicy(bundle)
    ours, _ = policy.predict(obs, deterministic=True, **kwargs)
    theirs, _ = NumpyPolicy(bundle).predict(obs, deterministic=True, **kwargs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    if theirs.dtype.kind == "f":
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-5)
    else:
        np.testing.assert_array_equal(ours, theirs)
    return policy


def test_every_op_of_the_schema_has_an_emitter():
    assert set(OPS) == set(EMITTERS)


def test_every_activation_as_numpy_computes_it(tmp_path):
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    obs = b.input("obs", "observation")
    h = _linear(b, rng, obs, 5, 12, scale=3.0)
    grid = b.add("reshape", [h], attrs={"shape": [3, 4]})
    outs = [b.add("flatten", [b.add(op, [grid], attrs=attrs)]) for op, attrs in ACTIVATIONS]
    one = b.tensor("prelu.one", np.float32([0.25]))
    channels = b.tensor("prelu.channels", np.float32([0.1, -0.5, 2.0]))
    outs += [b.add("flatten", [b.add("prelu", [grid], {"weight": w})]) for w in (one, channels)]
    action, space = _box_out(b, b.add("concat", outs), 12 * len(outs))
    bundle = _bundle(b, action, BoxSpec.create(-30.0, 30.0, (5,)), space)
    obs = np.concatenate([rng.standard_normal((60, 5)) * 4, rng.standard_normal((4, 5)) * 30]).astype(np.float32)
    _compare(bundle, obs, tmp_path)


def test_network_ops_conv_norms_mean_clip(tmp_path):
    rng = np.random.default_rng(1)
    b = GraphBuilder()
    obs = b.input("obs", "observation")
    x = b.add("divide", [obs], attrs={"divisor": 255.0})
    x = b.add("conv2d", [x], {"weight": b.tensor("k1", _rand(rng, 4, 1, 3, 3)), "bias": b.tensor("kb1", _rand(rng, 4))},
              {"stride": [2, 1], "padding": [1, 2], "dilation": [1, 2], "groups": 2})  # fmt: skip
    bn = {role: b.tensor(f"bn.{role}", np.abs(_rand(rng, 4)) + 0.5) for role in ("mean", "var", "weight", "bias")}
    x = b.add("batch_norm", [x], bn)
    x = b.add("conv2d", [b.add("elu", [x])], {"weight": b.tensor("k2", _rand(rng, 3, 4, 2, 2))})
    ln = {"weight": b.tensor("ln.w", _rand(rng, 2, 4)), "bias": b.tensor("ln.b", _rand(rng, 2, 4))}
    x = b.add("layer_norm", [x], attrs={"axes": 2}, params=ln)  # (batch, 3, 2, 4), over the last two axes
    pooled = b.add("mean", [x], attrs={"axis": 1})  # over the channels: (batch, 2, 4)
    clipped = b.add("clip", [b.add("flatten", [pooled])], attrs={"min": -0.5, "max": 0.7})
    action, space = _box_out(b, _linear(b, rng, clipped, 2 * 4, 3), 3)
    bundle = _bundle(b, action, BoxSpec.create(0, 255, (2, 6, 5), "uint8"), space)
    image = rng.integers(0, 256, (32, 2, 6, 5), dtype=np.uint8)
    _compare(bundle, image, tmp_path)


def test_preprocessing_of_a_dict_observation(tmp_path):
    rng = np.random.default_rng(2)
    b = GraphBuilder()
    pos = b.input("obs.pos", "observation", key=("pos",))
    mode = b.input("obs.mode", "observation", key=("mode",))
    grid = b.input("obs.grid", "observation", key=("grid",))
    stats = {"mean": b.tensor("rms.mean", rng.standard_normal(3)), "var": b.tensor("rms.var", rng.random(3) + 0.1)}
    norm = b.add("normalize", [pos], stats, {"clip": 2.0})  # float64 statistics, as VecNormalize keeps them
    hot = b.add("one_hot", [mode], attrs={"n": 4})
    multi = b.add("multi_one_hot", [grid], attrs={"sizes": [2, 3]})
    features = b.add("concat", [norm, hot, b.add("cast", [multi], attrs={"dtype": "float64"})])
    logits = _linear(b, rng, b.add("cast", [features], attrs={"dtype": "float32"}), 12, 5)
    action = b.add("categorical", [logits])
    space = DictSpec((("pos", BoxSpec.create(-5.0, 5.0, (3,))), ("mode", DiscreteSpec(4)),
                      ("grid", MultiDiscreteSpec((2, 3), (2,), (0, 0)))))  # fmt: skip
    bundle = _bundle(b, action, space, DiscreteSpec(5))
    obs = {"pos": rng.standard_normal((64, 3)).astype(np.float32) * 3, "mode": rng.integers(0, 4, 64),
           "grid": np.stack([rng.integers(0, 2, 64), rng.integers(0, 3, 64)], axis=1)}  # fmt: skip
    _compare(bundle, obs, tmp_path)


def _lstm_bundle(layer_norm: bool) -> Bundle:
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    obs = b.input("obs", "observation")
    h = b.input("h", "state", shape=(2, 5), batch_axis=1, output="h_next")
    c = b.input("c", "state", shape=(2, 5), batch_axis=1, output="c_next")
    start = b.input("start", "episode_start")
    params = {}
    for k, n_in in enumerate((3, 5)):
        shapes = {"weight_ih": (20, n_in), "weight_hh": (20, 5), "bias_ih": (20,), "bias_hh": (20,)}
        if layer_norm:
            shapes |= {"ln_ih_gain": (20,), "ln_ih_bias": (20,), "ln_hh_gain": (20,), "ln_hh_bias": (20,),
                       "ln_c_gain": (5,), "ln_c_bias": (5,)}  # fmt: skip
        params |= {f"{role}.{k}": b.tensor(f"lstm.{role}.{k}", _rand(rng, *shape)) for role, shape in shapes.items()}
    out = b.add("lstm", [obs, h, c, start], params, {"layers": 2, "hidden_size": 5, "layer_norm": layer_norm},
                names=["out", "h_next", "c_next"])  # fmt: skip
    action, space = _box_out(b, _linear(b, rng, out, 5, 2), 2)
    return _bundle(b, action, BoxSpec.create(-3.0, 3.0, (3,)), space)


@pytest.mark.parametrize("layer_norm", [False, True], ids=["lstm", "lstm-layer-norm"])
def test_lstm_over_a_sequence_with_episode_starts(tmp_path, layer_norm):
    bundle = _lstm_bundle(layer_norm)
    strict_compile(export_c(bundle, tmp_path / "policy"))
    ours, theirs = CPolicy(bundle), NumpyPolicy(bundle)
    rng = np.random.default_rng(4)
    state = their_state = None
    for step in range(6):
        obs = rng.standard_normal((8, 3)).astype(np.float32)
        starts = rng.random(8) < 0.3 if step else np.ones(8, bool)
        a, state = ours.predict(obs, state=state, episode_start=starts, deterministic=True)
        t, their_state = theirs.predict(obs, state=their_state, episode_start=starts, deterministic=True)
        np.testing.assert_allclose(a, t, rtol=1e-5, atol=1e-5)
        for s, u in zip(state, their_state, strict=True):
            np.testing.assert_allclose(s, u, rtol=1e-5, atol=1e-6)


def _head_bundle(head: str) -> tuple[Bundle, np.ndarray]:
    rng = np.random.default_rng(5)
    b = GraphBuilder()
    obs = b.input("obs", "observation")
    if head == "multi_categorical":
        mask = b.input("mask", "action_mask", size=7)
        action = b.add("multi_categorical", [_linear(b, rng, obs, 4, 7), mask], attrs={"sizes": [3, 4]})
        space = MultiDiscreteSpec((3, 4), (2,), (0, 0))
    elif head == "bernoulli":
        action, space = b.add("bernoulli", [_linear(b, rng, obs, 4, 3)]), MultiBinarySpec((3,))
    elif head == "greedy":
        action, space = b.add("greedy", [_linear(b, rng, obs, 4, 6)], attrs={"n": 6, "epsilon": 0.3}), DiscreteSpec(6)
    else:  # squashed gaussian with a state-dependent log-std, rescaled to uneven bounds
        mean, log_std = _linear(b, rng, obs, 4, 2), _linear(b, rng, obs, 4, 2, scale=0.1)
        squashed = b.add("tanh", [b.add("gaussian", [mean, log_std])])
        low, high = b.tensor("low", np.float32([-2.0, 0.0])), b.tensor("high", np.float32([2.0, 1.0]))
        action = b.add("rescale_to_bounds", [squashed], {"low": low, "high": high})
        space = BoxSpec.create([-2.0, 0.0], [2.0, 1.0], (2,))
    return _bundle(b, action, BoxSpec.create(-3.0, 3.0, (4,)), space), rng.standard_normal((64, 4)).astype(np.float32)


@pytest.mark.parametrize("head", ["multi_categorical", "bernoulli", "greedy", "gaussian"])
def test_action_heads_act_deterministically_as_numpy(tmp_path, head):
    bundle, obs = _head_bundle(head)
    kwargs = {}
    if head == "multi_categorical":
        mask = np.random.default_rng(6).random((64, 7)) < 0.6
        mask[:, 0] = mask[:, 3] = True  # every slice allows an action
        kwargs["action_masks"] = mask
    _compare(bundle, obs, tmp_path, **kwargs)


def test_arithmetic_pooling_and_slices(tmp_path):
    rng = np.random.default_rng(7)
    b = GraphBuilder()
    image = b.input("obs", "observation")
    x = b.add("cast", [image], attrs={"dtype": "float32"})
    x = b.add("div", [x], {"other": b.tensor("scale", np.float32([[[50.0]], [[100.0]]]))})  # per channel
    pooled = b.add("max_pool2d", [x], attrs={"kernel": [3, 2], "stride": [2, 1], "padding": [1, 1], "dilation": [1, 2]})
    averaged = b.add("avg_pool2d", [x], attrs={"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1],
                                               "count_include_pad": False})  # fmt: skip
    counted = b.add("avg_pool2d", [x], attrs={"kernel": [2, 2], "stride": [1, 2], "padding": [1, 0]})
    flat = [b.add("flatten", [v]) for v in (pooled, averaged, counted)]
    row = b.add("concat", flat)  # 48 + 24 + 48 values
    sliced = b.add("slice", [row], attrs={"axis": 1, "start": -40, "end": -3, "step": 3})
    shifted = b.add("sub", [b.add("mul", [sliced, sliced]), b.add("exp", [sliced])])  # two inputs, same shape
    summed = b.add("add", [shifted], {"other": b.tensor("bias", rng.standard_normal(13).astype(np.float32))})
    action, space = _box_out(b, b.add("concat", [row, summed]), 120 + 13)
    bundle = _bundle(b, action, BoxSpec.create(0, 255, (2, 7, 6), "uint8"), space)
    _compare(bundle, rng.integers(0, 256, (32, 2, 7, 6), dtype=np.uint8), tmp_path)


@pytest.mark.parametrize("op", ["max_pool2d", "relu", "clip", "softmax"])
def test_a_nan_observation_gives_a_nan_action_as_numpy_does(op, tmp_path):
    """NaN propagates through max/min-like ops as in numpy, so both backends refuse the action (no silent number)."""
    from rlport.errors import ActionError

    b = GraphBuilder()
    x = b.input("obs", "observation")
    attrs = {"max_pool2d": {"kernel": [2, 2], "stride": [1, 1]}, "clip": {"min": -1.0, "max": 1.0}}.get(op, {})
    action, space = _box_out(b, b.add("flatten", [b.add(op, [x], attrs=attrs)]), 4 if op == "max_pool2d" else 9)
    bundle = _bundle(b, action, BoxSpec.create(-1.0, 1.0, (1, 3, 3)), space)
    obs = np.zeros((1, 1, 3, 3), np.float32)
    obs[0, 0, 1, 1] = np.nan
    for policy in (NumpyPolicy(bundle), CPolicy(bundle)):
        with pytest.raises(ActionError, match="NaN or infinite action"):
            policy.predict(obs, deterministic=True)
