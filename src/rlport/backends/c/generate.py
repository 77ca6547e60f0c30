"""A bundle's policy graph as C99 source: ``rlport_policy.h`` and ``rlport_policy.c``.

The generated code acts on one observation at a time (every op of the graph is row-wise): the
deterministic run and, unless ``RLPORT_DETERMINISTIC_ONLY`` is defined, the sampled run (fed a
caller-provided array of ``RLPORT_UNIFORMS`` uniform numbers in [0, 1)). Values live in static
arenas, one per C type, sized at export from the values' lifetimes; weights are ``static const``.
There is no malloc, no recursion and no other mutable global: a call is not reentrant (one
policy per thread). Nothing named in the bundle reaches the source except dict keys as escaped
string literals. Needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.backends.c.ops import ALIASES, EMITTERS
from rlport.backends.c.program import Program, Ref, ctype_of
from rlport.backends.c.text import DTYPE_OF, header_text, source_text
from rlport.errors import UnsupportedError
from rlport.graph.passes import QUANTISED_READERS, graph_results, live_nodes, noop_nodes

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["Leaf", "Generated", "generate", "supported_ops"]


@dataclass(frozen=True)
class Leaf:
    """One caller-provided array of the C interface: an observation leaf or a recurrent state."""

    key: tuple[str, ...] | None
    dtype: str
    shape: tuple[int, ...]
    batch_axis: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Generated:
    """The export: the two files' text and what the C interface takes and gives."""

    header: str
    source: str
    observations: list[Leaf]
    states: list[Leaf]
    action_dtype: str
    action_shape: tuple[int, ...]
    mask_size: int
    uniforms: int
    has_episode_start: bool
    scratch_bytes: int


def supported_ops() -> list[str]:
    return sorted(EMITTERS)


def _widen(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _check_ops(bundle: Bundle) -> None:
    for node in bundle.graph.nodes():
        if node.op not in EMITTERS:
            raise UnsupportedError(
                f"op {node.op!r:.100} is not supported by the C export (supported: {', '.join(supported_ops())}); "
                "export with --format onnx instead"
            )


def _interface(bundle: Bundle, values: dict) -> tuple[list[Leaf], list[Leaf]]:
    observations, states = [], []
    for graph_input in bundle.graph.inputs:
        value = values[graph_input.name]
        if graph_input.role == "observation":
            observations.append(Leaf(tuple(graph_input.key or ()), str(value.dtype), value.row))
        elif graph_input.role == "state":
            states.append(Leaf(None, str(value.dtype), value.row, graph_input.batch_axis))
    for leaf in observations + states:
        ctype_of(leaf.dtype)
    return observations, states


def _input_refs(graph: Any, values: dict) -> dict[str, Ref]:
    """The graph's inputs in the run function: the observation's and the state's members, the flags, the mask."""
    refs: dict[str, Ref] = {}
    counts = {"observation": 0, "state": 0}
    for graph_input in graph.inputs:
        value = values[graph_input.name]
        if graph_input.role in counts:
            member = "obs->obs" if graph_input.role == "observation" else "state->state"
            refs[graph_input.name] = Ref(f"{member}{counts[graph_input.role]}", ctype_of(value.dtype), value.row)
            counts[graph_input.role] += 1
        elif graph_input.role == "episode_start":
            refs[graph_input.name] = Ref("(&episode_start)", "float", (1,))
        else:
            refs[graph_input.name] = Ref("action_mask", "unsigned char", value.row)
    return refs


def _aliases(step: Any) -> bool:
    return step.passthrough is not None or step.node.op in ALIASES


def _last_uses(graph: Any, steps: list) -> tuple[dict[str, str], dict[str, int]]:
    """Each alias's storage (the value it shares memory with) and the last step that reads each storage."""
    root: dict[str, str] = {}
    last: dict[str, int] = {}
    for position, step in enumerate(steps):
        used = list(step.node.inputs)
        if _aliases(step):
            source = step.node.inputs[step.passthrough or 0]
            root[step.node.outputs[0]] = root.get(source, source)
            used = [source]
        for name in used:
            last[root.get(name, name)] = position
    for name in graph_results(graph):
        last[root.get(name, name)] = len(steps)
    return root, last


def _run_body(p: Program, bundle: Bundle, values: dict, noops: frozenset[int]) -> None:
    """The lines of one run function (``p.deterministic`` says which): one block per live node."""
    graph = bundle.graph
    refs = _input_refs(graph, values)
    steps = live_nodes(graph, p.deterministic, noops=noops)
    _, last = _last_uses(graph, steps)
    storage: dict[str, tuple[str, int, int]] = {}
    for position, step in enumerate(steps):
        node = step.node
        if _aliases(step):
            source = refs[node.inputs[step.passthrough or 0]]
            refs[node.outputs[0]] = Ref(source.expr, source.ctype, values[node.outputs[0]].row)
            continue
        for name in node.outputs:
            ctype, length = ctype_of(values[name].dtype), values[name].elements
            storage[name] = (ctype, p.arena(ctype).alloc(length), length)
            refs[name] = Ref(p.arena_expr(ctype, storage[name][1]), ctype, values[name].row)
        _emit_node(p, bundle, values, step, refs)
        for name, (ctype, offset, length) in list(storage.items()):
            if last.get(name, -1) <= position:
                p.arena(ctype).release(offset, length)
                del storage[name]
    _results(p, graph, refs)


def _emit_node(p: Program, bundle: Bundle, values: dict, step: Any, refs: dict[str, Ref]) -> None:
    """One node's code, its parameters and attributes (and what the emitters need besides) handed over."""
    node = step.node
    attrs = dict(node.resolved_attrs())
    reads_int8 = node.op in QUANTISED_READERS
    attrs["_shape"] = values[node.inputs[0]].shape
    attrs["_scales"] = [_value_scale(bundle, name) if reads_int8 else None for name in node.inputs]
    attrs["_int8"] = _stored_int8(bundle, node.params.get("weight")) if reads_int8 else None
    params = {role: _widen(np.asarray(bundle.tensors[name])) for role, name in node.params.items()}
    p.line(f"/* node {step.index}: {node.op} */")  # an op name of graph/schema.py (checked in EMITTERS)
    EMITTERS[node.op](p, [refs[name] for name in node.inputs], [refs[name] for name in node.outputs], params, attrs)
    p.end_node()


def _value_scale(bundle: Bundle, name: str) -> float | None:
    """The scale a ``linear``/``conv2d`` reads ``name`` fake-quantised with (format 1.1 encodings), if any."""
    encoding = getattr(bundle, "encodings", None)
    found = encoding.values.get(name) if encoding else None
    return None if found is None else float(np.float32(found.scale))


def _stored_int8(bundle: Bundle, name: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A weight stored as int8 with one scale per output channel (axis 0): ``(q, scale)``; None otherwise."""
    encoding = getattr(bundle, "encodings", None)
    found = encoding.tensors.get(name) if encoding and name is not None else None
    if found is None or found.axis != 0 or name not in bundle.encoded:
        return None
    return np.asarray(bundle.encoded[name]), np.asarray(bundle.tensors[found.scale], np.float32)


def _results(p: Program, graph: Any, refs: dict[str, Ref]) -> None:
    action = refs[graph.output]
    p.line(f"for (long i = 0; i < {action.size}; ++i) action[i] = ({action.expr})[i];")
    for k, state in enumerate(graph.inputs_with_role("state")):
        after = refs[state.output]
        if after.expr != f"state->state{k}":
            p.line(f"for (long i = 0; i < {after.size}; ++i) state->state{k}[i] = ({after.expr})[i];")
    p.line("return 0;")


def generate(bundle: Bundle) -> Generated:
    """The C source of ``bundle``'s policy.

    Raises:
        UnsupportedError: the graph uses an op or a dtype the C export lacks (the message names it).
        GraphError: the graph does not fit its spaces (as ``Bundle.values`` says).
    """
    _check_ops(bundle)
    values = bundle.values()
    observations, states = _interface(bundle, values)
    action = values[bundle.graph.output]
    action_ctype = ctype_of(action.dtype)
    noops = noop_nodes(bundle.graph, values)
    p = Program()
    bodies = {}
    for mode in (True, False):
        p.deterministic, p.lines = mode, []
        _run_body(p, bundle, values, noops)
        bodies[mode] = p.lines
    masks = bundle.graph.inputs_with_role("action_mask")
    generated = Generated(
        header="",
        source="",
        observations=observations,
        states=states,
        action_dtype=str(action.dtype),
        action_shape=action.row,
        mask_size=int(masks[0].size) if masks else 0,
        uniforms=p.uniforms,
        has_episode_start=bool(bundle.graph.inputs_with_role("episode_start")),
        scratch_bytes=sum(max(sizes.values()) * np.dtype(DTYPE_OF[c]).itemsize for c, sizes in p.arena_sizes().items()),
    )
    generated.header = header_text(bundle, generated, action_ctype)
    generated.source = source_text(p, bodies, generated)
    return generated
