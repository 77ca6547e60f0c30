"""Numpy implementations of the graph ops (docs/FORMAT.md section 4.1).

Each op is one small function ``fn(*inputs, **params_and_attrs) -> array | tuple``. Stochastic
ops also get ``ctx`` (an object with ``deterministic`` and ``rng``). ``PREPARE`` holds optional
load-time hooks that turn stored parameters into the form the function wants (a transposed
weight, a square root computed once), so that ``predict`` does no repeated work.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from rlport.errors import ObservationError

__all__ = ["IMPLEMENTATIONS", "PREPARE", "bind", "sigmoid"]

_F32 = np.float32
_ZERO = np.float32(0)  # a float32 zero keeps float32 inputs float32 and is the cheapest operand
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
HUGE_NEG = -1e8  # MaskablePPO's value for masked-out logits


# ---- activations -------------------------------------------------------------------------


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x, beta=1.0, threshold=20.0):
    scaled = x * beta
    return np.where(scaled > threshold, x, np.logaddexp(0.0, scaled) / beta).astype(x.dtype)


def _erf(x):
    # Abramowitz & Stegun 7.1.26 in float64: |error| < 1.5e-7.
    x64 = np.asarray(x, dtype=np.float64)
    sign = np.sign(x64)
    a = np.abs(x64)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x, approximate):
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return (0.5 * x * (1.0 + np.tanh(inner))).astype(x.dtype)
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)


def _leaky(x, slope):
    return np.where(x >= 0, x, x * slope).astype(x.dtype)


def _softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _prelu(x, weight):
    w = weight.reshape((1, -1) + (1,) * (x.ndim - 2)) if weight.size > 1 else weight
    return np.where(x >= 0, x, x * w).astype(x.dtype)


def _hardsigmoid(x):
    return np.minimum(np.maximum(x / 6.0 + 0.5, 0.0), 1.0).astype(x.dtype)


ACTIVATIONS: dict[str, Callable[..., Any]] = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, _ZERO),
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6).astype(x.dtype),
    "leaky_relu": lambda x, negative_slope: _leaky(x, negative_slope),
    "rrelu": lambda x, lower, upper: _leaky(x, (lower + upper) / 2.0),
    # expm1 only of the negative part: the positive branch is discarded and would overflow.
    "elu": lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype),
    "celu": lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0) / alpha)).astype(x.dtype),
    "selu": lambda x: (_SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))).astype(x.dtype),
    "gelu": _gelu,
    "silu": lambda x: x * sigmoid(x),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "sigmoid": sigmoid,
    "logsigmoid": lambda x: -_softplus(-x),
    "hardsigmoid": _hardsigmoid,
    "hardswish": lambda x: x * (np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0).astype(x.dtype),
    "hardtanh": lambda x, min_val, max_val: np.minimum(np.maximum(x, min_val), max_val).astype(x.dtype),
    "tanh": np.tanh,
    "tanhshrink": lambda x: x - np.tanh(x),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "prelu": _prelu,
    "hardshrink": lambda x, lambd: np.where(np.abs(x) > lambd, x, 0).astype(x.dtype),
    "softshrink": lambda x, lambd: np.where(x > lambd, x - lambd, np.where(x < -lambd, x + lambd, 0)).astype(x.dtype),
    "threshold": lambda x, threshold, value: np.where(x > threshold, x, value).astype(x.dtype),
}


# ---- pre-processing ----------------------------------------------------------------------


def _normalize(x, *, mean, std, clip):
    return np.clip((x - mean) / std, -clip, clip).astype(_F32)


def _divide(x, *, divisor):
    return x.astype(_F32) / _F32(divisor)


def _indices(x, sizes: list[int]) -> np.ndarray:
    idx = x.astype(np.int64)
    if idx.size and (idx.min() < 0 or np.any(idx >= np.asarray(sizes, dtype=np.int64))):
        raise ObservationError(f"a discrete observation is outside 0..n-1 (n = {sizes}); found {x.tolist()}")
    return idx


def _one_hot(x, *, n, eye):
    idx = _indices(x, [n])
    if eye is not None:
        return eye[idx]
    out = np.zeros((idx.shape[0], n), dtype=_F32)
    out[np.arange(idx.shape[0]), idx] = 1.0
    return out


def _multi_one_hot(x, *, sizes, offsets, total):
    idx = _indices(x, sizes) + offsets
    out = np.zeros((x.shape[0], total), dtype=_F32)
    np.put_along_axis(out, idx, 1.0, axis=1)
    return out


# ---- network -----------------------------------------------------------------------------


def _linear_closure(weight_t, bias):
    # ndarray.dot and a (1, out) bias are the cheapest calls for small batches; there a new
    # array is cheaper than an in-place add, while large batches avoid the extra allocation.
    if bias is None:
        return lambda x: x.dot(weight_t)

    def linear(x):
        y = x.dot(weight_t)
        if y.shape[0] <= 8:
            return y + bias
        y += bias
        return y

    return linear


def _linear(x, *, weight_t, bias):
    return _linear_closure(weight_t, bias)(x)


def _conv2d(x, *, weight, bias, stride, padding, dilation, groups):
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_c, in_per_group, kh, kw = weight.shape
    dh, dw = dilation
    win = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, :: stride[0], :: stride[1], ::dh, ::dw]  # (B, C, Ho, Wo, kh, kw)
    per_group = out_c // groups
    parts = []
    for g in range(groups):
        w_g = weight[g * per_group : (g + 1) * per_group]
        x_g = win[:, g * in_per_group : (g + 1) * in_per_group]
        parts.append(np.tensordot(x_g, w_g, axes=([1, 4, 5], [1, 2, 3])))  # (B, Ho, Wo, O_g)
    y = np.concatenate(parts, axis=-1) if groups > 1 else parts[0]
    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def _batch_norm(x, *, scale, shift):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - shift[0].reshape(shape)) * scale.reshape(shape) + shift[1].reshape(shape)


def _layer_norm(x, *, weight, bias, epsilon, axes):
    dims = tuple(range(x.ndim - axes, x.ndim))
    mean = x.mean(axis=dims, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=dims, keepdims=True)
    y = (x - mean) / np.sqrt(var + epsilon)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


def _normalised(v, epsilon):
    """``(v - mean(v)) / sqrt(var(v) + epsilon)`` over the last axis (population variance)."""
    centred = v - v.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + epsilon)


def _lstm(x, h, c, episode_start, *, layers, wih_t, whh_t, bias, ln=None, epsilon=1e-5):
    """``ln``: per layer (ih gain, hh gain, c gain, c bias) for the layer-normalised cell, whose
    gate biases (``ln_ih_bias + ln_hh_bias``) are folded into ``bias`` at load."""
    if episode_start is not None:
        keep = (1.0 - np.asarray(episode_start, dtype=_F32)).reshape(1, -1, 1)
        h, c = h * keep, c * keep
    hs, cs = [], []
    inp = x
    for k in range(layers):
        if ln is None:
            gates = inp @ wih_t[k] + h[k] @ whh_t[k] + bias[k]
        else:
            gates = _normalised(inp @ wih_t[k], epsilon) * ln[k][0] + _normalised(h[k] @ whh_t[k], epsilon) * ln[k][1]
            gates += bias[k]
        i, f, g, o = np.split(gates, 4, axis=-1)
        c_k = sigmoid(f) * c[k] + sigmoid(i) * np.tanh(g)
        cell = c_k if ln is None else _normalised(c_k, epsilon) * ln[k][2] + ln[k][3]
        inp = sigmoid(o) * np.tanh(cell)
        hs.append(inp)
        cs.append(c_k)
    return inp.astype(_F32, copy=False), np.stack(hs).astype(_F32), np.stack(cs).astype(_F32)


# ---- action selection --------------------------------------------------------------------


def _masked(logits, mask):
    if mask is None:
        return logits
    mask = np.asarray(mask, dtype=bool).reshape(logits.shape)
    return np.where(mask, logits, HUGE_NEG).astype(logits.dtype)


def _sample_or_argmax(logits, ctx):
    if ctx.deterministic:
        return logits.argmax(axis=-1)
    gumbel = -np.log(-np.log(ctx.rng.random(logits.shape)))
    return np.argmax(logits + gumbel, axis=-1)


def _check_mask_rows(mask, sizes, batch):
    if mask is None:
        return
    rows = np.asarray(mask, dtype=bool).reshape(batch, -1)
    start = 0
    for size in sizes:
        if not rows[:, start : start + size].any(axis=1).all():
            raise ObservationError("an action mask allows no action at all for some row; allow at least one")
        start += size


def _categorical(logits, mask=None, *, ctx):
    if mask is None and ctx.deterministic:
        return logits.argmax(axis=-1)
    _check_mask_rows(mask, [logits.shape[-1]], logits.shape[0])
    return _sample_or_argmax(_masked(logits, mask), ctx).astype(np.int64)


def _multi_categorical(logits, mask=None, *, sizes, ctx):
    _check_mask_rows(mask, sizes, logits.shape[0])
    logits = _masked(logits, mask)
    splits = np.split(logits, np.cumsum(sizes)[:-1], axis=-1)
    return np.stack([_sample_or_argmax(s, ctx) for s in splits], axis=1).astype(np.int64)


def _bernoulli(logits, *, ctx):
    probs = sigmoid(logits)
    if ctx.deterministic:
        return (probs > 0.5).astype(_F32)
    return (ctx.rng.random(probs.shape) < probs).astype(_F32)


def _gaussian(mean, log_std=None, *, ctx, log_std_param=None):
    if ctx.deterministic:
        return mean
    log_std = log_std_param if log_std is None else log_std
    noise = ctx.rng.standard_normal(mean.shape).astype(mean.dtype)
    return mean + np.exp(log_std) * noise


def _gsde(mean, latent, *, log_std, use_expln, full_std, epsilon, ctx):
    if ctx.deterministic:
        return mean
    if use_expln:
        below = np.exp(log_std) * (log_std <= 0)
        safe = log_std * (log_std > 0) + epsilon
        std = below + (np.log1p(safe) + 1.0) * (log_std > 0)
    else:
        std = np.exp(log_std)
    if not full_std:
        std = np.ones((latent.shape[1], mean.shape[1]), dtype=std.dtype) * std
    exploration = ctx.rng.standard_normal(std.shape).astype(mean.dtype) * std
    return mean + latent @ exploration


def _greedy(q, *, epsilon, n, ctx):
    action = q.argmax(axis=-1)
    if ctx.deterministic or epsilon <= 0:
        return action
    explore = ctx.rng.random(action.shape) < epsilon
    return np.where(explore, ctx.rng.integers(0, n, size=action.shape), action)


# ---- registry ----------------------------------------------------------------------------

# ---- element-wise arithmetic, pooling, slices -----------------------------------------------


def _exp(x):
    with np.errstate(over="ignore"):  # inf, as torch and onnxruntime give
        return np.exp(x)


def _binary(ufunc: Callable[..., Any]) -> Callable[..., Any]:
    """``x OP other``: ``other`` the second input, else the ``other`` parameter; IEEE results (inf, nan) as torch."""

    def apply(x, y=None, *, other=None):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return ufunc(x, other if y is None else y)

    return apply


def _pool_windows(x, kernel, stride, padding, dilation, fill):
    """(B, C, Ho, Wo, kh, kw) windows of ``x`` padded with ``fill`` (views, nothing copied but the padding)."""
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    (kh, kw), (dh, dw) = kernel, dilation
    win = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    return win[:, :, :: stride[0], :: stride[1], ::dh, ::dw]


def _max_pool2d(x, *, kernel, stride, padding, dilation):
    return _pool_windows(x, kernel, stride, padding, dilation, -np.inf).max(axis=(4, 5))


def _avg_pool2d(x, *, kernel, stride, padding, count_include_pad):
    (kh, kw), (ph, pw) = kernel, padding
    total = _pool_windows(x, kernel, stride, padding, (1, 1), 0).sum(axis=(4, 5))
    if count_include_pad or not (ph or pw):
        return (total / (kh * kw)).astype(x.dtype)
    ones = np.pad(np.ones(x.shape[2:], x.dtype), ((ph, ph), (pw, pw)))
    counts = sliding_window_view(ones, (kh, kw))[:: stride[0], :: stride[1]].sum(axis=(2, 3))
    return (total / counts).astype(x.dtype)


def _slice(x, *, axis, start, end, step):
    index = (slice(None),) * (axis % x.ndim) + (slice(start, end, step),)
    return np.ascontiguousarray(x[index])


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    **ACTIVATIONS,
    "exp": _exp,
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "div": _binary(np.true_divide),
    "max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "slice": _slice,
    "cast": lambda x, dtype: x.astype(dtype, copy=False),
    "normalize": _normalize,
    "divide": _divide,
    "one_hot": _one_hot,
    "multi_one_hot": _multi_one_hot,
    "flatten": lambda x: x if x.ndim == 2 else x.reshape(x.shape[0], -1),
    "concat": lambda *xs: np.concatenate(xs, axis=-1),
    "linear": _linear,
    "conv2d": _conv2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "reshape": lambda x, shape: x.reshape((x.shape[0], *shape)),
    "mean": lambda x, axis: x.mean(axis=axis),
    "clip": lambda x, min, max: np.minimum(np.maximum(x, min), max).astype(x.dtype, copy=False),  # noqa: A002
    "lstm": _lstm,
    "categorical": _categorical,
    "multi_categorical": _multi_categorical,
    "bernoulli": _bernoulli,
    "gaussian": _gaussian,
    "gsde": _gsde,
    "greedy": _greedy,
    # SB3's unscale_action, term for term: low + (0.5 * (a + 1.0) * (high - low)).
    "rescale_to_bounds": lambda a, low, span: low + (0.5 * (a + 1.0) * span),
    "clip_to_bounds": lambda a, low, high: np.minimum(np.maximum(a, low), high),
}


def _prepare_linear(params, attrs):
    bias = params.get("bias")
    return {"weight_t": np.ascontiguousarray(params["weight"].T), "bias": None if bias is None else bias[None]}


def _prepare_normalize(params, attrs):
    return {"mean": params["mean"], "std": np.sqrt(params["var"] + attrs["epsilon"]), "clip": attrs["clip"]}


_EYE_LIMIT = 1024
"""Up to this many categories, one_hot indexes a precomputed identity matrix (n * n floats)."""


def _prepare_one_hot(params, attrs):
    n = int(attrs["n"])
    return {"n": n, "eye": np.eye(n, dtype=_F32) if n <= _EYE_LIMIT else None}


def _prepare_multi_one_hot(params, attrs):
    sizes = [int(s) for s in attrs["sizes"]]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return {"sizes": sizes, "offsets": offsets, "total": int(sum(sizes))}


def _prepare_batch_norm(params, attrs):
    var, mean = params["var"], params["mean"]
    scale = 1.0 / np.sqrt(var + attrs["epsilon"])
    weight = params.get("weight")
    bias = params.get("bias")
    if weight is not None:
        scale = scale * weight
    shift = (mean, bias if bias is not None else np.zeros_like(mean))
    return {"scale": scale.astype(_F32), "shift": shift}


def _prepare_lstm(params, attrs):
    layers = int(attrs["layers"])
    prepared = {
        "layers": layers,
        "wih_t": [np.ascontiguousarray(params[f"weight_ih.{k}"].T) for k in range(layers)],
        "whh_t": [np.ascontiguousarray(params[f"weight_hh.{k}"].T) for k in range(layers)],
        "bias": [params[f"bias_ih.{k}"] + params[f"bias_hh.{k}"] for k in range(layers)],
    }
    if bool(attrs["layer_norm"]):
        prepared["epsilon"] = float(attrs["layer_norm_epsilon"])
        prepared["ln"] = [[params[f"{role}.{k}"] for role in ("ln_ih_gain", "ln_hh_gain", "ln_c_gain", "ln_c_bias")]
                          for k in range(layers)]  # fmt: skip
        for k in range(layers):
            prepared["bias"][k] = params[f"ln_ih_bias.{k}"] + params[f"ln_hh_bias.{k}"] + prepared["bias"][k]
    return prepared


def _prepare_conv2d(params, attrs):
    return {
        "weight": params["weight"],
        "bias": params.get("bias"),
        "stride": tuple(attrs["stride"]),
        "padding": tuple(attrs["padding"]),
        "dilation": tuple(attrs["dilation"]),
        "groups": int(attrs["groups"]),
    }


def _prepare_rescale(params, attrs):
    # Bounds with a leading batch axis of 1 take numpy's fast broadcasting path.
    return {"low": params["low"][None], "span": (params["high"] - params["low"])[None]}


def _prepare_clip_to_bounds(params, attrs):
    return {"low": params["low"][None], "high": params["high"][None]}


def _prepare_gaussian(params, attrs):
    return {"log_std_param": params.get("log_std")}


def _prepare_layer_norm(params, attrs):
    return {"weight": params.get("weight"), "bias": params.get("bias"), **attrs}


PREPARE: dict[str, Callable[[dict[str, np.ndarray], dict[str, Any]], dict[str, Any]]] = {
    "linear": _prepare_linear,
    "normalize": _prepare_normalize,
    "one_hot": _prepare_one_hot,
    "multi_one_hot": _prepare_multi_one_hot,
    "batch_norm": _prepare_batch_norm,
    "lstm": _prepare_lstm,
    "conv2d": _prepare_conv2d,
    "gaussian": _prepare_gaussian,
    "rescale_to_bounds": _prepare_rescale,
    "clip_to_bounds": _prepare_clip_to_bounds,
    "layer_norm": _prepare_layer_norm,
}
"""Load-time hooks: (params, attrs) -> the keyword arguments of the op function."""


CLOSURES: dict[str, Callable[..., Callable[..., Any]]] = {"linear": _linear_closure}
"""Ops on the hot path built as plain closures: a call costs less than a keyword ``partial``."""


def bind(op: str, params: dict[str, np.ndarray], attrs: dict[str, Any], ctx: Any = None) -> Callable[..., Any]:
    """The op's function with its parameters, attributes (and ``ctx``) bound: a function of its inputs.

    Args:
        op: the op name.
        params: the node's parameter tensors by role.
        attrs: the node's attributes, schema defaults filled in.
        ctx: for stochastic ops, the object holding ``deterministic`` and ``rng``.
    """
    kwargs = PREPARE[op](params, attrs) if op in PREPARE else {**params, **attrs}
    if ctx is not None:
        kwargs["ctx"] = ctx
    if op in CLOSURES:
        return CLOSURES[op](**kwargs)
    return functools.partial(IMPLEMENTATIONS[op], **kwargs) if kwargs else IMPLEMENTATIONS[op]
