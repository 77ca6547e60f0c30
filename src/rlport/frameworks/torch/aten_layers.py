"""ATen ops of network layers (activations, linear, convolution, norms, pooling) -> graph ops.

One small function per op family; :data:`LAYERS` maps the ATen op's name to it. See
:mod:`rlport.frameworks.torch.aten` for the conventions. This module imports torch: import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rlport.errors import UnsupportedError
from rlport.frameworks.torch.values import Call, Const, Emitter, Var, as_tensor, axis_of, computed, constant

__all__ = ["LAYERS"]

_SELU = (1.6732632423543772848170429916717, 1.0507009873554804934193349852946)


# ---- activations -------------------------------------------------------------------------


def _unary(op: str, *names: str, **defaults: Any) -> Callable[..., Var]:
    """An activation whose positional arguments after ``x`` are the graph op's attributes ``names``."""

    def emit(e: Emitter, call: Call, x: Any, *args: Any, **kwargs: Any) -> Var:
        attrs = dict(defaults)
        attrs.update(zip(names, args, strict=False))
        attrs.update({k: v for k, v in kwargs.items() if k in names})
        attrs = {
            k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in attrs.items()
        }
        x = computed(x, call.op)
        return e.add(op, [x], x.shape, attrs=attrs)

    return emit


def _elu(e: Emitter, call: Call, x: Any, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0) -> Var:
    x = computed(x, call.op)
    if scale == 1.0 and input_scale == 1.0:
        return e.add("elu", [x], x.shape, attrs={"alpha": float(alpha)})
    if scale == 1.0 and abs(input_scale * alpha - 1.0) < 1e-12:
        return e.add("celu", [x], x.shape, attrs={"alpha": float(alpha)})
    if (alpha, scale, input_scale) == (*_SELU, 1.0):
        return e.add("selu", [x], x.shape)
    raise UnsupportedError(f"elu with alpha={alpha}, scale={scale}, input_scale={input_scale}")


def _hardtanh(e: Emitter, call: Call, x: Any, min_val: float = -1.0, max_val: float = 1.0) -> Var:
    x = computed(x, call.op)
    if (min_val, max_val) == (0.0, 6.0):
        return e.add("relu6", [x], x.shape)
    return e.add("hardtanh", [x], x.shape, attrs={"min_val": float(min_val), "max_val": float(max_val)})


def _softmax(op: str) -> Callable[..., Var]:
    def emit(e: Emitter, call: Call, x: Any, dim: int, *rest: Any, **kwargs: Any) -> Var:
        x = computed(x, call.op)
        return e.add(op, [x], x.shape, attrs={"axis": axis_of(x, dim)})

    return emit


def _rrelu(e: Emitter, call: Call, x: Any, lower: float = 1 / 8, upper: float = 1 / 3, training: bool = False,
           *rest: Any) -> Var:  # fmt: skip
    if training:
        raise UnsupportedError("rrelu in training mode (random slopes); call module.eval() first")
    x = computed(x, call.op)
    return e.add("rrelu", [x], x.shape, attrs={"lower": float(lower), "upper": float(upper)})


def _prelu(e: Emitter, call: Call, x: Any, weight: Any) -> Var:
    x = computed(x, call.op)
    return e.add("prelu", [x], x.shape, {"weight": e.tensor(constant(weight, call.op), "prelu")})


def _dropout(e: Emitter, call: Call, x: Any, p: float = 0.5, train: bool | None = False, *rest: Any) -> Any:
    if train:
        raise UnsupportedError("dropout in training mode; call module.eval() first")
    return x


# ---- network layers ----------------------------------------------------------------------


def _linear(e: Emitter, call: Call, x: Any, weight: Any, bias: Any = None) -> Var:
    x, weight = computed(x, call.op), constant(weight, "linear's weight")
    bias_name = bias.name if isinstance(bias, Const) else None
    return e.linear(x, weight.tensor, None if bias is None else as_tensor(bias), (weight.name, bias_name))


def _weight_from_transposed(w_t: Const) -> tuple[torch.Tensor, str | None]:
    return w_t.tensor.T.contiguous(), w_t.transposed_of


def _addmm(e: Emitter, call: Call, bias: Any, x: Any, w_t: Any, beta: float = 1.0, alpha: float = 1.0) -> Var:
    x, w_t = computed(x, call.op), constant(w_t, "addmm's second matrix")
    if beta != 1.0 or alpha != 1.0:
        raise UnsupportedError(f"addmm with beta={beta}, alpha={alpha}")
    weight, name = _weight_from_transposed(w_t)
    bias = constant(bias, "addmm's bias")
    return e.linear(x, weight, bias.tensor.reshape(-1), (name, bias.name))


def _mm(e: Emitter, call: Call, x: Any, w_t: Any) -> Var:
    x, w_t = computed(x, call.op), constant(w_t, f"{call.op}'s second matrix")
    if w_t.tensor.ndim != 2:
        raise UnsupportedError(f"{call.op} with a constant of rank {w_t.tensor.ndim}; supported: a 2-d matrix")
    weight, name = _weight_from_transposed(w_t)
    return e.linear(x, weight, None, (name, None))


def _conv2d(e: Emitter, call: Call, x: Any, weight: Any, bias: Any = None, stride=(1, 1), padding=(0, 0),
            dilation=(1, 1), groups: int = 1) -> Var:  # fmt: skip
    x, weight = computed(x, call.op), constant(weight, "conv2d's weight")
    if isinstance(padding, str) or weight.tensor.ndim != 4:
        raise UnsupportedError(f"conv with padding={padding!r} and a rank-{weight.tensor.ndim} kernel; "
                               "supported: 2-d convolutions with explicit integer padding")  # fmt: skip
    pair = lambda v: [int(v[0]), int(v[-1])] if isinstance(v, (list, tuple)) else [int(v), int(v)]  # noqa: E731
    params = {"weight": e.tensor(weight, "conv.weight")}
    if bias is not None:
        params["bias"] = e.tensor(constant(bias, "conv2d's bias"), "conv.bias")
    attrs = {"stride": pair(stride), "padding": pair(padding), "dilation": pair(dilation), "groups": int(groups)}
    return e.add("conv2d", [x], call.out, params, attrs)


def _convolution(e: Emitter, call: Call, x, weight, bias, stride, padding, dilation, transposed, output_padding,
                 groups) -> Var:  # fmt: skip
    if transposed:
        raise UnsupportedError("transposed convolutions have no graph op")
    return _conv2d(e, call, x, weight, bias, stride, padding, dilation, groups)


def _batch_norm(e: Emitter, call: Call, x, weight, bias, mean, var, training: bool = False, momentum=0.1,
                eps: float = 1e-5, *rest: Any) -> Var:  # fmt: skip
    if training or mean is None or var is None:
        raise UnsupportedError("batch norm in training mode or without running statistics; call module.eval() first")
    x = computed(x, call.op)
    params = {
        "mean": e.tensor(constant(mean, "running_mean"), "bn.mean"),
        "var": e.tensor(constant(var, "var"), "bn.var"),
    }
    if weight is not None:
        params["weight"] = e.tensor(constant(weight, "batch norm's weight"), "bn.weight")
    if bias is not None:
        params["bias"] = e.tensor(constant(bias, "batch norm's bias"), "bn.bias")
    return e.add("batch_norm", [x], x.shape, params, {"epsilon": float(eps)})


def _bn_no_training(e: Emitter, call: Call, x, weight, bias, mean, var, momentum, eps) -> tuple:
    return (_batch_norm(e, call, x, weight, bias, mean, var, False, momentum, eps), None, None)


def _layer_norm(e: Emitter, call: Call, x, normalized_shape, weight=None, bias=None, eps: float = 1e-5, *rest) -> Var:
    x = computed(x, call.op)
    params = {}
    if weight is not None:
        params["weight"] = e.tensor(constant(weight, "layer norm's weight"), "ln.weight")
    if bias is not None:
        params["bias"] = e.tensor(constant(bias, "layer norm's bias"), "ln.bias")
    attrs = {"epsilon": float(eps), "axes": len(normalized_shape)}
    return e.add("layer_norm", [x], x.shape, params, attrs)


def _native_layer_norm(e: Emitter, call: Call, x, normalized_shape, weight, bias, eps) -> tuple:
    return (_layer_norm(e, call, x, normalized_shape, weight, bias, eps), None, None)


# ---- pooling -------------------------------------------------------------------------------


def _pool_pair(value: Any, default: Any = None) -> list[int]:
    if value is None or (isinstance(value, (list, tuple)) and not value):
        value = default
    return [int(value[0]), int(value[-1])] if isinstance(value, (list, tuple)) else [int(value), int(value)]


def _max_pool2d(e: Emitter, call: Call, x: Any, kernel: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                ceil_mode: bool = False) -> Any:  # fmt: skip
    x = computed(x, call.op)
    if ceil_mode or x.rank != 4:
        raise UnsupportedError(f"max pooling with ceil_mode={ceil_mode} on a rank-{x.rank} value; "
                               "supported: 2-d pooling with ceil_mode=False")  # fmt: skip
    out = call.out[0] if isinstance(call.out, list) else call.out
    attrs = {"kernel": _pool_pair(kernel), "stride": _pool_pair(stride, kernel), "padding": _pool_pair(padding),
             "dilation": _pool_pair(dilation)}  # fmt: skip
    y = e.add("max_pool2d", [x], out, attrs=attrs)
    return (y, None) if isinstance(call.out, list) else y


def _avg_pool2d(
    e: Emitter, call: Call, x: Any, kernel: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
    count_include_pad: bool = True, divisor_override: Any = None,
) -> Var:  # fmt: skip
    x = computed(x, call.op)
    if ceil_mode or divisor_override is not None or x.rank != 4:
        raise UnsupportedError(
            f"average pooling with ceil_mode={ceil_mode}, divisor_override={divisor_override} on a rank-{x.rank} "
            "value; supported: 2-d pooling, ceil_mode=False, no override"
        )
    attrs = {"kernel": _pool_pair(kernel), "stride": _pool_pair(stride, kernel), "padding": _pool_pair(padding),
             "count_include_pad": bool(count_include_pad)}  # fmt: skip
    return e.add("avg_pool2d", [x], call.out, attrs=attrs)


def _adaptive_pool2d(op: str) -> Callable[..., Any]:
    """Adaptive pooling whose output size divides the input's: a plain pooling with kernel = stride = H/oh, W/ow."""

    def emit(e: Emitter, call: Call, x: Any, output_size: Any) -> Any:
        x = computed(x, call.op)
        (oh, ow), (h, w) = _pool_pair(output_size), x.shape[-2:]
        if x.rank != 4 or h % oh or w % ow:
            raise UnsupportedError(
                f"adaptive pooling of {h}x{w} to {oh}x{ow}; supported: sizes that divide the input's"
            )
        attrs = {"kernel": [h // oh, w // ow], "stride": [h // oh, w // ow]}
        out = call.out[0] if isinstance(call.out, list) else call.out
        y = e.add(op, [x], out, attrs=attrs)
        return (y, None) if isinstance(call.out, list) else y

    return emit


LAYERS: dict[str, Callable[..., Any]] = {
    "relu": _unary("relu"),
    "relu6": _unary("relu6"),
    "leaky_relu": _unary("leaky_relu", "negative_slope", negative_slope=0.01),
    "elu": _elu,
    "celu": _unary("celu", "alpha", alpha=1.0),
    "selu": _unary("selu"),
    "gelu": _unary("gelu", "approximate", approximate="none"),
    "silu": _unary("silu"),
    "mish": _unary("mish"),
    "sigmoid": _unary("sigmoid"),
    "log_sigmoid": _unary("logsigmoid"),
    "hardsigmoid": _unary("hardsigmoid"),
    "hardswish": _unary("hardswish"),
    "hardtanh": _hardtanh,
    "tanh": _unary("tanh"),
    "softplus": _unary("softplus", "beta", "threshold", beta=1.0, threshold=20.0),
    "softmax": _softmax("softmax"),
    "_softmax": _softmax("softmax"),
    "log_softmax": _softmax("log_softmax"),
    "_log_softmax": _softmax("log_softmax"),
    "hardshrink": _unary("hardshrink", "lambd", lambd=0.5),
    "softshrink": _unary("softshrink", "lambd", lambd=0.5),
    "threshold": _unary("threshold", "threshold", "value"),
    "rrelu": _rrelu,
    "prelu": _prelu,
    "_prelu_kernel": _prelu,
    "dropout": _dropout,
    "feature_dropout": _dropout,
    "alpha_dropout": _dropout,
    "feature_alpha_dropout": _dropout,
    "linear": _linear,
    "addmm": _addmm,
    "mm": _mm,
    "matmul": _mm,
    "conv2d": _conv2d,
    "convolution": _convolution,
    "batch_norm": _batch_norm,
    "_native_batch_norm_legit_no_training": _bn_no_training,
    "layer_norm": _layer_norm,
    "native_layer_norm": _native_layer_norm,
    "max_pool2d": _max_pool2d,
    "max_pool2d_with_indices": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "adaptive_avg_pool2d": _adaptive_pool2d("avg_pool2d"),
    "adaptive_max_pool2d": _adaptive_pool2d("max_pool2d"),
    "exp": _unary("exp"),
}
"""ATen op name -> its translation (layers)."""
