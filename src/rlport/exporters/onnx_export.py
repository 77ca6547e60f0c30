"""Export a bundle's policy graph to ONNX: raw observation in, deterministic action out.

The ONNX graph computes what the numpy runtime computes with ``deterministic=True``
(docs/FORMAT.md section 4.1), op for op and dtype for dtype: the numpy runtime is run once on a
dummy batch to learn the dtype of every value, and each op is emitted so that it gives the same
dtype. Stochastic ops take their mode (argmax, the Gaussian's mean), so branches that only feed
sampling (a log-std head) are left out. The batch dimension is dynamic.

Example:
    >>> import rlport
    >>> from rlport.exporters import export_onnx
    >>> export_onnx(rlport.Bundle.load("cartpole.rlp"), "cartpole.onnx")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.bundle.container import write_atomic
from rlport.bundle.spaces import dummy_observation
from rlport.errors import UnsupportedError, require
from rlport.graph.schema import op_schema
from rlport.runtimes.numpy_ops import HUGE_NEG, bind

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["export_onnx", "onnx_model", "EMITTERS", "MIN_OPSET", "METADATA_KEY"]

MIN_OPSET = 17
"""The oldest ONNX opset the exporter writes (LayerNormalization-era semantics, Split with sizes)."""
METADATA_KEY = "rlport.summary"
"""The ``metadata_props`` key holding ``json.dumps(bundle.summary())``."""
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)
_BATCH = "batch"


def _onnx():
    return require("onnx", "onnx", "ONNX export")


# ---- building ----------------------------------------------------------------------------


class _Builder:
    """Collects ONNX nodes and initializers and remembers the numpy dtype of every value."""

    def __init__(self, opset: int, types: dict[str, np.dtype]) -> None:
        onnx = _onnx()
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.opset = opset
        self.types = dict(types)
        self.ranks: dict[str, int] = {}
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._taken = set(types)
        self._count = 0
        self._params: dict[tuple, str] = {}
        self.expected: np.dtype = _F32  # the numpy dtype of the current node's first output

    def fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{hint}:{self._count}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def const(self, array: Any, dtype: Any = None, hint: str = "const") -> str:
        array = np.asarray(array, dtype=dtype)  # (ascontiguousarray would make scalars 1-d)
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        self.types[name] = array.dtype
        return name

    def param(self, tensor: str, array: np.ndarray, dtype: Any, shape: tuple[int, ...] | None = None) -> str:
        """A (cast, reshaped) weight as an initializer, shared by the nodes that use it."""
        key = (tensor, np.dtype(dtype).str, shape)
        if key not in self._params:
            value = array.astype(dtype)
            self._params[key] = self.const(value if shape is None else value.reshape(shape), hint=tensor)
        return self._params[key]

    def scalar(self, value: float, like: str) -> str:
        return self.const(value, self.types[like])

    def op(self, op_type: str, inputs: list[str], dtype: Any = None, n_out: int = 1, **attrs: Any) -> Any:
        """Append a node; its outputs have ``dtype`` (by default, the first input's)."""
        outputs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outputs, **attrs))
        out_type = np.dtype(dtype) if dtype is not None else self.types.get(inputs[0])
        for name in outputs:
            if out_type is not None:
                self.types[name] = out_type
        return outputs[0] if n_out == 1 else outputs

    def cast(self, name: str, dtype: Any) -> str:
        dtype = np.dtype(dtype)
        if self.types.get(name) == dtype:
            return name
        return self.op("Cast", [name], dtype, to=self.helper.np_dtype_to_tensor_dtype(dtype))

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int) -> str:
        if self.opset >= 18 or op_type == "ReduceSum":
            return self.op(op_type, [x, self.const(axes, _I64)], keepdims=keepdims)
        return self.op(op_type, [x], axes=axes, keepdims=keepdims)


# ---- activations -------------------------------------------------------------------------


def _sigmoid(b: _Builder, x: str) -> str:
    """numpy_ops.sigmoid term for term: 0.5 * (1 + tanh(0.5 * x))."""
    half = b.scalar(0.5, x)
    t = b.op("Tanh", [b.op("Mul", [x, half])])
    return b.op("Mul", [b.op("Add", [t, b.scalar(1.0, x)]), half])


def _softplus(b: _Builder, x: str, beta: float = 1.0, threshold: float = 20.0) -> str:
    scaled = b.op("Mul", [x, b.scalar(beta, x)])
    exp = b.op("Exp", [b.op("Neg", [b.op("Abs", [scaled])])])
    log_add_exp = b.op("Add", [b.op("Relu", [scaled]), b.op("Log", [b.op("Add", [exp, b.scalar(1.0, x)])])])
    soft = b.op("Div", [log_add_exp, b.scalar(beta, x)])
    return b.op("Where", [b.op("Greater", [scaled, b.scalar(threshold, x)], bool), x, soft])


def _clip(b: _Builder, x: str, low: float, high: float) -> str:
    return b.op("Clip", [x, b.scalar(low, x), b.scalar(high, x)])


def _gelu(b: _Builder, x: str, approximate: str) -> str:
    if approximate == "tanh":
        cube = b.op("Mul", [b.op("Mul", [x, x]), x])
        inner = b.op("Add", [x, b.op("Mul", [cube, b.scalar(0.044715, x)])])
        gate = b.op("Tanh", [b.op("Mul", [inner, b.scalar(math.sqrt(2.0 / math.pi), x)])])
    else:
        gate = b.op("Erf", [b.op("Div", [x, b.scalar(math.sqrt(2.0), x)])])
    return b.op("Mul", [b.op("Mul", [x, b.scalar(0.5, x)]), b.op("Add", [gate, b.scalar(1.0, x)])])


def _prelu(b: _Builder, x: str, weight: np.ndarray, tensor: str) -> str:
    rank = b.ranks[x]
    shape = (-1,) + (1,) * (rank - 2) if weight.size > 1 and rank > 2 else (-1,)
    return b.op("PRelu", [x, b.param(tensor, weight, b.types[x], shape)])


def _where_greater(b: _Builder, x: str, test: str, threshold: float, other: Any) -> str:
    return b.op("Where", [b.op("Greater", [test, b.scalar(threshold, x)], bool), x, other])


def _hardsigmoid(b: _Builder, x: str) -> str:
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


def _normalize(b: _Builder, x: list[str], p: dict, a: dict) -> str:
    (mean, mean_name), (var, _) = p["mean"], p["var"]
    std = np.sqrt(var + a["epsilon"])  # as numpy_ops computes it at load
    dtype = np.result_type(b.types[x[0]], mean.dtype, std.dtype)  # SB3 normalises in float64
    centred = b.op("Sub", [b.cast(x[0], dtype), b.param(mean_name, mean, dtype)])
    scaled = b.op("Div", [centred, b.const(std, dtype, "std")])
    return b.cast(_clip(b, scaled, -a["clip"], a["clip"]), _F32)


def _one_hot(b: _Builder, index: str, sizes: list[int]) -> str:
    """Equal against a range: each column's hits lie in its own block of ``sum(sizes)``."""
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    index = b.cast(index, _I64)
    if len(sizes) > 1 or offsets.any():
        index = b.op("Add", [index, b.const(offsets)])
    hits = b.op("Equal", [b.op("Unsqueeze", [index, b.const([-1], _I64)]), b.const(np.arange(sum(sizes)))], bool)
    return b.cast(hits, _F32)


def _multi_one_hot(b: _Builder, x: list[str], p: dict, a: dict) -> str:
    return b.reduce("ReduceSum", _one_hot(b, x[0], [int(s) for s in a["sizes"]]), [1], keepdims=0)


def _linear(b: _Builder, x: list[str], p: dict, a: dict) -> str:
    weight, name = p["weight"]
    dtype = np.result_type(b.types[x[0]], weight.dtype)
    y = b.op("MatMul", [b.cast(x[0], dtype), b.param(name, np.ascontiguousarray(weight.T), dtype)])
    if "bias" in p:
        y = b.op("Add", [y, b.param(p["bias"][1], p["bias"][0], dtype)])
    return y


def _conv2d(b: _Builder, x: list[str], p: dict, a: dict) -> str:
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


def _batch_norm(b: _Builder, x: list[str], p: dict, a: dict) -> str:
    """numpy_ops._batch_norm: (x - mean) * scale + shift, with scale folded the same way."""
    mean, var = p["mean"][0], p["var"][0]
    scale = 1.0 / np.sqrt(var + a["epsilon"])
    if "weight" in p:
        scale = scale * p["weight"][0]
    shift = p["bias"][0] if "bias" in p else np.zeros_like(mean)
    shape = (1, -1) + (1,) * (b.ranks[x[0]] - 2)
    centred = b.op("Sub", [x[0], b.const(mean.reshape(shape), hint="bn_mean")])
    scaled = b.op("Mul", [centred, b.const(scale.astype(_F32).reshape(shape), hint="bn_scale")])
    return b.op("Add", [scaled, b.const(shift.reshape(shape), hint="bn_shift")])


def _layer_norm(b: _Builder, x: list[str], p: dict, a: dict) -> str:
    axes = list(range(-int(a["axes"]), 0))
    centred = b.op("Sub", [x[0], b.reduce("ReduceMean", x[0], axes, keepdims=1)])
    var = b.reduce("ReduceMean", b.op("Mul", [centred, centred]), axes, keepdims=1)
    y = b.op("Div", [centred, b.op("Sqrt", [b.op("Add", [var, b.scalar(a["epsilon"], x[0])])])])
    for role, op_type in (("weight", "Mul"), ("bias", "Add")):
        if role in p:
            y = b.op(op_type, [y, b.param(p[role][1], p[role][0], b.types[x[0]])])
    return y


def _lstm(b: _Builder, x: list[str], p: dict, a: dict) -> list[str]:
    """One step of torch's nn.LSTM per layer, gates i, f, g, o (numpy_ops._lstm)."""
    layers, hidden = int(a["layers"]), int(a["hidden_size"])
    dtype = np.result_type(b.types[x[0]], b.types[x[1]], b.types[x[2]], _F32)
    inp, h, c = (b.cast(name, dtype) for name in x[:3])
    if len(x) > 3:
        keep = b.op("Sub", [b.const(1.0, _F32), b.cast(x[3], _F32)])
        keep = b.cast(b.op("Reshape", [keep, b.const([1, -1, 1], _I64)]), dtype)
        h, c = b.op("Mul", [h, keep]), b.op("Mul", [c, keep])
    hs, cs = [], []
    for k in range(layers):
        h_k, c_k = (b.op("Gather", [state, b.const(k, _I64)], axis=0) for state in (h, c))
        w_ih, w_hh = p[f"weight_ih.{k}"], p[f"weight_hh.{k}"]
        bias = p[f"bias_ih.{k}"][0] + p[f"bias_hh.{k}"][0]
        gates = b.op(
            "Add",
            [
                b.op("MatMul", [inp, b.param(w_ih[1], np.ascontiguousarray(w_ih[0].T), dtype)]),
                b.op("MatMul", [h_k, b.param(w_hh[1], np.ascontiguousarray(w_hh[0].T), dtype)]),
            ],
        )
        gates = b.op("Add", [gates, b.const(bias, dtype, "lstm_bias")])
        i, f, g, o = b.op("Split", [gates, b.const([hidden] * 4, _I64)], n_out=4, axis=-1)
        c_k = b.op(
            "Add",
            [b.op("Mul", [_sigmoid(b, f), c_k]), b.op("Mul", [_sigmoid(b, i), b.op("Tanh", [g])])],
        )
        inp = b.op("Mul", [_sigmoid(b, o), b.op("Tanh", [c_k])])
        hs.append(inp)
        cs.append(c_k)
    axis0 = b.const([0], _I64)
    stacked = [b.op("Concat", [b.op("Unsqueeze", [v, axis0]) for v in vs], axis=0) for vs in (hs, cs)]
    return [inp, *(b.cast(s, _F32) for s in stacked)]


# ---- action selection and post-processing ------------------------------------------------


def _masked(b: _Builder, x: list[str]) -> str:
    if len(x) < 2:
        return x[0]
    mask = b.op("Reshape", [b.cast(x[1], bool), b.op("Shape", [x[0]], _I64)])
    return b.op("Where", [mask, x[0], b.scalar(HUGE_NEG, x[0])])


def _multi_categorical(b: _Builder, x: list[str], p: dict, a: dict) -> str:
    sizes = [int(s) for s in a["sizes"]]
    parts = b.op("Split", [_masked(b, x), b.const(sizes, _I64)], n_out=len(sizes), axis=-1)
    parts = [parts] if len(sizes) == 1 else parts
    return b.op("Concat", [b.op("ArgMax", [s], _I64, axis=-1, keepdims=1) for s in parts], axis=-1)


def _rescale(b: _Builder, x: list[str], p: dict, a: dict) -> str:
    """SB3's unscale_action as numpy_ops does it: low + (0.5 * (a + 1.0) * (high - low))."""
    (low, low_name), (high, _) = p["low"], p["high"]
    span = high - low
    dtype = np.result_type(b.types[x[0]], low.dtype, span.dtype)
    half = b.op("Mul", [b.op("Add", [x[0], b.scalar(1.0, x[0])]), b.scalar(0.5, x[0])])
    scaled = b.op("Mul", [b.cast(half, dtype), b.const(span, dtype, "span")])
    return b.op("Add", [b.param(low_name, low, dtype), scaled])


def _clip_to_bounds(b: _Builder, x: list[str], p: dict, a: dict) -> str:
    (low, low_name), (high, high_name) = p["low"], p["high"]
    dtype = np.result_type(b.types[x[0]], low.dtype, high.dtype)
    above = b.op("Max", [b.cast(x[0], dtype), b.param(low_name, low, dtype)])
    return b.op("Min", [above, b.param(high_name, high, dtype)])


def _argmax(b: _Builder, x: str) -> str:
    return b.op("ArgMax", [x], _I64, axis=-1, keepdims=0)


EMITTERS = {
    **ACTIVATIONS,
    "cast": lambda b, x, p, a: b.cast(x[0], a["dtype"]),
    "normalize": _normalize,
    "divide": lambda b, x, p, a: b.op("Div", [b.cast(x[0], _F32), b.const(a["divisor"], _F32)]),
    "one_hot": lambda b, x, p, a: _one_hot(b, x[0], [int(a["n"])]),
    "multi_one_hot": _multi_one_hot,
    "flatten": lambda b, x, p, a: b.op("Flatten", x[:1], axis=1),
    "concat": lambda b, x, p, a: b.op("Concat", [b.cast(v, b.expected) for v in x], axis=-1),
    "linear": _linear,
    "conv2d": _conv2d,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "reshape": lambda b, x, p, a: b.op("Reshape", [x[0], b.const([0, *a["shape"]], _I64)]),
    "mean": lambda b, x, p, a: b.reduce("ReduceMean", x[0], [int(a["axis"])], keepdims=0),
    "clip": lambda b, x, p, a: _clip(b, x[0], a["min"], a["max"]),
    "lstm": _lstm,
    "categorical": lambda b, x, p, a: _argmax(b, _masked(b, x)),
    "multi_categorical": _multi_categorical,
    "bernoulli": lambda b, x, p, a: b.cast(b.op("Greater", [_sigmoid(b, x[0]), b.scalar(0.5, x[0])], bool), _F32),
    "greedy": lambda b, x, p, a: _argmax(b, x[0]),
    "rescale_to_bounds": _rescale,
    "clip_to_bounds": _clip_to_bounds,
}
"""op name -> ``fn(builder, input names, {role: (array, tensor name)}, attrs)`` giving output name(s).

``identity`` and the mode of ``gaussian`` / ``gsde`` pass an input through and need no emitter.
"""


# ---- the graph ---------------------------------------------------------------------------


def _widen(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _leaf(observation: Any, key: tuple[str, ...] | None) -> Any:
    for part in key or ():
        observation = observation[part]
    return observation


def _example_inputs(bundle: Bundle, batch: int = 2) -> dict[str, np.ndarray]:
    """A dummy value for every graph input, with the dtype the ONNX input declares."""
    obs = dummy_observation(bundle.observation_space, batch)
    values: dict[str, np.ndarray] = {}
    for graph_input in bundle.graph.inputs:
        if graph_input.role == "observation":
            values[graph_input.name] = np.asarray(_leaf(obs, graph_input.key))
        elif graph_input.role == "state":
            shape = list(graph_input.shape or ())
            shape.insert(graph_input.batch_axis, batch)
            values[graph_input.name] = np.zeros(shape, dtype=graph_input.dtype)
        elif graph_input.role == "episode_start":
            values[graph_input.name] = np.zeros(batch, dtype=np.float32)
        else:
            values[graph_input.name] = np.ones((batch, graph_input.size), dtype=bool)
    return values


def _trace(bundle: Bundle, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every value of the graph, computed by the numpy runtime's ops (deterministic mode)."""
    ctx = SimpleNamespace(deterministic=True, rng=np.random.default_rng(0))
    values = dict(values)
    with np.errstate(all="ignore"):
        for node in bundle.graph.nodes():
            params = {role: _widen(bundle.tensors[name]) for role, name in node.params.items()}
            fn = bind(node.op, params, node.resolved_attrs(), ctx if op_schema(node.op).stochastic else None)
            result = fn(*(values[name] for name in node.inputs))
            values.update(zip(node.outputs, [result] if len(node.outputs) == 1 else result, strict=True))
    return {name: np.asarray(value) for name, value in values.items()}


def _live_nodes(graph) -> list[tuple[Any, int | None]]:
    """The nodes the deterministic outputs need, each with the input it passes through (if any)."""
    needed = {graph.output, *(i.output for i in graph.inputs_with_role("state"))}
    live = []
    for node in reversed(list(graph.nodes())):
        if not needed.intersection(node.outputs):
            continue
        passthrough = 0 if node.op == "identity" else op_schema(node.op).mode_passthrough
        needed.update(node.inputs if passthrough is None else (node.inputs[passthrough],))
        live.append((node, passthrough))
    return live[::-1]


def _value_info(b: _Builder, name: str, example: np.ndarray, batch_axis: int):
    dims: list[Any] = list(example.shape)
    dims[batch_axis] = _BATCH
    return b.helper.make_tensor_value_info(name, b.helper.np_dtype_to_tensor_dtype(example.dtype), dims)


def _emit(b: _Builder, bundle: Bundle, trace: dict[str, np.ndarray]) -> dict[str, str]:
    """Emit every live node; return value name -> the ONNX name holding it."""
    alias = {graph_input.name: graph_input.name for graph_input in bundle.graph.inputs}
    for node, passthrough in _live_nodes(bundle.graph):
        if passthrough is not None:
            alias[node.outputs[0]] = alias[node.inputs[passthrough]]
            continue
        emitter = EMITTERS.get(node.op)
        if emitter is None:
            raise UnsupportedError(
                f"op {node.op!r} cannot be exported to ONNX; the exporter supports: "
                f"{', '.join(sorted([*EMITTERS, 'identity', 'gaussian', 'gsde']))}. Use the numpy backend instead"
            )
        params = {role: (_widen(bundle.tensors[name]), name) for role, name in node.params.items()}
        b.expected = trace[node.outputs[0]].dtype
        result = emitter(b, [alias[name] for name in node.inputs], params, node.resolved_attrs())
        for name, onnx_name in zip(node.outputs, [result] if isinstance(result, str) else result, strict=True):
            alias[name] = b.cast(onnx_name, trace[name].dtype)
            b.ranks[alias[name]] = trace[name].ndim
    return alias


def onnx_model(bundle: Bundle, opset: int = MIN_OPSET):
    """The bundle's policy as an ``onnx.ModelProto`` (see :func:`export_onnx`).

    Raises:
        UnsupportedError: an op the exporter cannot express, or an opset older than 17.
        MissingDependencyError: the ``onnx`` package is not installed.
    """
    onnx = _onnx()
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise UnsupportedError(
            f"ONNX opset {opset} is not supported; use {MIN_OPSET}..{onnx.defs.onnx_opset_version()}"
        )
    graph = bundle.graph
    inputs = _example_inputs(bundle)
    trace = _trace(bundle, inputs)
    b = _Builder(opset, {name: value.dtype for name, value in trace.items()})
    b.ranks.update({name: value.ndim for name, value in inputs.items()})
    alias = _emit(b, bundle, trace)
    states = graph.inputs_with_role("state")
    outputs = [(graph.output, 0)] + [(s.output, s.batch_axis) for s in states]
    for name, _ in outputs:
        if alias[name] != name:
            b.nodes.append(b.helper.make_node("Identity", [alias[name]], [name]))
    onnx_inputs = [
        _value_info(b, i.name, inputs[i.name], i.batch_axis if i.role == "state" else 0) for i in graph.inputs
    ]
    onnx_outputs = [_value_info(b, name, trace[name], axis) for name, axis in outputs]
    onnx_graph = b.helper.make_graph(b.nodes, "rlport_policy", onnx_inputs, onnx_outputs, b.initializers)
    opsets = [b.helper.make_opsetid("", opset)]
    model = b.helper.make_model(onnx_graph, opset_imports=opsets, producer_name="rlport")
    model.ir_version = b.helper.find_min_ir_version_for(opsets)
    summary = json.dumps(bundle.summary(), sort_keys=True, separators=(",", ":"))
    b.helper.set_model_props(model, {METADATA_KEY: summary})
    return model


def export_onnx(bundle: Bundle, path: str | os.PathLike, opset: int = MIN_OPSET) -> Path:
    """Write the bundle's policy as an ONNX model: raw observation in, deterministic action out.

    One ONNX input per graph input (observation leaves named like the graph's inputs, e.g.
    ``obs`` or ``obs.image``; recurrent states, ``episode_start`` and ``action_mask`` too), the
    action and the next recurrent states as outputs, a dynamic batch dimension, and
    ``metadata_props["rlport.summary"]`` holding ``bundle.summary()`` as JSON. The file is
    written atomically.

    Args:
        bundle: the bundle to export.
        path: where to write the ``.onnx`` file.
        opset: the ONNX opset to target (17 or newer).

    Returns:
        The path written.

    Raises:
        UnsupportedError: the graph uses an op ONNX export cannot express (the message lists
            the supported ones), or ``opset`` is out of range.
        MissingDependencyError: ``onnx`` is not installed (``pip install "rlport[onnx]"``).

    Example:
        >>> export_onnx(rlport.Bundle.load("cartpole.rlp"), "cartpole.onnx")   # doctest: +SKIP
    """
    onnx = _onnx()
    model = onnx_model(bundle, opset)
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    write_atomic(path, model.SerializeToString(), what="the ONNX model")
    return path
