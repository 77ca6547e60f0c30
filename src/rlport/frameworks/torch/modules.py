"""Translate torch modules (as SB3 policies build them) into graph ops.

Tensors keep the module's ``state_dict`` names (``prefix.0.weight``) so that a bundle's
tensors line up with the source model. Anything not listed raises
:class:`~rlport.errors.UnsupportedError` naming the layer and what is supported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlport.errors import UnsupportedError
from rlport.graph.builder import GraphBuilder

__all__ = ["emit_module", "SUPPORTED_LAYERS"]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _activation_attrs(module: Any) -> tuple[str, dict[str, Any]] | None:
    """The op and attributes of a torch activation module, or None if it is not one."""
    name = type(module).__name__
    simple = {
        "ReLU": "relu", "ReLU6": "relu6", "SELU": "selu", "SiLU": "silu", "Mish": "mish",
        "Sigmoid": "sigmoid", "LogSigmoid": "logsigmoid", "Hardsigmoid": "hardsigmoid",
        "Hardswish": "hardswish", "Tanh": "tanh", "Tanhshrink": "tanhshrink", "Softsign": "softsign",
    }  # fmt: skip
    if name in simple:
        return simple[name], {}
    with_attrs: dict[str, Callable[[Any], tuple[str, dict[str, Any]]]] = {
        "LeakyReLU": lambda m: ("leaky_relu", {"negative_slope": float(m.negative_slope)}),
        "ELU": lambda m: ("elu", {"alpha": float(m.alpha)}),
        "CELU": lambda m: ("celu", {"alpha": float(m.alpha)}),
        "GELU": lambda m: ("gelu", {"approximate": str(m.approximate)}),
        "Hardtanh": lambda m: ("hardtanh", {"min_val": float(m.min_val), "max_val": float(m.max_val)}),
        "Softplus": lambda m: ("softplus", {"beta": float(m.beta), "threshold": float(m.threshold)}),
        "Softmax": lambda m: ("softmax", {"axis": -1 if m.dim is None else int(m.dim)}),
        "LogSoftmax": lambda m: ("log_softmax", {"axis": -1 if m.dim is None else int(m.dim)}),
        "Hardshrink": lambda m: ("hardshrink", {"lambd": float(m.lambd)}),
        "Softshrink": lambda m: ("softshrink", {"lambd": float(m.lambd)}),
        "Threshold": lambda m: ("threshold", {"threshold": float(m.threshold), "value": float(m.value)}),
        "RReLU": lambda m: ("rrelu", {"lower": float(m.lower), "upper": float(m.upper)}),
    }
    if name in with_attrs:
        return with_attrs[name](module)
    return None


def _linear(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    params = {"weight": b.tensor(_join(prefix, "weight"), m.weight)}
    if m.bias is not None:
        params["bias"] = b.tensor(_join(prefix, "bias"), m.bias)
    return b.add("linear", [x], params)


def _conv2d(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        raise UnsupportedError(
            f"Conv2d at {prefix!r} uses padding={m.padding!r}, padding_mode={m.padding_mode!r}; "
            "supported: explicit integer padding with padding_mode='zeros'"
        )
    params = {"weight": b.tensor(_join(prefix, "weight"), m.weight)}
    if m.bias is not None:
        params["bias"] = b.tensor(_join(prefix, "bias"), m.bias)
    attrs = {
        "stride": list(m.stride),
        "padding": list(m.padding),
        "dilation": list(m.dilation),
        "groups": int(m.groups),
    }
    return b.add("conv2d", [x], params, attrs)


def _eval_norm(b: GraphBuilder, m: Any, x: str, prefix: str, names: tuple[str, str, str]) -> str:
    """Eval-mode batch normalisation; ``names`` are the module's mean, var and scale attributes."""
    mean, var, scale = names
    params = {
        "mean": b.tensor(_join(prefix, mean), getattr(m, mean)),
        "var": b.tensor(_join(prefix, var), getattr(m, var)),
    }
    if m.affine:
        params["weight"] = b.tensor(_join(prefix, scale), getattr(m, scale))
        params["bias"] = b.tensor(_join(prefix, "bias"), m.bias)
    return b.add("batch_norm", [x], params, {"epsilon": float(m.eps)})


def _batch_norm(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    if getattr(m, "running_mean", None) is None:
        raise UnsupportedError(f"BatchNorm at {prefix!r} keeps no running statistics (track_running_stats=False)")
    return _eval_norm(b, m, x, prefix, ("running_mean", "running_var", "weight"))


def _batch_renorm(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    """sb3-contrib's BatchRenorm (CrossQ): in eval mode a batch norm over its running averages."""
    return _eval_norm(b, m, x, prefix, ("ra_mean", "ra_var", "scale"))


def _layer_norm(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    params = {}
    if m.weight is not None:
        params["weight"] = b.tensor(_join(prefix, "weight"), m.weight)
    if m.bias is not None:
        params["bias"] = b.tensor(_join(prefix, "bias"), m.bias)
    attrs = {"epsilon": float(m.eps), "axes": len(m.normalized_shape)}
    return b.add("layer_norm", [x], params, attrs)


def _flatten(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    if m.start_dim != 1 or m.end_dim != -1:
        raise UnsupportedError(f"Flatten at {prefix!r} with start_dim={m.start_dim}, end_dim={m.end_dim}")
    return b.add("flatten", [x])


def _prelu(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    return b.add("prelu", [x], {"weight": b.tensor(_join(prefix, "weight"), m.weight)})


def _sequential(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    for name, child in m.named_children():
        x = emit_module(b, child, x, _join(prefix, name))
    return x


def _nature_cnn(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    x = emit_module(b, m.cnn, x, _join(prefix, "cnn"))
    return emit_module(b, m.linear, x, _join(prefix, "linear"))


def _flatten_extractor(b: GraphBuilder, m: Any, x: str, prefix: str) -> str:
    return b.add("flatten", [x])


_LAYERS: dict[str, Callable[[GraphBuilder, Any, str, str], str]] = {
    "Linear": _linear,
    "Conv2d": _conv2d,
    "BatchNorm1d": _batch_norm,
    "BatchRenorm1d": _batch_renorm,
    "LayerNorm": _layer_norm,
    "Flatten": _flatten,
    "PReLU": _prelu,
    "Sequential": _sequential,
    "NatureCNN": _nature_cnn,
    "FlattenExtractor": _flatten_extractor,
}
_PASS_THROUGH = {"Identity", "Dropout", "AlphaDropout", "Dropout1d", "Dropout2d"}

SUPPORTED_LAYERS = sorted(
    set(_LAYERS)
    | _PASS_THROUGH
    | {"ReLU", "ReLU6", "SELU", "SiLU", "Mish", "Sigmoid", "LogSigmoid", "Hardsigmoid", "Hardswish",
       "Tanh", "Tanhshrink", "Softsign", "LeakyReLU", "ELU", "CELU", "GELU", "Hardtanh", "Softplus",
       "Softmax", "LogSoftmax", "Hardshrink", "Softshrink", "Threshold", "RReLU"}
)  # fmt: skip


def emit_module(b: GraphBuilder, module: Any, x: str, prefix: str) -> str:
    """Append the ops computing ``module(x)``; return the output value's name."""
    name = type(module).__name__
    if name in _PASS_THROUGH:
        return x
    activation = _activation_attrs(module)
    if activation is not None:
        op, attrs = activation
        return b.add(op, [x], attrs=attrs)
    if name in _LAYERS:
        return _LAYERS[name](b, module, x, prefix)
    raise UnsupportedError(_unsupported_message(module, prefix))


def _unsupported_message(module: Any, prefix: str) -> str:
    """Name the layer, the unsupported layers inside it (a custom module), and what is supported."""
    name = type(module).__name__
    children = [m for m in getattr(module, "modules", list)() if m is not module]
    inner = sorted({type(m).__name__ for m in children} - set(SUPPORTED_LAYERS) - {"ModuleDict", "ModuleList"})
    if inner:
        detail = f"; inside it: {', '.join(inner)} (not supported either)"
    elif children:
        detail = "; its layers are supported, but rlport cannot translate a custom module's forward()"
    else:
        detail = ""
    return (
        f"layer {name} (at {prefix or 'the top level'!r}) is not supported{detail}; supported layers: "
        f"{', '.join(SUPPORTED_LAYERS)}. Rebuild the policy from these layers, or open an issue"
    )
