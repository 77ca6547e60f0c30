"""Export a bundle's policy graph to ONNX: raw observation in, deterministic action out.

The ONNX graph computes what the numpy runtime computes with ``deterministic=True``
(docs/FORMAT.md section 4.1), op for op and dtype for dtype: the numpy runtime is run once on a
dummy batch to learn the dtype of every value, and each op is emitted so that it gives the same
dtype. Stochastic ops take their mode (argmax, the Gaussian's mean), so branches that only feed
sampling (a log-std head) are left out. The batch dimension is dynamic.

A quantised bundle (format 1.1 ``encodings``) keeps its int8 weights: each is an int8 initializer
read through ``DequantizeLinear`` with its per-channel scales, and a value the bundle fake-quantises
is read by its ``linear``/``conv2d`` nodes through ``QuantizeLinear`` -> ``DequantizeLinear`` (QDQ).

This module traces the graph, drives the emission and names the model's inputs, outputs and
metadata; the per-op emitters and their registry live in :mod:`rlport.backends.onnx.ops`, and
the builder they write into in :mod:`rlport.backends.onnx.builder`.

Example:
    >>> import rlport
    >>> from rlport.backends.onnx import export_onnx
    >>> export_onnx(rlport.Bundle.load("cartpole.rlp"), "cartpole.onnx")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.onnx.builder import Builder, numpy_dtype, require_onnx
from rlport.backends.onnx.ops import EMITTERS
from rlport.bundle.container import write_atomic
from rlport.bundle.spaces import dummy_observation
from rlport.errors import GraphError, RlportError, UnsupportedError
from rlport.graph.passes import QUANTISED_READERS, live_nodes, widen
from rlport.graph.reference import bind
from rlport.graph.schema import op_schema

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["export_onnx", "onnx_model", "sampling_split", "EMITTERS", "MIN_OPSET", "METADATA_KEY"]

MIN_OPSET = 17
"""The oldest ONNX opset the exporter writes (LayerNormalization-era semantics, Split with sizes)."""
METADATA_KEY = "rlport.summary"
"""The ``metadata_props`` key holding ``json.dumps(bundle.summary())``."""
_BATCH = "batch"


# ---- the graph ---------------------------------------------------------------------------


_widen = widen  # stored tensors are decoded by graph/passes.py alone (int8 ones by Bundle.load)


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


_NODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError, AttributeError, NotImplementedError)
"""What numpy, ``onnx.helper`` or an emitter raise on a node whose attributes or parameters do not fit."""


def _where(node: Any) -> str:
    outputs = repr(list(node.outputs))
    return f"op {node.op!r} (outputs {outputs if len(outputs) <= 100 else outputs[:100] + '...'})"


def _node_error(node: Any, exc: Exception, doing: str) -> GraphError:
    return GraphError(f"{_where(node)} {doing}: {type(exc).__name__}: {str(exc)[:200]}")


def _check_casts(graph: Any) -> None:
    """Refuse, by name, a ``cast`` to a dtype ONNX export lacks (before the trace, which may fail on it first)."""
    for node in graph.nodes():
        if node.op == "cast":
            try:
                numpy_dtype(node.resolved_attrs()["dtype"])
            except UnsupportedError as exc:
                raise UnsupportedError(f"{_where(node)}: {exc}") from None


def _trace(bundle: Bundle, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every value of the graph, computed by the numpy runtime's ops (deterministic mode).

    Raises:
        GraphError: a node cannot run on the dummy batch (attributes or parameters that do not fit).
    """
    ctx = SimpleNamespace(deterministic=True, rng=np.random.default_rng(0))
    values = dict(values)
    with np.errstate(all="ignore"):
        for node in bundle.graph.nodes():
            params = {role: _widen(bundle.tensors[name]) for role, name in node.params.items()}
            try:
                fn = bind(node.op, params, node.resolved_attrs(), ctx if op_schema(node.op).stochastic else None)
                result = fn(*(values[name] for name in node.inputs))
            except RlportError:
                raise
            except (*_NODE_ERRORS, MemoryError) as exc:
                raise _node_error(node, exc, "cannot run on a dummy batch") from exc
            values.update(zip(node.outputs, [result] if len(node.outputs) == 1 else result, strict=True))
    return {name: np.asarray(value) for name, value in values.items()}


def _graph_outputs(graph) -> list[tuple[str, int]]:
    """The action and the next recurrent states, each with its batch axis."""
    return [(graph.output, 0)] + [(s.output, s.batch_axis) for s in graph.inputs_with_role("state")]


def sampling_split(graph) -> tuple[list[Any], list[str]]:
    """Split the graph for sampling: an ONNX-able head and a tail that draws random numbers.

    Returns:
        The tail (every stochastic op and every node computed from one, in graph order; run
        by numpy) and the head's outputs: the values the tail reads from the head, then the
        graph's outputs the head computes itself.
    """
    live = [step.node for step in live_nodes(graph, deterministic=False)]
    tail, drawn = [], set()
    for node in live:
        if op_schema(node.op).stochastic or drawn.intersection(node.inputs):
            tail.append(node)
            drawn.update(node.outputs)
    head_values = {name for node in live if node not in tail for name in node.outputs}
    read = [name for node in tail for name in node.inputs if name in head_values]
    outputs = [name for name, _ in _graph_outputs(graph) if name not in drawn]
    return tail, list(dict.fromkeys(read + outputs))


def _value_info(b: Builder, name: str, example: np.ndarray, batch_axis: int | None):
    """``name``'s type; its shape with a dynamic batch axis, or only its rank when ``batch_axis`` is None."""
    dims: list[Any] = [None] * example.ndim
    if batch_axis is not None:
        dims = list(example.shape)
        dims[batch_axis] = _BATCH
    return b.helper.make_tensor_value_info(name, b.tensor_dtype(example.dtype), dims)


def _emit(b: Builder, bundle: Bundle, trace: dict[str, np.ndarray], live: list) -> dict[str, str]:
    """Emit the ``live`` nodes; return value name -> the ONNX name holding it."""
    alias = {graph_input.name: graph_input.name for graph_input in bundle.graph.inputs}
    for step in live:
        node = step.node
        if step.passthrough is not None:
            alias[node.outputs[0]] = alias[node.inputs[step.passthrough]]
            continue
        emitter = EMITTERS.get(node.op)
        if emitter is None:
            raise UnsupportedError(
                f"op {node.op!r} cannot be exported to ONNX; the exporter supports: "
                f"{', '.join(sorted([*EMITTERS, 'identity', 'gaussian', 'gsde']))}. Use the numpy backend instead"
            )
        params = {role: (_widen(bundle.tensors[name]), name) for role, name in node.params.items()}
        try:
            if node.op in QUANTISED_READERS:
                _int8_weight(b, bundle, node, trace)
                node_alias = _qdq_inputs(b, bundle, node, alias)
                _emit_node(b, node, emitter, params, trace, node_alias)
                alias.update({name: node_alias[name] for name in node.outputs})
                continue
            _emit_node(b, node, emitter, params, trace, alias)
        except UnsupportedError as exc:
            raise UnsupportedError(f"{_where(node)}: {exc}") from exc
        except _NODE_ERRORS as exc:
            raise _node_error(node, exc, "cannot be written to ONNX") from exc
    return alias


def _int8_weight(b: Builder, bundle: Bundle, node: Any, trace: dict[str, np.ndarray]) -> None:
    """An int8-encoded ``linear``/``conv2d`` weight as ``DequantizeLinear`` of its int8 initializer and scales.

    The dequantised weight is registered as the float32 parameter the emitter asks for (``linear``:
    transposed, so the int8 initializer is stored ``(in, out)`` with the scales along axis 1).
    Another dtype of the input (float64) keeps the decoded float weight.
    """
    name = node.params.get("weight")
    encoding = bundle.encodings.tensors.get(name)
    if encoding is None or trace[node.inputs[0]].dtype != np.float32:
        return
    key = (name, np.dtype(np.float32).str, None)
    if key in b._params:  # noqa: SLF001 - one DequantizeLinear per weight, shared like every parameter
        return
    values, scale = bundle.encoded[name], bundle.tensors[encoding.scale].astype(np.float32)
    axis = encoding.axis
    if node.op == "linear":
        values, axis = np.ascontiguousarray(values.T), 1 - axis
    inputs = [
        b.const(values, np.int8, hint=name),
        b.const(scale, hint=encoding.scale),
        b.const(np.zeros(scale.shape, np.int8), hint=f"{name}.zero_point"),
    ]
    b._params[key] = b.op("DequantizeLinear", inputs, np.float32, axis=axis)  # noqa: SLF001


def _qdq_inputs(b: Builder, bundle: Bundle, node: Any, alias: dict[str, str]) -> dict[str, str]:
    """``alias`` with the node's fake-quantised inputs read through QuantizeLinear -> DequantizeLinear."""
    values = bundle.encodings.values
    if not any(name in values for name in node.inputs):
        return alias
    node_alias = dict(alias)
    for name in node.inputs:
        if name in values:
            scale = b.const(np.float32(values[name].scale), hint=f"{name}.scale")
            zero = b.const(np.int8(0), hint=f"{name}.zero_point")
            q = b.op("QuantizeLinear", [b.cast(alias[name], np.float32), scale, zero], np.int8)
            node_alias[name] = b.op("DequantizeLinear", [q, scale, zero], np.float32)
            if alias[name] in b.ranks:
                b.ranks[node_alias[name]] = b.ranks[alias[name]]
    return node_alias


def _emit_node(b: Builder, node: Any, emitter: Any, params: dict, trace: dict[str, np.ndarray], alias: dict) -> None:
    """Emit one node and record the ONNX names (cast to the traced dtypes) of its outputs in ``alias``."""
    b.expected = trace[node.outputs[0]].dtype
    result = emitter(b, [alias[name] for name in node.inputs], params, node.resolved_attrs())
    for name, onnx_name in zip(node.outputs, [result] if isinstance(result, str) else result, strict=True):
        alias[name] = b.cast(onnx_name, trace[name].dtype)
        b.ranks[alias[name]] = trace[name].ndim


def onnx_model(bundle: Bundle, opset: int = MIN_OPSET, outputs: list[str] | None = None):
    """The bundle's policy as an ``onnx.ModelProto`` (see :func:`export_onnx`).

    Args:
        bundle: the bundle to export.
        opset: the ONNX opset to target (17 or newer).
        outputs: instead of the deterministic action and next states, these graph values, with
            every node they depend on and stochastic ops left out (the head of
            :func:`sampling_split`); only their ranks are declared.

    Raises:
        UnsupportedError: an op or dtype the exporter cannot express, or an opset older than 17.
        GraphError: a node's attributes or parameters do not fit it (a hand-made or hostile graph).
        MissingDependencyError: the ``onnx`` package is not installed.
    """
    onnx = require_onnx()
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise UnsupportedError(
            f"ONNX opset {opset} is not supported; use {MIN_OPSET}..{onnx.defs.onnx_opset_version()}"
        )
    graph = bundle.graph
    _check_casts(graph)
    inputs = _example_inputs(bundle)
    trace = _trace(bundle, inputs)
    b = Builder(opset, {name: value.dtype for name, value in trace.items()})
    b.ranks.update({name: value.ndim for name, value in inputs.items()})
    if outputs is None:
        named = _graph_outputs(graph)
        live = live_nodes(graph, deterministic=True, needed=[name for name, _ in named])
    else:
        named = [(name, None) for name in outputs]
        live = live_nodes(graph, deterministic=False, needed=outputs)
    alias = _emit(b, bundle, trace, live)
    for name, _ in named:
        if alias[name] != name:
            b.nodes.append(b.helper.make_node("Identity", [alias[name]], [name]))
    onnx_inputs = [
        _value_info(b, i.name, inputs[i.name], i.batch_axis if i.role == "state" else 0) for i in graph.inputs
    ]
    onnx_outputs = [_value_info(b, name, trace[name], axis) for name, axis in named]
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
        GraphError: a node's attributes or parameters do not fit it, or the model fails
            ``onnx.checker`` (a hand-made or hostile graph).
        MissingDependencyError: ``onnx`` is not installed (``pip install "rlport[onnx]"``).

    Example:
        >>> export_onnx(rlport.Bundle.load("cartpole.rlp"), "cartpole.onnx")   # doctest: +SKIP
    """
    onnx = require_onnx()
    model = onnx_model(bundle, opset)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise GraphError(f"the ONNX model exported from the bundle is not valid ONNX: {reason}") from exc
    path = Path(path)
    write_atomic(path, model.SerializeToString(), what="the ONNX model")
    return path
