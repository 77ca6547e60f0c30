"""The policy graph: typed ops over named values, in three stages (docs/FORMAT.md section 4).

Example:
    >>> g = Graph(
    ...     inputs=(GraphInput("obs", "observation"),),
    ...     policy=(Node("linear", ("obs",), ("y",), params={"weight": "w"}),),
    ...     output="y",
    ... )
    >>> Graph.from_json(g.to_json()) == g
    True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlport.errors import GraphError, short
from rlport.graph.schema import REQUIRED, op_schema

__all__ = ["Node", "GraphInput", "Graph", "ROLES", "STAGES"]

ROLES = ("observation", "state", "episode_start", "action_mask")
MAX_STATE_ELEMENTS = 1 << 24
"""The most elements (per batch row) a ``state`` input may have (docs/FORMAT.md section 1)."""
STAGES = ("preprocess", "policy", "postprocess")


_GRAPH_FIELDS = frozenset({"inputs", "output", *STAGES})
_NODE_FIELDS = frozenset({"op", "inputs", "outputs", "params", "attrs"})
_INPUT_FIELDS = frozenset({"name", "role", "key", "shape", "batch_axis", "output", "dtype", "size"})
_ROLE_FIELDS = {
    "observation": frozenset({"key"}),
    "state": frozenset({"shape", "batch_axis", "output", "dtype"}),
    "episode_start": frozenset(),
    "action_mask": frozenset({"size"}),
}
"""The fields (besides ``name`` and ``role``) an input of each role may carry."""


def _known_fields(data: dict, known: frozenset[str], what: str) -> None:
    """Reject fields this version does not know: a newer minor version may give them a meaning."""
    unknown = sorted(set(data) - known)
    if unknown:
        raise GraphError(
            f"{what} has field(s) {unknown} that this rlport does not know (known: {sorted(known)}); "
            "the bundle may need a newer rlport (pip install -U rlport)"
        )


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _int(value) and value > 0


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GraphError(f"{what}: expected a list of non-empty names, found {short(value)}")
    return tuple(value)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _integers(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(_integer(v) for v in value)


_TYPE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "boolean": (lambda v: isinstance(v, (bool, np.bool_)), "a boolean"),
    "integer": (_integer, "an integer"),
    "positive integer": (lambda v: _integer(v) and v > 0, "a positive integer"),
    "number": (lambda v: isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)), "a number"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "dtype": (lambda v: isinstance(v, str), "a dtype name (a string)"),
    "integer list": (_integers, "a list of integers"),
    "integer pair": (lambda v: _integers(v) and len(v) == 2, "a list of 2 integers"),
}
"""JSON type (see ``schema.ATTR_TYPES``) -> (check, what the message calls it)."""


def _check_attr(where: str, name: str, value: Any, kind: str, choices: tuple | None) -> None:
    check, described = _TYPE_CHECKS[kind]
    if not check(value):
        raise GraphError(f"{where}: attribute {short(name)} must be {described}, found {short(value)}")
    if choices is not None and value not in choices:
        raise GraphError(f"{where}: attribute {short(name)} must be one of {list(choices)}, found {short(value)}")


@dataclass(frozen=True)
class Node:
    """One op application: ``outputs = op(*inputs, **params, **attrs)``."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, str] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        data: dict[str, Any] = {"op": self.op, "inputs": list(self.inputs), "outputs": list(self.outputs)}
        if self.params:
            data["params"] = dict(self.params)
        if self.attrs:
            data["attrs"] = dict(self.attrs)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Node:
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            raise GraphError(f"a graph node must be an object with an 'op' name, found {short(data)}")
        what = f"node {short(data['op'])}"
        _known_fields(data, _NODE_FIELDS, what)
        params = data.get("params", {})
        attrs = data.get("attrs", {})
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise GraphError(f"{what}: 'params' must map roles to tensor names, found {short(params)}")
        if not isinstance(attrs, dict):
            raise GraphError(f"{what}: 'attrs' must be an object, found {short(attrs)}")
        return cls(
            data["op"],
            _names(data.get("inputs"), f"{what} inputs"),
            _names(data.get("outputs"), f"{what} outputs"),
            params,
            attrs,
        )

    def resolved_attrs(self, where: str | None = None) -> dict[str, Any]:
        """The node's attributes with the schema's defaults filled in.

        Args:
            where: how messages name the node (e.g. ``"node 3 (linear)"``); default: by its op.

        Raises:
            GraphError: an unknown or missing attribute, or one of the wrong JSON type.
        """
        schema = op_schema(self.op)
        lead = f"{where}: " if where else ""
        unknown = set(self.attrs) - set(schema.attrs)
        if unknown:
            raise GraphError(
                f"{lead}op {short(self.op)} has no attribute(s) {sorted(unknown)}; "
                f"it takes: {sorted(schema.attrs) or 'none'}"
            )
        merged = {**schema.attrs, **self.attrs}
        missing = [k for k, v in merged.items() if v is REQUIRED]
        if missing:
            raise GraphError(f"{lead}op {short(self.op)} needs attribute(s) {missing}")
        named = where or f"op {short(self.op)}"
        for name, value in self.attrs.items():
            _check_attr(named, name, value, schema.attr_type(name), schema.attr_choices.get(name))
        return merged


@dataclass(frozen=True)
class GraphInput:
    """A value the caller provides: an observation leaf, a recurrent state, a flag or a mask."""

    name: str
    role: str
    key: tuple[str, ...] | None = None
    shape: tuple[int, ...] | None = None
    batch_axis: int = 0
    output: str | None = None
    dtype: str = "float32"
    size: int | None = None

    def to_json(self) -> dict:
        data: dict[str, Any] = {"name": self.name, "role": self.role}
        if self.role == "observation":
            data["key"] = list(self.key) if self.key is not None else None
        elif self.role == "state":
            data.update(
                shape=list(self.shape or ()),
                batch_axis=self.batch_axis,
                output=self.output,
                dtype=self.dtype,
            )
        elif self.role == "action_mask":
            data["size"] = self.size
        return data

    def check(self) -> None:
        """Raise :class:`GraphError` unless the fields make a valid input of its role."""
        if not isinstance(self.name, str) or not self.name:
            raise GraphError(f"a graph input needs a non-empty name, found {short(self.name)}")
        where = f"graph input {short(self.name)}"
        if self.role not in ROLES:
            raise GraphError(f"{where}: unknown role {short(self.role)}; known: {', '.join(ROLES)}")
        if self.role == "observation" and self.key is not None:
            _names(list(self.key), f"{where} key")
        if self.role == "state":
            shape = self.shape
            if not isinstance(shape, (tuple, list)) or not all(_positive_int(v) for v in shape):
                raise GraphError(f"{where}: a state's shape must be a list of positive integers, found {short(shape)}")
            if math.prod(shape) > MAX_STATE_ELEMENTS:
                raise GraphError(f"{where}: a state of shape {shape} is larger than the limit of {MAX_STATE_ELEMENTS}")
            if not isinstance(self.output, str) or not self.output:
                raise GraphError(f"{where}: a state input must name its 'output' value, found {short(self.output)}")
            if not _int(self.batch_axis) or not 0 <= self.batch_axis <= len(shape):
                raise GraphError(
                    f"{where}: batch_axis must be an integer in 0..{len(shape)}, found {short(self.batch_axis)}"
                )
            if self.dtype not in ("float16", "float32", "float64"):
                raise GraphError(
                    f"{where}: a state's dtype must be float16, float32 or float64, found {short(self.dtype)}"
                )
        if self.role == "action_mask" and not _positive_int(self.size):
            raise GraphError(f"{where}: an action mask needs a positive integer 'size', found {short(self.size)}")

    @classmethod
    def from_json(cls, data: Any) -> GraphInput:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise GraphError(f"a graph input must be an object with a 'name', found {short(data)}")
        _known_fields(data, _INPUT_FIELDS, f"graph input {short(data['name'])}")
        role = data.get("role")
        foreign = sorted(set(data) - {"name", "role"} - _ROLE_FIELDS[role]) if role in ROLES else []
        if foreign:
            raise GraphError(
                f"graph input {short(data['name'])}: an input of role {short(role)} takes no field(s) {foreign} "
                f"(they belong to other roles); it takes: {sorted(_ROLE_FIELDS[role]) or 'none'}"
            )
        key = data.get("key")
        if key is not None:
            key = _names(key, f"graph input {short(data['name'])} key")
        if role == "state":
            shape = data.get("shape")
            graph_input = cls(
                data["name"],
                role,
                shape=tuple(shape) if isinstance(shape, list) else shape,
                batch_axis=data.get("batch_axis", 0),
                output=data.get("output"),
                dtype=data.get("dtype", "float32"),
            )
        elif role == "action_mask":
            graph_input = cls(data["name"], role, size=data.get("size"))
        else:
            graph_input = cls(data["name"], role, key if role == "observation" else None)
        graph_input.check()
        return graph_input


@dataclass(frozen=True)
class Graph:
    """Inputs, three node lists run in order, and the name of the action value."""

    inputs: tuple[GraphInput, ...]
    output: str
    preprocess: tuple[Node, ...] = ()
    policy: tuple[Node, ...] = ()
    postprocess: tuple[Node, ...] = ()

    def nodes(self) -> Iterator[Node]:
        """All nodes in execution order."""
        yield from self.preprocess
        yield from self.policy
        yield from self.postprocess

    def inputs_with_role(self, role: str) -> list[GraphInput]:
        return [i for i in self.inputs if i.role == role]

    def to_json(self) -> dict:
        data: dict[str, Any] = {"inputs": [i.to_json() for i in self.inputs], "output": self.output}
        for stage in STAGES:
            data[stage] = [n.to_json() for n in getattr(self, stage)]
        return data

    @classmethod
    def from_json(cls, data: Any) -> Graph:
        if not isinstance(data, dict):
            raise GraphError(f"the graph must be a JSON object, found {type(data).__name__}")
        _known_fields(data, _GRAPH_FIELDS, "the graph")
        inputs = data.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise GraphError("the graph needs a non-empty 'inputs' list")
        if not isinstance(data.get("output"), str):
            raise GraphError("the graph needs an 'output' value name")
        stages = {}
        for stage in STAGES:
            nodes = data.get(stage, [])
            if not isinstance(nodes, list):
                raise GraphError(f"graph '{stage}' must be a list of nodes")
            stages[stage] = tuple(Node.from_json(n) for n in nodes)
        return cls(tuple(GraphInput.from_json(i) for i in inputs), data["output"], **stages)

    def validate(self, tensor_ranks: Mapping[str, int]) -> None:
        """Check names, ops, arity, attributes and parameter ranks; raise :class:`GraphError`.

        Args:
            tensor_ranks: the rank of every tensor the bundle holds, by name.
        """
        defined: set[str] = set()
        if not isinstance(self.output, str) or not self.output:
            raise GraphError(f"the graph's output must be a value name, found {short(self.output)}")
        for graph_input in self.inputs:
            graph_input.check()
            if graph_input.name in defined:
                raise GraphError(f"graph input {short(graph_input.name)} is defined twice")
            defined.add(graph_input.name)
        for role in ("episode_start", "action_mask"):
            if len(self.inputs_with_role(role)) > 1:
                raise GraphError(f"the graph has more than one {short(role)} input")
        if not self.inputs_with_role("observation"):
            raise GraphError("the graph has no observation input")
        for index, node in enumerate(self.nodes()):
            self._validate_node(index, node, defined, tensor_ranks)
        if self.output not in defined:
            raise GraphError(f"the graph's output {short(self.output)} is never computed")
        for state in self.inputs_with_role("state"):
            if state.output not in defined:
                raise GraphError(f"state {short(state.name)}: its output {short(state.output)} is never computed")

    @staticmethod
    def _validate_node(index: int, node: Node, defined: set[str], ranks: Mapping[str, int]) -> None:
        where = f"node {index} ({node.op})"
        schema = op_schema(node.op)
        low, high = schema.inputs
        if not low <= len(node.inputs) <= high:
            raise GraphError(f"{where}: takes {low}..{high} inputs, found {len(node.inputs)}")
        if len(node.outputs) != schema.outputs:
            raise GraphError(f"{where}: gives {schema.outputs} outputs, found {len(node.outputs)}")
        for name in node.inputs:
            if name not in defined:
                raise GraphError(f"{where}: input {short(name)} is used before it is defined")
        attrs = node.resolved_attrs(where)
        roles = schema.param_roles(attrs)
        unknown = set(node.params) - set(roles)
        if unknown:
            raise GraphError(f"{where}: unknown parameter role(s) {sorted(unknown)}; takes {sorted(roles)}")
        for role, rank in roles.items():
            tensor = node.params.get(role)
            if tensor is None:
                if role not in schema.optional_params:
                    raise GraphError(f"{where}: missing parameter {short(role)}")
                continue
            if tensor not in ranks:
                raise GraphError(
                    f"{where}: parameter {short(role)} names tensor {short(tensor)}, which the bundle lacks"
                )
            if rank is not None and ranks[tensor] != rank:
                raise GraphError(
                    f"{where}: parameter {short(role)} ({short(tensor)}) must have rank {rank}, found {ranks[tensor]}"
                )
        for name in node.outputs:
            if name in defined:
                raise GraphError(f"{where}: value {short(name)} is defined twice")
            defined.add(name)
