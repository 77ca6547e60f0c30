"""The op set of the policy graph, version 1.0: names, arity, parameters and attributes.

This module is backend-neutral: it says what each op takes, not how it is computed. Each
runtime (numpy today; ONNX and torch later) registers one implementation per op name, and a
test checks that every runtime implements every op listed here. ``docs/FORMAT.md`` section 4.1
gives the semantics; its per-op table is generated from this module (``tools/format_table.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlport.errors import GraphError, short

__all__ = [
    "OpSchema",
    "OPS",
    "REQUIRED",
    "ATTR_TYPES",
    "op_schema",
    "lstm_params",
    "LSTM_ROLES",
    "LSTM_LAYER_NORM_ROLES",
]

MAX_LSTM_LAYERS = 1024
"""The most layers an ``lstm`` node may have (each needs four tensors, ten with ``layer_norm``)."""

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
        attr_types: attribute name -> its JSON type (one of :data:`ATTR_TYPES`); an attribute not
            listed has the type of its default (see :meth:`attr_type`).
        passthrough: for an op that always returns one of its inputs unchanged (``identity``),
            that input's position: a backend may alias the value instead of running the op.
        output_dtype: the dtype of the outputs, in words (for docs/FORMAT.md's op table).
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
    attr_types: dict[str, str] = field(default_factory=dict)
    passthrough: int | None = None
    output_dtype: str = "the input's float dtype (float32 for an integer or bool input)"

    def attr_type(self, name: str) -> str:
        """The JSON type of attribute ``name``: declared, or that of its default."""
        if name in self.attr_types:
            return self.attr_types[name]
        return _type_of(self.attrs[name])

    def param_roles(self, attrs: dict[str, Any]) -> dict[str, int | None]:
        """The parameter roles (and ranks) this op needs with these attributes."""
        if self.dynamic_params is not None:
            return self.dynamic_params(attrs)
        return self.params


ATTR_TYPES: dict[str, str] = {
    "boolean": "JSON `true` or `false`",
    "integer": "a JSON number without fraction or exponent (`16`, not `16.0`)",
    "positive integer": "an integer of at least 1",
    "number": "any JSON number (`255` or `255.0`), not a boolean or a string",
    "string": "a JSON string",
    "dtype": "a JSON string naming a dtype (for `cast`: one of the names of section 4.2)",
    "integer list": "a JSON array of integers",
    "integer pair": "a JSON array of exactly 2 integers",
}
"""The JSON type an attribute may have -> what it accepts (docs/FORMAT.md section 4.1)."""


def _type_of(default: Any) -> str:
    """The JSON type of a default value."""
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "string"
    raise TypeError(f"no JSON type for default {default!r}: declare it in attr_types")


LSTM_ROLES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
"""The parameters of each ``lstm`` layer (torch ``nn.LSTM``'s, by layer index ``k``)."""
LSTM_LAYER_NORM_ROLES = ("ln_ih_gain", "ln_ih_bias", "ln_hh_gain", "ln_hh_bias", "ln_c_gain", "ln_c_bias")
"""The six more parameters of each layer of an ``lstm`` with ``layer_norm`` (SB2's layer-normalised cell)."""


def lstm_params(attrs: dict[str, Any]) -> dict[str, int | None]:
    """Per-layer parameter roles of the ``lstm`` op: four, and six more with ``layer_norm``."""
    layers = attrs.get("layers", 0)
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= MAX_LSTM_LAYERS:
        raise GraphError(
            "op 'lstm': attribute 'layers' must be a positive integer "
            f"(at most {MAX_LSTM_LAYERS}), found {short(layers)}"
        )
    kinds = {role: 2 if role.startswith("weight") else 1 for role in LSTM_ROLES}
    if bool(attrs.get("layer_norm", False)):  # a non-boolean is refused by its attribute type first
        kinds.update((role, 1) for role in LSTM_LAYER_NORM_ROLES)
    return {f"{role}.{k}": rank for k in range(layers) for role, rank in kinds.items()}


def _unary(name: str, **attrs: Any) -> OpSchema:
    return OpSchema(name, attrs=attrs)


_F32_OUT = "float32"
_INT_OUT = "int64"
_SAME_OUT = "the input's dtype"
_PROMOTED_F32 = "`result_type(x, weight, float32)`"
_MEAN_OUT = "the mean's dtype"


_ACTIVATIONS = [
    OpSchema("identity", passthrough=0, output_dtype=_SAME_OUT),
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
    OpSchema(
        "threshold",
        attrs={"threshold": REQUIRED, "value": REQUIRED},
        attr_types={"threshold": "number", "value": "number"},
    ),
    _unary("rrelu", lower=1.0 / 8.0, upper=1.0 / 3.0),
    OpSchema("prelu", params={"weight": 1}),
    _unary("exp"),
]

_PREPROCESS = [
    OpSchema("cast", attrs={"dtype": REQUIRED}, attr_types={"dtype": "dtype"}, output_dtype="`dtype`"),
    OpSchema(
        "normalize",
        params={"mean": None, "var": None},
        attrs={"epsilon": 1e-8, "clip": 10.0},
        output_dtype=_F32_OUT,
    ),
    OpSchema("divide", attrs={"divisor": REQUIRED}, attr_types={"divisor": "number"}, output_dtype=_F32_OUT),
    OpSchema("one_hot", attrs={"n": REQUIRED}, attr_types={"n": "integer"}, output_dtype=_F32_OUT),
    OpSchema("multi_one_hot", attrs={"sizes": REQUIRED}, attr_types={"sizes": "integer list"}, output_dtype=_F32_OUT),
    OpSchema("flatten", output_dtype=_SAME_OUT),
    OpSchema("concat", inputs=(1, 64), output_dtype="the inputs' dtypes promoted (numpy `result_type`)"),
]

_BINARY_OUT = "`result_type(x, other)` (both float)"


def _binary(name: str) -> OpSchema:
    """Element-wise ``x OP other``: ``other`` a second input or the ``other`` parameter (exactly one of them)."""
    return OpSchema(name, inputs=(1, 2), params={"other": None}, optional_params=frozenset({"other"}),
                    output_dtype=_BINARY_OUT)  # fmt: skip


_POOL_PAIRS = {"kernel": "integer pair", "stride": "integer pair", "padding": "integer pair"}

_NETWORK = [
    OpSchema(
        "linear",
        params={"weight": 2, "bias": 1},
        optional_params=frozenset({"bias"}),
        output_dtype=_PROMOTED_F32,
    ),
    OpSchema(
        "conv2d",
        params={"weight": 4, "bias": 1},
        optional_params=frozenset({"bias"}),
        attrs={"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1},
        attr_types={"stride": "integer pair", "padding": "integer pair", "dilation": "integer pair"},
        output_dtype=_PROMOTED_F32,
    ),
    OpSchema(
        "batch_norm",
        params={"mean": 1, "var": 1, "weight": 1, "bias": 1},
        optional_params=frozenset({"weight", "bias"}),
        attrs={"epsilon": 1e-5},
        output_dtype="`result_type(x, float32)`",
    ),
    OpSchema(
        "layer_norm",
        params={"weight": None, "bias": None},
        optional_params=frozenset({"weight", "bias"}),
        attrs={"epsilon": 1e-5, "axes": 1},
    ),
    _binary("add"),
    _binary("sub"),
    _binary("mul"),
    _binary("div"),
    OpSchema(
        "max_pool2d",
        attrs={"kernel": REQUIRED, "stride": REQUIRED, "padding": [0, 0], "dilation": [1, 1]},
        attr_types={**_POOL_PAIRS, "dilation": "integer pair"},
        output_dtype=_SAME_OUT,
    ),
    OpSchema(
        "avg_pool2d",
        attrs={"kernel": REQUIRED, "stride": REQUIRED, "padding": [0, 0], "count_include_pad": True},
        attr_types=dict(_POOL_PAIRS),
        output_dtype=_SAME_OUT,
    ),
    OpSchema(
        "slice",
        attrs={"axis": REQUIRED, "start": REQUIRED, "end": REQUIRED, "step": 1},
        attr_types={"axis": "integer", "start": "integer", "end": "integer"},
        output_dtype=_SAME_OUT,
    ),
    OpSchema("reshape", attrs={"shape": REQUIRED}, attr_types={"shape": "integer list"}, output_dtype=_SAME_OUT),
    OpSchema(
        "mean",
        attrs={"axis": REQUIRED},
        attr_types={"axis": "integer"},
        output_dtype="the input's float dtype (float64 for an integer or bool input)",
    ),
    OpSchema(
        "clip",
        attrs={"min": REQUIRED, "max": REQUIRED},
        attr_types={"min": "number", "max": "number"},
        output_dtype=_SAME_OUT,
    ),
    OpSchema(
        "lstm",
        inputs=(4, 4),
        outputs=3,
        attrs={"layers": REQUIRED, "hidden_size": REQUIRED, "layer_norm": False, "layer_norm_epsilon": 1e-5},
        attr_types={"layers": "positive integer", "hidden_size": "positive integer"},
        dynamic_params=lstm_params,
        optional_inputs=frozenset({3}),
        output_dtype=_F32_OUT,
    ),
]

_ACTION = [
    OpSchema("categorical", inputs=(1, 2), stochastic=True, optional_inputs=frozenset({1}), output_dtype=_INT_OUT),
    OpSchema(
        "multi_categorical",
        inputs=(1, 2),
        attrs={"sizes": REQUIRED},
        attr_types={"sizes": "integer list"},
        stochastic=True,
        optional_inputs=frozenset({1}),
        output_dtype=_INT_OUT,
    ),
    OpSchema("bernoulli", stochastic=True, output_dtype=_F32_OUT),
    OpSchema(
        "gaussian",
        inputs=(1, 2),
        params={"log_std": None},
        optional_params=frozenset({"log_std"}),
        stochastic=True,
        mode_passthrough=0,
        output_dtype=_MEAN_OUT,
    ),
    OpSchema(
        "gsde",
        inputs=(2, 2),
        params={"log_std": 2},
        attrs={"use_expln": False, "full_std": True, "epsilon": 1e-6},
        stochastic=True,
        mode_passthrough=0,
        output_dtype=_MEAN_OUT,
    ),
    OpSchema(
        "greedy",
        attrs={"epsilon": 0.0, "n": REQUIRED},
        attr_types={"n": "integer"},
        stochastic=True,
        output_dtype=_INT_OUT,
    ),
    OpSchema("rescale_to_bounds", params={"low": None, "high": None}, output_dtype="`result_type(a, low, float32)`"),
    OpSchema("clip_to_bounds", params={"low": None, "high": None}, output_dtype="`result_type(a, low)`"),
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
