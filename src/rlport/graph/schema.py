"""The op set of the policy graph, version 1.0: names, arity, parameters and attributes.

This module is backend-neutral: it says what each op takes, not how it is computed. Each
runtime (numpy today; ONNX and torch later) registers one implementation per op name, and a
test checks that every runtime implements every op listed here. ``docs/FORMAT.md`` section 4.1
gives the semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlport.errors import GraphError, short

__all__ = ["OpSchema", "OPS", "REQUIRED", "op_schema", "lstm_params"]

MAX_LSTM_LAYERS = 1024
"""The most layers an ``lstm`` node may have (each needs four tensors)."""

REQUIRED = object()
"""Marks an attribute that has no default and must be given."""


@dataclass(frozen=True)
class OpSchema:
    """What one op takes and gives.

    Attributes:
        name: the op name used in the manifest.
        inputs: (minimum, maximum) number of value inputs.
        outputs: number of value outputs.
        params: tensor parameter role -> expected rank (None: any rank).
        optional_params: the roles in ``params`` that may be left out.
        attrs: attribute name -> default value (``REQUIRED`` when it must be given).
        stochastic: whether the op reads the runtime's deterministic flag and random generator.
        dynamic_params: for ops whose parameter roles depend on attributes (``lstm``).
        optional_inputs: positions (from 0) of inputs that may be absent at run time (a mask).
        mode_passthrough: for a stochastic op whose deterministic result is one of its inputs
            unchanged (a Gaussian's mode is its mean), that input's position. A runtime may then
            skip computing the other inputs when acting deterministically.
        attr_choices: attribute name -> the only values it may take (``gelu``'s ``approximate``).
    """

    name: str
    inputs: tuple[int, int] = (1, 1)
    outputs: int = 1
    params: dict[str, int | None] = field(default_factory=dict)
    optional_params: frozenset[str] = frozenset()
    attrs: dict[str, Any] = field(default_factory=dict)
    stochastic: bool = False
    dynamic_params: Callable[[dict[str, Any]], dict[str, int | None]] | None = None
    optional_inputs: frozenset[int] = frozenset()
    mode_passthrough: int | None = None
    attr_choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def param_roles(self, attrs: dict[str, Any]) -> dict[str, int | None]:
        """The parameter roles (and ranks) this op needs with these attributes."""
        if self.dynamic_params is not None:
            return self.dynamic_params(attrs)
        return self.params


def lstm_params(attrs: dict[str, Any]) -> dict[str, int | None]:
    """Per-layer parameter roles of the ``lstm`` op."""
    layers = attrs.get("layers", 0)
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= MAX_LSTM_LAYERS:
        raise GraphError(
            "op 'lstm': attribute 'layers' must be a positive integer "
            f"(at most {MAX_LSTM_LAYERS}), found {short(layers)}"
        )
    roles: dict[str, int | None] = {}
    for k in range(layers):
        roles.update({f"weight_ih.{k}": 2, f"weight_hh.{k}": 2, f"bias_ih.{k}": 1, f"bias_hh.{k}": 1})
    return roles


def _unary(name: str, **attrs: Any) -> OpSchema:
    return OpSchema(name, attrs=attrs)


_ACTIVATIONS = [
    _unary("identity"),
    _unary("relu"),
    _unary("relu6"),
    _unary("leaky_relu", negative_slope=0.01),
    _unary("elu", alpha=1.0),
    _unary("celu", alpha=1.0),
    _unary("selu"),
    OpSchema("gelu", attrs={"approximate": "none"}, attr_choices={"approximate": ("none", "tanh")}),
    _unary("silu"),
    _unary("mish"),
    _unary("sigmoid"),
    _unary("logsigmoid"),
    _unary("hardsigmoid"),
    _unary("hardswish"),
    _unary("hardtanh", min_val=-1.0, max_val=1.0),
    _unary("tanh"),
    _unary("tanhshrink"),
    _unary("softplus", beta=1.0, threshold=20.0),
    _unary("softsign"),
    _unary("softmax", axis=-1),
    _unary("log_softmax", axis=-1),
    _unary("hardshrink", lambd=0.5),
    _unary("softshrink", lambd=0.5),
    _unary("threshold", threshold=REQUIRED, value=REQUIRED),
    _unary("rrelu", lower=1.0 / 8.0, upper=1.0 / 3.0),
    OpSchema("prelu", params={"weight": 1}),
]

_PREPROCESS = [
    _unary("cast", dtype=REQUIRED),
    OpSchema("normalize", params={"mean": None, "var": None}, attrs={"epsilon": 1e-8, "clip": 10.0}),
    _unary("divide", divisor=REQUIRED),
    _unary("one_hot", n=REQUIRED),
    _unary("multi_one_hot", sizes=REQUIRED),
    _unary("flatten"),
    OpSchema("concat", inputs=(1, 64)),
]

_NETWORK = [
    OpSchema("linear", params={"weight": 2, "bias": 1}, optional_params=frozenset({"bias"})),
    OpSchema(
        "conv2d",
        params={"weight": 4, "bias": 1},
        optional_params=frozenset({"bias"}),
        attrs={"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1},
    ),
    OpSchema(
        "batch_norm",
        params={"mean": 1, "var": 1, "weight": 1, "bias": 1},
        optional_params=frozenset({"weight", "bias"}),
        attrs={"epsilon": 1e-5},
    ),
    OpSchema(
        "layer_norm",
        params={"weight": None, "bias": None},
        optional_params=frozenset({"weight", "bias"}),
        attrs={"epsilon": 1e-5, "axes": 1},
    ),
    _unary("reshape", shape=REQUIRED),
    _unary("mean", axis=REQUIRED),
    _unary("clip", min=REQUIRED, max=REQUIRED),
    OpSchema(
        "lstm",
        inputs=(4, 4),
        outputs=3,
        attrs={"layers": REQUIRED, "hidden_size": REQUIRED},
        dynamic_params=lstm_params,
        optional_inputs=frozenset({3}),
    ),
]

_ACTION = [
    OpSchema("categorical", inputs=(1, 2), stochastic=True, optional_inputs=frozenset({1})),
    OpSchema(
        "multi_categorical",
        inputs=(1, 2),
        attrs={"sizes": REQUIRED},
        stochastic=True,
        optional_inputs=frozenset({1}),
    ),
    OpSchema("bernoulli", stochastic=True),
    OpSchema(
        "gaussian",
        inputs=(1, 2),
        params={"log_std": None},
        optional_params=frozenset({"log_std"}),
        stochastic=True,
        mode_passthrough=0,
    ),
    OpSchema(
        "gsde",
        inputs=(2, 2),
        params={"log_std": 2},
        attrs={"use_expln": False, "full_std": True, "epsilon": 1e-6},
        stochastic=True,
        mode_passthrough=0,
    ),
    OpSchema("greedy", attrs={"epsilon": 0.0, "n": REQUIRED}, stochastic=True),
    OpSchema("rescale_to_bounds", params={"low": None, "high": None}),
    OpSchema("clip_to_bounds", params={"low": None, "high": None}),
]

OPS: dict[str, OpSchema] = {op.name: op for op in _ACTIVATIONS + _PREPROCESS + _NETWORK + _ACTION}
"""Every op of format version 1.0, by name."""


def op_schema(name: str) -> OpSchema:
    """Look an op up, or raise :class:`~rlport.errors.GraphError` listing the known ones."""
    try:
        return OPS[name]
    except KeyError:
        raise GraphError(
            f"unknown op {short(name)}; format 1.0 supports: {', '.join(sorted(OPS))}. "
            "The bundle may need a newer rlport (pip install -U rlport)"
        ) from None
