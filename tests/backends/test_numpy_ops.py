"""The numpy ops against torch's own modules, and against the semantics of docs/FORMAT.md 4.1.

Each op is bound exactly as the runtime binds it (``numpy_ops.bind``: schema defaults, then the
op's load-time hook), and run on random and on extreme inputs.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from rlport.errors import ObservationError
from rlport.graph import reference as numpy_ops
from rlport.graph.graph import Node
from rlport.graph.schema import OPS

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = {"rtol": 1e-5, "atol": 1e-5}
EXTREMES = np.array([-1e4, -1e3, -100.0, -30.0, -20.5, -1.0, -1e-6, 0.0, 1e-6, 1.0, 20.5, 30.0, 100.0, 1e3, 1e4])


def bind(op: str, params: dict | None = None, attrs: dict | None = None, *, deterministic: bool = True, seed=0):
    """The op as the runtime runs it: a function of the value inputs only."""
    params = {role: np.asarray(value) for role, value in (params or {}).items()}
    resolved = Node(op, ("x",), ("y",), attrs=attrs or {}).resolved_attrs()
    ctx = SimpleNamespace(deterministic=deterministic, rng=np.random.default_rng(seed))
    return numpy_ops.bind(op, params, resolved, ctx if OPS[op].stochastic else None)


def run(op: str, *inputs, params=None, attrs=None, **ctx):
    return bind(op, params, attrs, **ctx)(*inputs)


def t(array: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(array))


def n(tensor) -> np.ndarray:
    return tensor.detach().numpy()


# ---- activations -----------------------------------------------------------------------------


class _Exp(nn.Module):
    """torch.exp as a module (torch has no nn.Exp)."""

    def forward(self, x):
        return torch.exp(x)


# (op, attrs, torch module): every activation of the format, with non-default attrs where it has any.
ACTIVATIONS = [
    ("identity", {}, nn.Identity()),
    ("relu", {}, nn.ReLU()),
    ("relu6", {}, nn.ReLU6()),
    ("leaky_relu", {}, nn.LeakyReLU()),
    ("leaky_relu", {"negative_slope": 0.2}, nn.LeakyReLU(0.2)),
    ("elu", {"alpha": 0.7}, nn.ELU(0.7)),
    ("celu", {"alpha": 1.5}, nn.CELU(1.5)),
    ("selu", {}, nn.SELU()),
    ("gelu", {}, nn.GELU()),
    ("gelu", {"approximate": "tanh"}, nn.GELU(approximate="tanh")),
    ("silu", {}, nn.SiLU()),
    ("mish", {}, nn.Mish()),
    ("sigmoid", {}, nn.Sigmoid()),
    ("logsigmoid", {}, nn.LogSigmoid()),
    ("hardsigmoid", {}, nn.Hardsigmoid()),
    ("hardswish", {}, nn.Hardswish()),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, nn.Hardtanh(-2.0, 0.5)),
    ("tanh", {}, nn.Tanh()),
    ("tanhshrink", {}, nn.Tanhshrink()),
    ("softplus", {}, nn.Softplus()),
    ("softplus", {"beta": 2.0, "threshold": 5.0}, nn.Softplus(beta=2.0, threshold=5.0)),
    ("softsign", {}, nn.Softsign()),
    ("softmax", {"axis": -1}, nn.Softmax(dim=-1)),
    ("softmax", {"axis": 1}, nn.Softmax(dim=1)),
    ("log_softmax", {"axis": -1}, nn.LogSoftmax(dim=-1)),
    ("hardshrink", {"lambd": 0.3}, nn.Hardshrink(0.3)),
    ("softshrink", {"lambd": 0.3}, nn.Softshrink(0.3)),
    ("threshold", {"threshold": 0.1, "value": -3.0}, nn.Threshold(0.1, -3.0)),
    ("rrelu", {}, nn.RReLU().eval()),
    ("rrelu", {"lower": 0.1, "upper": 0.5}, nn.RReLU(0.1, 0.5).eval()),
    ("exp", {}, _Exp()),
]
ACTIVATION_IDS = [op + "".join(f"-{k}={v}" for k, v in attrs.items()) for op, attrs, _ in ACTIVATIONS]


def test_every_activation_of_the_format_is_compared_with_torch():
    listed = {op for op, _, _ in ACTIVATIONS} | {"prelu"}
    schema_unary = {name for name, s in OPS.items() if s.inputs == (1, 1) and not s.params and not s.stochastic}
    preprocess = {"cast", "divide", "one_hot", "multi_one_hot", "flatten", "reshape", "mean", "clip"}
    preprocess |= {"max_pool2d", "avg_pool2d", "slice"}  # see tests/frameworks/torch/test_added_ops.py
    assert listed == schema_unary - preprocess | {"prelu"}


@pytest.mark.parametrize(("op", "attrs", "module"), ACTIVATIONS, ids=ACTIVATION_IDS)
def test_activation_matches_torch_on_random_inputs(op, attrs, module):
    x = (np.random.default_rng(0).standard_normal((6, 5)) * 3).astype(np.float32)
    y = run(op, x, attrs=attrs)
    expected = n(module(t(x)))
    assert y.shape == expected.shape
    assert y.dtype == np.float32, f"{op} returns {y.dtype} for float32 input"
    np.testing.assert_allclose(y, expected, **TOL)


@pytest.mark.parametrize(("op", "attrs", "module"), ACTIVATIONS, ids=ACTIVATION_IDS)
def test_activation_matches_torch_on_extreme_inputs(op, attrs, module):
    x = np.stack([EXTREMES, EXTREMES[::-1]]).astype(np.float32)
    with np.errstate(all="ignore"):
        y = run(op, x, attrs=attrs)
    expected = n(module(t(x)))
    assert np.array_equal(np.isnan(y), np.isnan(expected)), f"{op}: NaN where torch has none: {x[np.isnan(y)]}"
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("op", "attrs"),
    [(op, attrs) for op, attrs, _ in ACTIVATIONS],
    ids=ACTIVATION_IDS,
)
def test_activation_extreme_inputs_raise_no_floating_point_warning(op, attrs):
    x = np.stack([EXTREMES, EXTREMES[::-1]]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        run(op, x, attrs=attrs)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5, 5)], ids=["2d", "4d"])
@pytest.mark.parametrize("channels", [1, 3], ids=["shared", "per-channel"])
def test_prelu_matches_torch(shape, channels):
    module = nn.PReLU(channels, init=0.1)
    with torch.no_grad():
        module.weight.copy_(torch.linspace(-0.5, 0.5, channels) if channels > 1 else torch.tensor([0.3]))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y = run("prelu", x, params={"weight": n(module.weight)})
    np.testing.assert_allclose(y, n(module(t(x))), **TOL)


def test_softplus_switches_to_identity_above_the_threshold_as_torch_does():
    x = np.array([[4.9, 5.0, 5.1, 10.0, 50.0, 1e4]], np.float32)
    module = nn.Softplus(beta=1.0, threshold=5.0)
    y = run("softplus", x, attrs={"beta": 1.0, "threshold": 5.0})
    np.testing.assert_allclose(y, n(module(t(x))), **TOL)
    assert y[0, -1] == np.float32(1e4)


# ---- network ops ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_linear_matches_torch(bias):
    torch.manual_seed(0)
    module = nn.Linear(7, 5, bias=bias)
    x = np.random.default_rng(2).standard_normal((4, 7)).astype(np.float32)
    params = {"weight": n(module.weight)} | ({"bias": n(module.bias)} if bias else {})
    np.testing.assert_allclose(run("linear", x, params=params), n(module(t(x))), **TOL)


CONVS = {
    "plain": {"in_channels": 3, "out_channels": 4, "kernel_size": 3},
    "stride2-pad1": {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    "uneven": {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 2)},
    "dilation": {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "dilation": (2, 1), "padding": 2},
    "groups2": {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 2, "padding": 1},
    "depthwise": {"in_channels": 3, "out_channels": 3, "kernel_size": 3, "groups": 3},
    "no-bias": {"in_channels": 3, "out_channels": 2, "kernel_size": 1, "bias": False},
    "nature-cnn-like": {"in_channels": 4, "out_channels": 8, "kernel_size": 8, "stride": 4},
}


@pytest.mark.parametrize("config", CONVS.values(), ids=CONVS.keys())
def test_conv2d_matches_torch(config):
    torch.manual_seed(1)
    module = nn.Conv2d(**config)
    size = 20 if config["kernel_size"] == 8 else 9
    x = np.random.default_rng(3).standard_normal((2, config["in_channels"], size, size - 1)).astype(np.float32)
    params = {"weight": n(module.weight)} | ({"bias": n(module.bias)} if module.bias is not None else {})
    pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]  # noqa: E731
    attrs = {
        "stride": pair(module.stride),
        "padding": pair(module.padding),
        "dilation": pair(module.dilation),
        "groups": module.groups,
    }
    y = run("conv2d", x, params=params, attrs=attrs)
    expected = n(module(t(x)))
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, **TOL)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("rank", [2, 4], ids=["1d", "2d"])
def test_batch_norm_matches_torch_in_eval_mode(rank, affine):
    channels = 5
    module = (nn.BatchNorm1d if rank == 2 else nn.BatchNorm2d)(channels, eps=1e-3, affine=affine).eval()
    rng = np.random.default_rng(4)
    with torch.no_grad():
        module.running_mean.copy_(t(rng.standard_normal(channels).astype(np.float32)))
        module.running_var.copy_(t(rng.uniform(0.1, 3.0, channels).astype(np.float32)))
        if affine:
            module.weight.copy_(t(rng.standard_normal(channels).astype(np.float32)))
            module.bias.copy_(t(rng.standard_normal(channels).astype(np.float32)))
    shape = (3, channels) if rank == 2 else (3, channels, 4, 4)
    x = rng.standard_normal(shape).astype(np.float32)
    params = {"mean": n(module.running_mean), "var": n(module.running_var)}
    if affine:
        params |= {"weight": n(module.weight), "bias": n(module.bias)}
    y = run("batch_norm", x, params=params, attrs={"epsilon": 1e-3})
    np.testing.assert_allclose(y, n(module(t(x))), **TOL)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("normalized", [(6,), (3, 6)], ids=["last-axis", "last-two-axes"])
def test_layer_norm_matches_torch(normalized, affine):
    module = nn.LayerNorm(normalized, eps=1e-4, elementwise_affine=affine)
    rng = np.random.default_rng(5)
    if affine:
        with torch.no_grad():
            module.weight.copy_(t(rng.standard_normal(normalized).astype(np.float32)))
            module.bias.copy_(t(rng.standard_normal(normalized).astype(np.float32)))
    x = (rng.standard_normal((4, 3, 6)) * 2 + 1).astype(np.float32)
    params = {"weight": n(module.weight), "bias": n(module.bias)} if affine else {}
    y = run("layer_norm", x, params=params, attrs={"epsilon": 1e-4, "axes": len(normalized)})
    np.testing.assert_allclose(y, n(module(t(x))), **TOL)


def _lstm_params(module) -> dict[str, np.ndarray]:
    params = {}
    for k in range(module.num_layers):
        for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            params[f"{role}.{k}"] = n(getattr(module, f"{role}_l{k}"))
    return params


def test_lstm_one_step_with_two_layers_and_resets_matches_torch():
    torch.manual_seed(2)
    module = nn.LSTM(input_size=5, hidden_size=4, num_layers=2)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    h = rng.standard_normal((2, 3, 4)).astype(np.float32)
    c = rng.standard_normal((2, 3, 4)).astype(np.float32)
    start = np.array([1.0, 0.0, 1.0], np.float32)
    op = bind("lstm", _lstm_params(module), {"layers": 2, "hidden_size": 4})
    y, h_next, c_next = op(x, h, c, start)
    keep = t(1.0 - start).reshape(1, -1, 1)
    out, (h_t, c_t) = module(t(x)[None], (t(h) * keep, t(c) * keep))
    np.testing.assert_allclose(y, n(out[0]), **TOL)
    np.testing.assert_allclose(h_next, n(h_t), **TOL)
    np.testing.assert_allclose(c_next, n(c_t), **TOL)
    # A reset row acts as if its state were zero; a kept row does not.
    y_zero, _, _ = op(x, np.zeros_like(h), np.zeros_like(c), np.zeros(3, np.float32))
    np.testing.assert_allclose(y[[0, 2]], y_zero[[0, 2]], **TOL)
    assert not np.allclose(y[1], y_zero[1])


def test_lstm_carried_over_a_sequence_matches_torch():
    torch.manual_seed(3)
    module = nn.LSTM(input_size=3, hidden_size=6, num_layers=1)
    xs = np.random.default_rng(7).standard_normal((10, 2, 3)).astype(np.float32)
    op = bind("lstm", _lstm_params(module), {"layers": 1, "hidden_size": 6})
    h = c = np.zeros((1, 2, 6), np.float32)
    ys = []
    for x in xs:
        y, h, c = op(x, h, c, None)
        ys.append(y)
    out, (h_t, c_t) = module(t(xs))
    np.testing.assert_allclose(np.stack(ys), n(out), **TOL)
    np.testing.assert_allclose(h, n(h_t), **TOL)
    np.testing.assert_allclose(c, n(c_t), **TOL)


NETWORK_EXTREMES = {
    "linear": lambda x: run("linear", x, params={"weight": np.eye(x.shape[1], dtype=np.float32)}),
    "layer_norm": lambda x: run("layer_norm", x),
    "batch_norm": lambda x: run(
        "batch_norm", x, params={"mean": np.zeros(x.shape[1], np.float32), "var": np.ones(x.shape[1], np.float32)}
    ),
}


@pytest.mark.parametrize("op", NETWORK_EXTREMES, ids=list(NETWORK_EXTREMES))
def test_network_op_extreme_inputs_give_no_nan(op):
    x = np.stack([EXTREMES, np.zeros_like(EXTREMES)]).astype(np.float32)
    assert not np.isnan(NETWORK_EXTREMES[op](x)).any()


def test_lstm_extreme_inputs_give_no_nan():
    torch.manual_seed(4)
    module = nn.LSTM(input_size=EXTREMES.size, hidden_size=3)
    x = np.stack([EXTREMES, np.zeros_like(EXTREMES)]).astype(np.float32)
    h = np.full((1, 2, 3), 1e4, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        y, h_next, c_next = run(
            "lstm", x, h, -h, None, params=_lstm_params(module), attrs={"layers": 1, "hidden_size": 3}
        )
    out, (h_t, c_t) = module(t(x)[None], (t(h), t(-h)))
    assert not np.isnan(y).any()
    np.testing.assert_allclose(y, n(out[0]), rtol=1e-5, atol=1e-4)


# ---- pre-processing, post-processing and action selection (spec semantics) ----------------------


def test_normalize_computes_in_the_statistics_dtype_and_returns_float32():
    mean = np.array([1.0, -2.0], np.float64)
    var = np.array([4.0, 0.25], np.float64)
    x = np.array([[3.0, -2.5], [1e6, -1e6]], np.float32)
    y = run("normalize", x, params={"mean": mean, "var": var}, attrs={"epsilon": 1e-8, "clip": 10.0})
    expected = np.clip((x.astype(np.float64) - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)


def test_divide_casts_to_float32_first():
    x = np.array([[0, 128, 255]], np.uint8)
    y = run("divide", x, attrs={"divisor": 255.0})
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.0, 128 / 255, 1.0]], **TOL)


def test_one_hot_and_its_range_check():
    y = run("one_hot", np.array([0, 2, 1]), attrs={"n": 3})
    np.testing.assert_array_equal(y, np.eye(3, dtype=np.float32)[[0, 2, 1]])
    assert y.dtype == np.float32
    for bad in ([3], [-1]):
        with pytest.raises(ObservationError, match="outside 0..n-1"):
            run("one_hot", np.array(bad), attrs={"n": 3})


def test_multi_one_hot_concatenates_one_hots_per_column():
    y = run("multi_one_hot", np.array([[1, 0], [2, 1]]), attrs={"sizes": [3, 2]})
    np.testing.assert_array_equal(y, [[0, 1, 0, 1, 0], [0, 0, 1, 0, 1]])
    with pytest.raises(ObservationError):
        run("multi_one_hot", np.array([[0, 2]]), attrs={"sizes": [3, 2]})


def test_shape_ops():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(run("flatten", x), x.reshape(2, 12))
    np.testing.assert_array_equal(run("reshape", x, attrs={"shape": [4, 3]}), x.reshape(2, 4, 3))
    np.testing.assert_array_equal(run("mean", x, attrs={"axis": 1}), x.mean(axis=1))
    np.testing.assert_array_equal(run("concat", x, x[:, :, :1]), np.concatenate([x, x[:, :, :1]], axis=-1))
    np.testing.assert_array_equal(run("clip", x, attrs={"min": 3, "max": 7}), np.clip(x, 3, 7))
    assert run("cast", x, attrs={"dtype": "int64"}).dtype == np.int64


def test_bounds_postprocessing():
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    a = np.array([[-1.0, 1.0], [0.0, 0.5], [3.0, -3.0]], np.float32)
    bounds = {"low": low, "high": high}
    np.testing.assert_allclose(run("rescale_to_bounds", a, params=bounds), low + 0.5 * (a + 1) * (high - low))
    np.testing.assert_array_equal(run("clip_to_bounds", a, params=bounds), np.clip(a, low, high))


def test_categorical_argmax_mask_and_all_false_mask():
    logits = np.array([[0.1, 3.0, 0.2], [5.0, 0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(run("categorical", logits), [1, 0])
    mask = np.array([[True, False, True], [False, True, True]])
    np.testing.assert_array_equal(run("categorical", logits, mask), [2, 2])
    with pytest.raises(ObservationError, match="allows no action"):
        run("categorical", logits, np.array([[False] * 3, [True] * 3]))


def test_categorical_samples_follow_the_softmax():
    logits = np.log(np.array([[0.2, 0.5, 0.3]], np.float32)).repeat(20000, axis=0)
    draws = run("categorical", logits, deterministic=False, seed=1)
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / draws.size, [0.2, 0.5, 0.3], atol=0.015)


def test_multi_categorical_argmax_per_slice_with_mask():
    logits = np.array([[0.0, 2.0, 1.0, 5.0, 0.0]], np.float32)
    np.testing.assert_array_equal(run("multi_categorical", logits, attrs={"sizes": [3, 2]}), [[1, 0]])
    mask = np.array([[True, False, True, False, True]])
    np.testing.assert_array_equal(run("multi_categorical", logits, mask, attrs={"sizes": [3, 2]}), [[2, 1]])
    with pytest.raises(ObservationError):
        run("multi_categorical", logits, np.array([[True, True, True, False, False]]), attrs={"sizes": [3, 2]})


def test_bernoulli_gaussian_greedy_deterministic():
    logits = np.array([[-1.0, 0.5, 0.0]], np.float32)
    np.testing.assert_array_equal(run("bernoulli", logits), [[0.0, 1.0, 0.0]])
    mean = np.array([[0.3, -0.2]], np.float32)
    np.testing.assert_array_equal(run("gaussian", mean, params={"log_std": np.zeros(2, np.float32)}), mean)
    q = np.array([[1.0, 4.0, 2.0]], np.float32)
    np.testing.assert_array_equal(run("greedy", q, attrs={"n": 3, "epsilon": 1.0}), [1])


def test_gaussian_samples_have_the_given_std():
    mean = np.zeros((50000, 2), np.float32)
    log_std = np.log(np.array([0.5, 2.0], np.float32))
    a = run("gaussian", mean, params={"log_std": log_std}, deterministic=False, seed=2)
    np.testing.assert_allclose(a.std(axis=0), [0.5, 2.0], rtol=0.03)
    b = run("gaussian", mean, log_std[None].repeat(50000, 0), deterministic=False, seed=2)
    np.testing.assert_allclose(b.std(axis=0), [0.5, 2.0], rtol=0.03)


def test_greedy_explores_with_probability_epsilon():
    q = np.tile(np.array([[0.0, 1.0, 0.0, 0.0]], np.float32), (20000, 1))
    a = run("greedy", q, attrs={"n": 4, "epsilon": 0.4}, deterministic=False, seed=3)
    # argmax 1 with 0.6 + 0.4 / 4; every other action with 0.1.
    np.testing.assert_allclose(np.bincount(a, minlength=4) / a.size, [0.1, 0.7, 0.1, 0.1], atol=0.015)
