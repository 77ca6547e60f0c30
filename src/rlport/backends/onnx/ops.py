"""Per-op ONNX emitters and their registry, :data:`EMITTERS`.

Each emitter writes the nodes for one policy-graph op into a
:class:`~rlport.backends.onnx.builder.Builder` and gives the numpy runtime's result and dtype
(docs/FORMAT.md section 4.1) in deterministic mode: stochastic ops take their mode (argmax, the
Gaussian's mean). An emitter is ``fn(builder, input names, {role: (array, tensor name)}, attrs)``
and returns its output name(s).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlport.backends.onnx.builder import F32, I64, Builder
from rlport.graph.reference import HUGE_NEG

__all__ = ["EMITTERS", "ACTIVATIONS"]


# ---- activations -------------------------------------------------------------------------


def _sigmoid(b: Builder, x: str) -> str:
    """numpy_ops.sigmoid term for term: 0.5 * (1 + tanh(0.5 * x))."""
    half = b.scalar(0.5, x)
    t = b.op("Tanh", [b.op("Mul", [x, half])])
    return b.op("Mul", [b.op("Add", [t, b.scalar(1.0, x)]), half])


def _softplus(b: Builder, x: str, beta: float = 1.0, threshold: float = 20.0) -> str:
    scaled = b.op("Mul", [x, b.scalar(beta, x)])
    exp = b.op("Exp", [b.op("Neg", [b.op("Abs", [scaled])])])
    log_add_exp = b.op("Add", [b.op("Relu", [scaled]), b.op("Log", [b.op("Add", [exp, b.scalar(1.0, x)])])])
    soft = b.op("Div", [log_add_exp, b.scalar(beta, x)])
    return b.op("Where", [b.op("Greater", [scaled, b.scalar(threshold, x)], bool), x, soft])


def _clip(b: Builder, x: str, low: float, high: float) -> str:
    return b.op("Clip", [x, b.scalar(low, x), b.scalar(high, x)])


def _gelu(b: Builder, x: str, approximate: str) -> str:
    if approximate == "tanh":
        cube = b.op("Mul", [b.op("Mul", [x, x]), x])
        inner = b.op("Add", [x, b.op("Mul", [cube, b.scalar(0.044715, x)])])
        gate = b.op("Tanh", [b.op("Mul", [inner, b.scalar(math.sqrt(2.0 / math.pi), x)])])
    else:
        gate = b.op("Erf", [b.op("Div", [x, b.scalar(math.sqrt(2.0), x)])])
    return b.op("Mul", [b.op("Mul", [x, b.scalar(0.5, x)]), b.op("Add", [gate, b.scalar(1.0, x)])])


def _prelu(b: Builder, x: str, weight: np.ndarray, tensor: str) -> str:
    rank = b.ranks[x]
    shape = (-1,) + (1,) * (rank - 2) if weight.size > 1 and rank > 2 else (-1,)
    return b.op("PRelu", [x, b.param(tensor, weight, b.types[x], shape)])


def _where_greater(b: Builder, x: str, test: str, threshold: float, other: Any) -> str:
    return b.op("Where", [b.op("Greater", [test, b.scalar(threshold, x)], bool), x, other])


def _hardsigmoid(b: Builder, x: str) -> str:
    return _clip(b, b.op("Add", [b.op("Div", [x, b.scalar(6.0, x)]), b.scalar(0.5, x)]), 0.0, 1.0)


ACTIVATIONS = {
    "relu": lambda b, x, p, a: b.op("Relu", x[:1]),
    "relu6": lambda b, x, p, a: _clip(b, x[0], 0.0, 6.0),
    "leaky_relu": lambda b, x, p, a: b.op("LeakyRelu", x[:1], alpha=float(a["negative_slope"])),
    "rrelu": lambda b, x, p, a: b.op("LeakyRelu", x[:1], alpha=(a["lower"] + a["upper"]) / 2.0),
    "elu": lambda b, x, p, a: b.op("Elu", x[:1], alpha=float(a["alpha"])),
    "celu": lambda b, x, p, a: b.op("Celu", x[:1], alpha=float(a["alpha"])),
    "selu": lambda b, x, p, a: b.op("Selu", x[:1]),
    "gelu": lambda b, x, p, a: _gelu(b, x[0], a["approximate"]),
    "silu": lambda b, x, p, a: b.op("Mul", [x[0], _sigmoid(b, x[0])]),
    "mish": lambda b, x, p, a: b.op("Mul", [x[0], b.op("Tanh", [_softplus(b, x[0])])]),
    "sigmoid": lambda b, x, p, a: _sigmoid(b, x[0]),
    "logsigmoid": lambda b, x, p, a: b.op("Neg", [_softplus(b, b.op("Neg", x[:1]))]),
    "hardsigmoid": lambda b, x, p, a: _hardsigmoid(b, x[0]),
    "hardswish": lambda b, x, p, a: b.op(
        "Mul", [x[0], b.op("Div", [_clip(b, b.op("Add", [x[0], b.scalar(3.0, x[0])]), 0.0, 6.0), b.scalar(6.0, x[0])])]
    ),
    "hardtanh": lambda b, x, p, a: _clip(b, x[0], a["min_val"], a["max_val"]),
    "tanh": lambda b, x, p, a: b.op("Tanh", x[:1]),
    "tanhshrink": lambda b, x, p, a: b.op("Sub", [x[0], b.op("Tanh", x[:1])]),
    "softplus": lambda b, x, p, a: _softplus(b, x[0], a["beta"], a["threshold"]),
    "softsign": lambda b, x, p, a: b.op("Div", [x[0], b.op("Add", [b.op("Abs", x[:1]), b.scalar(1.0, x[0])])]),
    "softmax": lambda b, x, p, a: b.op("Softmax", x[:1], axis=int(a["axis"])),
    "log_softmax": lambda b, x, p, a: b.op("LogSoftmax", x[:1], axis=int(a["axis"])),
    "prelu": lambda b, x, p, a: _prelu(b, x[0], *p["weight"]),
    "hardshrink": lambda b, x, p, a: _where_greater(b, x[0], b.op("Abs", x[:1]), a["lambd"], b.scalar(0.0, x[0])),
    "softshrink": lambda b, x, p, a: b.op("Shrink", x[:1], bias=float(a["lambd"]), lambd=float(a["lambd"])),
    "threshold": lambda b, x, p, a: _where_greater(b, x[0], x[0], a["threshold"], b.scalar(a["value"], x[0])),
}


# ---- pre-processing and network ----------------------------------------------------------


def _normalize(b: Builder, x: list[str], p: dict, a: dict) -> str:
    (mean, mean_name), (var, _) = p["mean"], p["var"]
    std = np.sqrt(var + a["epsilon"])  # as numpy_ops computes it at load
    dtype = np.result_type(b.types[x[0]], mean.dtype, std.dtype)  # SB3 normalises in float64
    centred = b.op("Sub", [b.cast(x[0], dtype), b.param(mean_name, mean, dtype)])
    scaled = b.op("Div", [centred, b.const(std, dtype, "std")])
    return b.cast(_clip(b, scaled, -a["clip"], a["clip"]), F32)


def _one_hot(b: Builder, index: str, sizes: list[int]) -> str:
    """Equal against a range: each column's hits lie in its own block of ``sum(sizes)``."""
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    index = b.cast(index, I64)
    if len(sizes) > 1 or offsets.any():
        index = b.op("Add", [index, b.const(offsets)])
    hits = b.op("Equal", [b.op("Unsqueeze", [index, b.const([-1], I64)]), b.const(np.arange(sum(sizes)))], bool)
    return b.cast(hits, F32)


def _multi_one_hot(b: Builder, x: list[str], p: dict, a: dict) -> str:
    return b.reduce("ReduceSum", _one_hot(b, x[0], [int(s) for s in a["sizes"]]), [1], keepdims=0)


def _linear(b: Builder, x: list[str], p: dict, a: dict) -> str:
    weight, name = p["weight"]
    dtype = np.result_type(b.types[x[0]], weight.dtype)
    y = b.op("MatMul", [b.cast(x[0], dtype), b.param(name, np.ascontiguousarray(weight.T), dtype)])
    if "bias" in p:
        y = b.op("Add", [y, b.param(p["bias"][1], p["bias"][0], dtype)])
    return y


def _conv2d(b: Builder, x: list[str], p: dict, a: dict) -> str:
    weight, name = p["weight"]
    dtype = b.types[x[0]]
    inputs = [x[0], b.param(name, weight, dtype)] + (
        [b.param(p["bias"][1], p["bias"][0], dtype)] if "bias" in p else []
    )
    ph, pw = a["padding"]
    return b.op(
        "Conv",
        inputs,
        kernel_shape=list(weight.shape[2:]),
        strides=list(a["stride"]),
        pads=[ph, pw, ph, pw],
        dilations=list(a["dilation"]),
        group=int(a["groups"]),
    )


def _batch_norm(b: Builder, x: list[str], p: dict, a: dict) -> str:
    """numpy_ops._batch_norm: (x - mean) * scale + shift, with scale folded the same way."""
    mean, var = p["mean"][0], p["var"][0]
    scale = 1.0 / np.sqrt(var + a["epsilon"])
    if "weight" in p:
        scale = scale * p["weight"][0]
    shift = p["bias"][0] if "bias" in p else np.zeros_like(mean)
    shape = (1, -1) + (1,) * (b.ranks[x[0]] - 2)
    centred = b.op("Sub", [x[0], b.const(mean.reshape(shape), hint="bn_mean")])
    scaled = b.op("Mul", [centred, b.const(scale.astype(F32).reshape(shape), hint="bn_scale")])
    return b.op("Add", [scaled, b.const(shift.reshape(shape), hint="bn_shift")])


def _layer_norm(b: Builder, x: list[str], p: dict, a: dict) -> str:
    axes = list(range(-int(a["axes"]), 0))
    centred = b.op("Sub", [x[0], b.reduce("ReduceMean", x[0], axes, keepdims=1)])
    var = b.reduce("ReduceMean", b.op("Mul", [centred, centred]), axes, keepdims=1)
    y = b.op("Div", [centred, b.op("Sqrt", [b.op("Add", [var, b.scalar(a["epsilon"], x[0])])])])
    for role, op_type in (("weight", "Mul"), ("bias", "Add")):
        if role in p:
            y = b.op(op_type, [y, b.param(p[role][1], p[role][0], b.types[x[0]])])
    return y


def _normalised(b: Builder, v: str, epsilon: float) -> str:
    """numpy reference ``_normalised``: (v - mean) / sqrt(mean((v - mean)^2) + epsilon) over the last axis."""
    centred = b.op("Sub", [v, b.reduce("ReduceMean", v, [-1], keepdims=1)])
    var = b.reduce("ReduceMean", b.op("Mul", [centred, centred]), [-1], keepdims=1)
    return b.op("Div", [centred, b.op("Sqrt", [b.op("Add", [var, b.scalar(epsilon, v)])])])


def _param(b: Builder, param: tuple[np.ndarray, str], dtype: np.dtype) -> str:
    return b.param(param[1], param[0], dtype)


def _matmul(b: Builder, x: str, weight: tuple[np.ndarray, str], dtype: np.dtype) -> str:
    return b.op("MatMul", [x, b.param(weight[1], np.ascontiguousarray(weight[0].T), dtype)])


def _lstm_gates(b: Builder, inp: str, h_k: str, k: int, p: dict, a: dict, dtype: np.dtype) -> str:
    """Layer ``k``'s pre-activation gates, with the numpy reference's terms and bias folding."""
    bias = p[f"bias_ih.{k}"][0] + p[f"bias_hh.{k}"][0]
    x_part, h_part = _matmul(b, inp, p[f"weight_ih.{k}"], dtype), _matmul(b, h_k, p[f"weight_hh.{k}"], dtype)
    if bool(a["layer_norm"]):
        bias = p[f"ln_ih_bias.{k}"][0] + p[f"ln_hh_bias.{k}"][0] + bias
        epsilon = float(a["layer_norm_epsilon"])
        x_part = b.op("Mul", [_normalised(b, x_part, epsilon), _param(b, p[f"ln_ih_gain.{k}"], dtype)])
        h_part = b.op("Mul", [_normalised(b, h_part, epsilon), _param(b, p[f"ln_hh_gain.{k}"], dtype)])
    return b.op("Add", [b.op("Add", [x_part, h_part]), b.const(bias, dtype, "lstm_bias")])


def _lstm_cell(b: Builder, c_k: str, k: int, p: dict, a: dict, dtype: np.dtype) -> str:
    """What the hidden's tanh takes: ``c'``, or ``LN(c') * ln_c_gain + ln_c_bias`` with ``layer_norm``."""
    if not bool(a["layer_norm"]):
        return c_k
    scaled = b.op("Mul", [_normalised(b, c_k, float(a["layer_norm_epsilon"])), _param(b, p[f"ln_c_gain.{k}"], dtype)])
    return b.op("Add", [scaled, _param(b, p[f"ln_c_bias.{k}"], dtype)])


def _lstm(b: Builder, x: list[str], p: dict, a: dict) -> list[str]:
    """One step of torch's nn.LSTM per layer, gates i, f, g, o (reference ``_lstm``), optionally layer-normalised."""
    layers, hidden = int(a["layers"]), int(a["hidden_size"])
    dtype = np.result_type(b.types[x[0]], b.types[x[1]], b.types[x[2]], F32)
    inp, h, c = (b.cast(name, dtype) for name in x[:3])
    if len(x) > 3:
        keep = b.op("Sub", [b.const(1.0, F32), b.cast(x[3], F32)])
        keep = b.cast(b.op("Reshape", [keep, b.const([1, -1, 1], I64)]), dtype)
        h, c = b.op("Mul", [h, keep]), b.op("Mul", [c, keep])
    hs, cs = [], []
    for k in range(layers):
        h_k, c_k = (b.op("Gather", [state, b.const(k, I64)], axis=0) for state in (h, c))
        gates = _lstm_gates(b, inp, h_k, k, p, a, dtype)
        i, f, g, o = b.op("Split", [gates, b.const([hidden] * 4, I64)], n_out=4, axis=-1)
        c_k = b.op(
            "Add",
            [b.op("Mul", [_sigmoid(b, f), c_k]), b.op("Mul", [_sigmoid(b, i), b.op("Tanh", [g])])],
        )
        inp = b.op("Mul", [_sigmoid(b, o), b.op("Tanh", [_lstm_cell(b, c_k, k, p, a, dtype)])])
        hs.append(inp)
        cs.append(c_k)
    axis0 = b.const([0], I64)
    stacked = [b.op("Concat", [b.op("Unsqueeze", [v, axis0]) for v in vs], axis=0) for vs in (hs, cs)]
    return [b.cast(inp, F32), *(b.cast(s, F32) for s in stacked)]


# ---- action selection and post-processing ------------------------------------------------


def _masked(b: Builder, x: list[str]) -> str:
    if len(x) < 2:
        return x[0]
    mask = b.op("Reshape", [b.cast(x[1], bool), b.op("Shape", [x[0]], I64)])
    return b.op("Where", [mask, x[0], b.scalar(HUGE_NEG, x[0])])


def _multi_categorical(b: Builder, x: list[str], p: dict, a: dict) -> str:
    sizes = [int(s) for s in a["sizes"]]
    parts = b.op("Split", [_masked(b, x), b.const(sizes, I64)], n_out=len(sizes), axis=-1)
    parts = [parts] if len(sizes) == 1 else parts
    return b.op("Concat", [b.op("ArgMax", [s], I64, axis=-1, keepdims=1) for s in parts], axis=-1)


def _rescale(b: Builder, x: list[str], p: dict, a: dict) -> str:
    """SB3's unscale_action as numpy_ops does it: low + (0.5 * (a + 1.0) * (high - low))."""
    (low, low_name), (high, _) = p["low"], p["high"]
    span = high - low
    dtype = np.result_type(b.types[x[0]], low.dtype, span.dtype)
    half = b.op("Mul", [b.op("Add", [x[0], b.scalar(1.0, x[0])]), b.scalar(0.5, x[0])])
    scaled = b.op("Mul", [b.cast(half, dtype), b.const(span, dtype, "span")])
    return b.op("Add", [b.param(low_name, low, dtype), scaled])


def _clip_to_bounds(b: Builder, x: list[str], p: dict, a: dict) -> str:
    (low, low_name), (high, high_name) = p["low"], p["high"]
    dtype = np.result_type(b.types[x[0]], low.dtype, high.dtype)
    above = b.op("Max", [b.cast(x[0], dtype), b.param(low_name, low, dtype)])
    return b.op("Min", [above, b.param(high_name, high, dtype)])


def _binary(op_type: str):
    """``x OP other`` (``other`` the second input or the parameter), both cast to numpy's result dtype first."""

    def emit(b: Builder, x: list[str], p: dict, a: dict) -> str:
        other = b.types[x[1]] if len(x) > 1 else p["other"][0].dtype
        dtype = np.result_type(b.types[x[0]], other)
        right = b.cast(x[1], dtype) if len(x) > 1 else b.param(p["other"][1], p["other"][0], dtype)
        return b.op(op_type, [b.cast(x[0], dtype), right])

    return emit


def _pool(b: Builder, op_type: str, x: str, a: dict, **attrs: Any) -> str:
    ph, pw = a["padding"]
    return b.op(op_type, [x], kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=[ph, pw, ph, pw],
                **attrs)  # fmt: skip


def _slice(b: Builder, x: list[str], p: dict, a: dict) -> str:
    bounds = [b.const([int(a[k])], I64) for k in ("start", "end", "axis", "step")]
    return b.op("Slice", [x[0], *bounds])


def _argmax(b: Builder, x: str) -> str:
    return b.op("ArgMax", [x], I64, axis=-1, keepdims=0)


EMITTERS = {
    **ACTIVATIONS,
    "exp": lambda b, x, p, a: b.op("Exp", x[:1]),
    "add": _binary("Add"),
    "sub": _binary("Sub"),
    "mul": _binary("Mul"),
    "div": _binary("Div"),
    "max_pool2d": lambda b, x, p, a: _pool(b, "MaxPool", x[0], a, dilations=list(a["dilation"])),
    "avg_pool2d": lambda b, x, p, a: _pool(b, "AveragePool", x[0], a, count_include_pad=int(a["count_include_pad"])),
    "slice": _slice,
    "cast": lambda b, x, p, a: b.cast(x[0], a["dtype"]),
    "normalize": _normalize,
    "divide": lambda b, x, p, a: b.op("Div", [b.cast(x[0], F32), b.const(a["divisor"], F32)]),
    "one_hot": lambda b, x, p, a: _one_hot(b, x[0], [int(a["n"])]),
    "multi_one_hot": _multi_one_hot,
    "flatten": lambda b, x, p, a: b.op("Flatten", x[:1], axis=1),
    "concat": lambda b, x, p, a: b.op("Concat", [b.cast(v, b.expected) for v in x], axis=-1),
    "linear": _linear,
    "conv2d": _conv2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "reshape": lambda b, x, p, a: b.op("Reshape", [x[0], b.const([0, *a["shape"]], I64)]),
    "mean": lambda b, x, p, a: b.reduce("ReduceMean", x[0], [int(a["axis"])], keepdims=0),
    "clip": lambda b, x, p, a: _clip(b, x[0], a["min"], a["max"]),
    "lstm": _lstm,
    "categorical": lambda b, x, p, a: _argmax(b, _masked(b, x)),
    "multi_categorical": _multi_categorical,
    "bernoulli": lambda b, x, p, a: b.cast(b.op("Greater", [_sigmoid(b, x[0]), b.scalar(0.5, x[0])], bool), F32),
    "greedy": lambda b, x, p, a: _argmax(b, x[0]),
    "rescale_to_bounds": _rescale,
    "clip_to_bounds": _clip_to_bounds,
}
"""op name -> ``fn(builder, input names, {role: (array, tensor name)}, attrs)`` giving output name(s).

``identity`` and the mode of ``gaussian`` / ``gsde`` pass an input through and need no emitter.
"""
