"""Torch implementations of the graph ops (docs/FORMAT.md section 4.1); the module is in ``torch_graph_module.py``.

Each op mirrors its numpy reference in :mod:`rlport.graph.reference` term for term (same
formulas, same dtypes), so that both runtimes agree. Each op is one small function
``fn(*inputs, **params_and_attrs) -> tensor | tuple``; stochastic ops also get ``ctx`` (an object
with ``deterministic`` and a ``torch.Generator``). The two checks that read values (a discrete
observation out of range, an all-false mask row) run in eager mode only: traced, exported and
compiled graphs cannot branch on values, as ONNX graphs cannot. This module imports torch:
import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from rlport.errors import ObservationError, UnsupportedError

__all__ = ["IMPLEMENTATIONS", "RENAMED_PARAMS", "checks_values", "sigmoid"]

_F32 = torch.float32
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
HUGE_NEG = -1e8  # MaskablePPO's value for masked-out logits


# ---- activations -------------------------------------------------------------------------


def sigmoid(x):
    # The numpy runtime's formula, so that `sigmoid(x) > 0.5` agrees bit for bit.
    return 0.5 * (1.0 + torch.tanh(0.5 * x))


def _leaky(x, slope):
    return torch.where(x >= 0, x, x * slope)


def _prelu(x, weight):
    w = weight.reshape((1, -1) + (1,) * (x.ndim - 2)) if weight.numel() > 1 else weight
    return torch.where(x >= 0, x, x * w).to(x.dtype)


def _negative_expm1(x, alpha, divisor=1.0):
    return torch.where(x > 0, x, alpha * torch.expm1(torch.clamp(x, max=0) / divisor))


ACTIVATIONS: dict[str, Callable[..., Any]] = {
    "identity": lambda x: x,
    "relu": torch.relu,
    "relu6": lambda x: torch.clamp(x, 0, 6),
    "leaky_relu": lambda x, negative_slope: _leaky(x, negative_slope),
    "rrelu": lambda x, lower, upper: _leaky(x, (lower + upper) / 2.0),
    "elu": lambda x, alpha: _negative_expm1(x, alpha),
    "celu": lambda x, alpha: _negative_expm1(x, alpha, alpha),
    "selu": lambda x: _SELU_SCALE * _negative_expm1(x, _SELU_ALPHA),
    "gelu": lambda x, approximate: F.gelu(x, approximate=approximate),
    "silu": lambda x: x * sigmoid(x),
    "mish": lambda x: x * torch.tanh(F.softplus(x)),
    "sigmoid": sigmoid,
    "logsigmoid": lambda x: -F.softplus(-x),
    "hardsigmoid": lambda x: torch.clamp(x / 6.0 + 0.5, 0.0, 1.0),
    "hardswish": lambda x: x * (torch.clamp(x + 3.0, 0.0, 6.0) / 6.0),
    "hardtanh": lambda x, min_val, max_val: torch.clamp(x, min_val, max_val),
    "tanh": torch.tanh,
    "tanhshrink": lambda x: x - torch.tanh(x),
    "softplus": lambda x, beta, threshold: F.softplus(x, beta=beta, threshold=threshold),
    "softsign": lambda x: x / (1.0 + torch.abs(x)),
    "softmax": lambda x, axis: torch.softmax(x, dim=axis),
    "log_softmax": lambda x, axis: torch.log_softmax(x, dim=axis),
    "prelu": _prelu,
    "hardshrink": lambda x, lambd: torch.where(torch.abs(x) > lambd, x, torch.zeros_like(x)),
    "softshrink": lambda x, lambd: torch.where(
        x > lambd, x - lambd, torch.where(x < -lambd, x + lambd, torch.zeros_like(x))
    ),
    "threshold": lambda x, threshold, value: torch.where(x > threshold, x, torch.full_like(x, value)),
}


# ---- pre-processing ----------------------------------------------------------------------


_NUMERIC_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_NUMERIC_DTYPES += ("float16", "float32", "float64")
_TORCH_DTYPES = {name: torch.from_numpy(np.zeros(0, dtype=name)).dtype for name in _NUMERIC_DTYPES}


def torch_dtype(name: Any) -> torch.dtype:
    """The torch dtype of a numpy dtype name (``"float32"`` -> ``torch.float32``); a dict lookup, traceable.

    Raises:
        UnsupportedError: not the name of a numpy bool, integer or float dtype (``"complex64"``, ``"U5"``...).
    """
    if isinstance(name, str) and name in _TORCH_DTYPES:
        return _TORCH_DTYPES[name]
    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in _TORCH_DTYPES:
        shown = repr(name)
        raise UnsupportedError(
            f"dtype {shown if len(shown) <= 100 else shown[:100] + '...'} has no torch equivalent here; "
            f"supported: {', '.join(_NUMERIC_DTYPES)}"
        )
    return _TORCH_DTYPES[dtype.name]


def _normalize(x, *, mean, var, epsilon, clip):
    return torch.clamp((x - mean) / torch.sqrt(var + epsilon), -clip, clip).to(_F32)


def checks_values() -> bool:
    """Whether ops may read tensor values to refuse bad input: in eager mode, not while traced, exported or compiled."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())  # export sets is_compiling() too


def _indices(x, sizes: list[int]):
    idx = x.to(torch.int64)
    if not (checks_values() and idx.numel()):
        return idx
    if idx.min() < 0 or bool((idx >= torch.tensor(sizes, device=idx.device)).any()):
        raise ObservationError(f"a discrete observation is outside 0..n-1 (n = {sizes}); found {x.tolist()}")
    return idx


def _one_hot(x, *, n):
    return F.one_hot(_indices(x, [int(n)]), int(n)).to(_F32)


def _multi_one_hot(x, *, sizes):
    sizes = [int(s) for s in sizes]
    offsets = torch.tensor([0, *np.cumsum(sizes)[:-1].tolist()], device=x.device)
    out = torch.zeros((x.shape[0], sum(sizes)), dtype=_F32, device=x.device)
    return out.scatter_(1, _indices(x, sizes) + offsets, 1.0)


# ---- network -----------------------------------------------------------------------------


def _same_dtype(x, weight):
    """numpy's promotion (float64 input and float32 weight compute in float64) for torch kernels."""
    if x.dtype == weight.dtype:
        return x, weight
    dtype = torch.promote_types(x.dtype, weight.dtype)
    return x.to(dtype), weight.to(dtype)


def _linear(x, *, weight, bias=None):
    x, weight = _same_dtype(x, weight)
    return F.linear(x, weight, None if bias is None else bias.to(weight.dtype))


def _conv2d(x, *, weight, bias=None, stride, padding, dilation, groups):
    x, weight = _same_dtype(x, weight)
    bias = None if bias is None else bias.to(weight.dtype)
    return F.conv2d(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), int(groups))


def _batch_norm(x, *, mean, var, weight=None, bias=None, epsilon):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = 1.0 / torch.sqrt(var + epsilon)
    if weight is not None:
        scale = scale * weight
    shift = bias if bias is not None else torch.zeros_like(mean)
    return (x - mean.reshape(shape)) * scale.to(_F32).reshape(shape) + shift.reshape(shape)


def _layer_norm(x, *, weight=None, bias=None, epsilon, axes):
    dims = tuple(range(x.ndim - axes, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + epsilon)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.to(x.dtype)


def _normalised(v, epsilon):
    """``(v - mean(v)) / sqrt(var(v) + epsilon)`` over the last axis (population variance), as the numpy reference."""
    centred = v - v.mean(dim=-1, keepdim=True)
    return centred / torch.sqrt((centred * centred).mean(dim=-1, keepdim=True) + epsilon)


def _lstm_gates(inp, h, k, weights, layer_norm, epsilon):
    """The pre-activation gates of layer ``k`` (numpy reference: ``_lstm`` and ``_prepare_lstm``)."""
    bias = weights[f"bias_ih.{k}"] + weights[f"bias_hh.{k}"]
    if not layer_norm:
        return inp @ weights[f"weight_ih.{k}"].T + h @ weights[f"weight_hh.{k}"].T + bias
    bias = weights[f"ln_ih_bias.{k}"] + weights[f"ln_hh_bias.{k}"] + bias
    gates = _normalised(inp @ weights[f"weight_ih.{k}"].T, epsilon) * weights[f"ln_ih_gain.{k}"]
    return gates + _normalised(h @ weights[f"weight_hh.{k}"].T, epsilon) * weights[f"ln_hh_gain.{k}"] + bias


def _lstm(x, h, c, episode_start=None, *, layers, hidden_size, layer_norm=False, layer_norm_epsilon=1e-5, **weights):
    if episode_start is not None:
        keep = (1.0 - episode_start.to(_F32)).reshape(1, -1, 1)
        h, c = h * keep, c * keep
    hs, cs = [], []
    inp = x
    for k in range(layers):
        gates = _lstm_gates(inp, h[k], k, weights, bool(layer_norm), float(layer_norm_epsilon))
        i, f, g, o = torch.chunk(gates, 4, dim=-1)
        c_k = sigmoid(f) * c[k] + sigmoid(i) * torch.tanh(g)
        cell = c_k
        if layer_norm:
            cell = _normalised(c_k, float(layer_norm_epsilon)) * weights[f"ln_c_gain.{k}"] + weights[f"ln_c_bias.{k}"]
        inp = sigmoid(o) * torch.tanh(cell)
        hs.append(inp)
        cs.append(c_k)
    return inp.to(_F32), torch.stack(hs).to(_F32), torch.stack(cs).to(_F32)


# ---- action selection --------------------------------------------------------------------


def _masked(logits, mask):
    if mask is None:
        return logits
    mask = mask.to(torch.bool).reshape(logits.shape)
    return torch.where(mask, logits, torch.full_like(logits, HUGE_NEG))


def _sample_or_argmax(logits, ctx):
    if ctx.deterministic:
        return logits.argmax(dim=-1)
    u = torch.rand(logits.shape, generator=ctx.generator, device=logits.device, dtype=torch.float64)
    return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)


def _check_mask_rows(mask, sizes, batch):
    if mask is None or not checks_values():
        return
    rows = mask.to(torch.bool).reshape(batch, -1)
    for part in torch.split(rows, list(sizes), dim=1):
        if not bool(part.any(dim=1).all()):
            raise ObservationError("an action mask allows no action at all for some row; allow at least one")


def _categorical(logits, mask=None, *, ctx):
    if mask is None and ctx.deterministic:
        return logits.argmax(dim=-1)
    _check_mask_rows(mask, [logits.shape[-1]], logits.shape[0])
    return _sample_or_argmax(_masked(logits, mask), ctx).to(torch.int64)


def _multi_categorical(logits, mask=None, *, sizes, ctx):
    _check_mask_rows(mask, sizes, logits.shape[0])
    splits = torch.split(_masked(logits, mask), [int(s) for s in sizes], dim=-1)
    return torch.stack([_sample_or_argmax(s, ctx) for s in splits], dim=1).to(torch.int64)


def _bernoulli(logits, *, ctx):
    probs = sigmoid(logits)
    if ctx.deterministic:
        return (probs > 0.5).to(_F32)
    u = torch.rand(probs.shape, generator=ctx.generator, device=probs.device, dtype=torch.float64)
    return (u < probs).to(_F32)


def _normal(shape, like, ctx):
    return torch.randn(shape, generator=ctx.generator, device=like.device, dtype=like.dtype)


def _gaussian(mean, log_std=None, *, ctx, log_std_param=None):
    if ctx.deterministic:
        return mean
    log_std = log_std_param if log_std is None else log_std
    return mean + torch.exp(log_std) * _normal(mean.shape, mean, ctx)


def _gsde(mean, latent, *, log_std, use_expln, full_std, epsilon, ctx):
    if ctx.deterministic:
        return mean
    if use_expln:
        below = torch.exp(log_std) * (log_std <= 0)
        safe = log_std * (log_std > 0) + epsilon
        std = below + (torch.log1p(safe) + 1.0) * (log_std > 0)
    else:
        std = torch.exp(log_std)
    if not full_std:
        std = torch.ones((latent.shape[1], mean.shape[1]), dtype=std.dtype, device=std.device) * std
    return mean + latent @ (_normal(std.shape, mean, ctx) * std).to(latent.dtype)


def _greedy(q, *, epsilon, n, ctx):
    action = q.argmax(dim=-1)
    if ctx.deterministic or epsilon <= 0:
        return action
    gen, device = ctx.generator, q.device
    explore = torch.rand(action.shape, generator=gen, device=device, dtype=torch.float64) < epsilon
    return torch.where(explore, torch.randint(0, int(n), action.shape, generator=gen, device=device), action)


# ---- registry ----------------------------------------------------------------------------

# ---- element-wise arithmetic, pooling, slices -----------------------------------------------


def _binary(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``x OP other``: ``other`` the second input, else the ``other`` parameter (the numpy reference's ``_binary``)."""
    return lambda x, y=None, *, other=None: fn(x, other if y is None else y)


def _avg_pool2d(x, *, kernel, stride, padding, count_include_pad):
    return F.avg_pool2d(x, tuple(kernel), tuple(stride), tuple(padding), count_include_pad=bool(count_include_pad))


def _slice(x, *, axis, start, end, step):
    return x[(slice(None),) * (axis % x.ndim) + (slice(start, end, step),)]


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    **ACTIVATIONS,
    "exp": torch.exp,
    "add": _binary(torch.add),
    "sub": _binary(torch.sub),
    "mul": _binary(torch.mul),
    "div": _binary(torch.true_divide),
    "max_pool2d": lambda x, kernel, stride, padding, dilation: F.max_pool2d(
        x, tuple(kernel), tuple(stride), tuple(padding), tuple(dilation)
    ),
    "avg_pool2d": _avg_pool2d,
    "slice": _slice,
    "cast": lambda x, dtype: x.to(torch_dtype(dtype)),
    "normalize": _normalize,
    "divide": lambda x, divisor: x.to(_F32) / torch.tensor(divisor, dtype=_F32, device=x.device),
    "one_hot": _one_hot,
    "multi_one_hot": _multi_one_hot,
    "flatten": lambda x: x if x.ndim == 2 else x.reshape(x.shape[0], -1),
    "concat": lambda *xs: torch.cat(xs, dim=-1),
    "linear": _linear,
    "conv2d": _conv2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "reshape": lambda x, shape: x.reshape((x.shape[0], *shape)),
    "mean": lambda x, axis: x.mean(dim=axis),
    "clip": lambda x, min, max: torch.clamp(x, min, max).to(x.dtype),  # noqa: A002
    "lstm": _lstm,
    "categorical": _categorical,
    "multi_categorical": _multi_categorical,
    "bernoulli": _bernoulli,
    "gaussian": _gaussian,
    "gsde": _gsde,
    "greedy": _greedy,
    # SB3's unscale_action, term for term: low + (0.5 * (a + 1.0) * (high - low)).
    "rescale_to_bounds": lambda a, low, high: low + (0.5 * (a + 1.0) * (high - low)),
    "clip_to_bounds": lambda a, low, high: torch.minimum(torch.maximum(a, low), high),
}
"""op name -> torch function; the keys are exactly :data:`rlport.graph.schema.OPS`."""

RENAMED_PARAMS = {("gaussian", "log_std"): "log_std_param"}  # a parameter that shares an input's name
