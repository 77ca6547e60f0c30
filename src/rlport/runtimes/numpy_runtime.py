"""Run a bundle's policy graph with numpy alone, following SB3's ``predict`` convention.

Example:
    >>> import rlport
    >>> policy = rlport.load("cartpole.rlp")                      # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.bundle.spaces import DictSpec, batch_observation, dummy_observation, item_shape
from rlport.errors import GraphError, ObservationError, RlportError
from rlport.graph.schema import op_schema
from rlport.runtimes.numpy_ops import IMPLEMENTATIONS, bind

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["NumpyPolicy"]

_RUNTIME_ERRORS = (ValueError, TypeError, IndexError, FloatingPointError)


@dataclass
class _Context:
    """What stochastic ops read: the deterministic flag and the seeded generator."""

    deterministic: bool = True
    rng: np.random.Generator = field(default_factory=np.random.default_rng)


def _widen(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _bind(node, tensors: Mapping[str, np.ndarray], ctx: _Context):
    """The node's op with its parameters and attributes bound: a function of its inputs only."""
    if node.op not in IMPLEMENTATIONS:
        raise GraphError(f"op {node.op!r} has no numpy implementation")
    attrs = node.resolved_attrs()
    params = {role: _widen(tensors[name]) for role, name in node.params.items()}
    try:
        return bind(node.op, params, attrs, ctx if op_schema(node.op).stochastic else None)
    except (ValueError, TypeError, KeyError, IndexError, MemoryError) as exc:
        raise GraphError(f"op {node.op!r} (outputs {list(node.outputs)}) cannot use its parameters: {exc}") from exc


def _live_steps(graph, steps: list, deterministic: bool) -> list:
    """The steps that contribute to the outputs, and for each the inputs it passes through.

    When acting deterministically, an op with ``mode_passthrough`` returns that input
    unchanged, so its other inputs (a Gaussian's log_std branch) need not be computed.
    """
    needed = {graph.output, *(i.output for i in graph.inputs_with_role("state"))}
    live = []
    for fn, node in reversed(steps):
        if not needed.intersection(node.outputs):
            continue
        passthrough = op_schema(node.op).mode_passthrough if deterministic else None
        if node.op == "identity":
            passthrough = 0
        used = node.inputs if passthrough is None else (node.inputs[passthrough],)
        needed.update(used)
        live.append((fn, node, passthrough))
    return live[::-1]


def _compile(graph, steps: list, deterministic: bool) -> Callable[..., tuple]:
    """Straight-line Python for the graph: one line per live node, values in local variables.

    Value names never reach the generated code (variables are ``v<slot>``), so a manifest
    cannot inject code; the functions are the bound ops in ``steps``.
    """
    slot = {graph_input.name: k for k, graph_input in enumerate(graph.inputs)}
    lines = [f"def run({', '.join(f'v{k}' for k in range(len(graph.inputs)))}):"]
    namespace: dict[str, Any] = {}
    for index, (fn, node, passthrough) in enumerate(_live_steps(graph, steps, deterministic)):
        if passthrough is not None:
            slot[node.outputs[0]] = slot[node.inputs[passthrough]]
            continue
        for name in node.outputs:
            slot[name] = len(slot)
        namespace[f"f{index}"] = fn
        outs = ", ".join(f"v{slot[n]}" for n in node.outputs)
        ins = ", ".join(f"v{slot[n]}" for n in node.inputs)
        lines.append(f"    {outs}{',' if len(node.outputs) > 1 else ''} = f{index}({ins})")
    results = [graph.output, *(i.output for i in graph.inputs_with_role("state"))]
    lines.append(f"    return ({', '.join(f'v{slot[n]}' for n in results)},)")
    exec(compile("\n".join(lines), "<rlport graph>", "exec"), namespace)  # noqa: S102
    return namespace["run"]


def _leaf_feeder(space, what: str) -> Callable[[Any], tuple[np.ndarray, bool]]:
    """A fast ``batch_observation`` for one leaf; unusual inputs take the full path."""
    shape = item_shape(space)
    rank = len(shape)

    def feed(obs: Any) -> tuple[np.ndarray, bool]:
        array = np.asarray(obs)
        if array.dtype.kind in "biuf":
            if array.shape == shape:
                return array[None], False
            if array.ndim == rank + 1 and array.shape[1:] == shape:
                return array, True
        return batch_observation(obs, space, what)

    return feed


class NumpyPolicy:
    """A bundle's policy, ready to act. Needs numpy only.

    The graph is compiled once, at construction, into straight-line code over bound ops.
    ``predict`` is not thread-safe (the deterministic flag and generator are shared); give each
    thread its own policy.

    Args:
        bundle: a loaded :class:`~rlport.bundle.bundle.Bundle`.
        seed: seed of the generator used when ``deterministic=False``.
    """

    backend = "numpy"

    def __init__(self, bundle: Bundle, seed: int | None = None) -> None:
        self.bundle = bundle
        self.observation_space = bundle.observation_space
        self.action_space = bundle.action_space
        graph = bundle.graph
        self._ctx = _Context(rng=np.random.default_rng(seed))
        self._steps = [(_bind(node, bundle.tensors, self._ctx), node) for node in graph.nodes()]
        self._programs = {mode: _compile(graph, self._steps, mode) for mode in (True, False)}
        self._inputs = graph.inputs
        roles = [graph_input.role for graph_input in graph.inputs]
        self._obs = []
        for index, graph_input in enumerate(graph.inputs):
            if graph_input.role == "observation":
                key = graph_input.key or ()
                space = _leaf_space(self.observation_space, key)
                what = f"observation[{'.'.join(key)!r}]" if key else "observation"
                self._obs.append((index, key, _leaf_feeder(space, what)))
        self._states = [(i, g) for i, g in enumerate(graph.inputs) if g.role == "state"]
        self._start = roles.index("episode_start") if "episode_start" in roles else None
        self._mask = roles.index("action_mask") if "action_mask" in roles else None
        self._simple = roles == ["observation"] and not isinstance(self.observation_space, DictSpec)
        self._dry_run()

    @property
    def is_recurrent(self) -> bool:
        """Whether ``predict`` carries a recurrent state."""
        return bool(self._states)

    def seed(self, seed: int | None) -> None:
        """Reseed the generator used for ``deterministic=False``."""
        self._ctx.rng = np.random.default_rng(seed)

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Act on one observation or a batch, exactly as SB3's ``model.predict``.

        Args:
            observation: one observation or a batch (a dict of arrays for dict spaces).
            state: recurrent state from the previous call (``None`` at the start).
            episode_start: per batch row, whether an episode starts (resets the state).
            deterministic: take the distribution's mode instead of sampling.
            action_masks: booleans per action (MaskablePPO); ``None`` allows every action.

        Returns:
            The action (batch axis removed for a single observation) and the next state
            (``state`` unchanged for non-recurrent policies).

        Example:
            >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
        """
        self._ctx.deterministic = bool(deterministic)
        if self._simple:
            values, vectorized = self._obs[0][2](observation)
            results = self._execute((values,))
        else:
            values, vectorized = self._feed(observation, state, episode_start, action_masks)
            results = self._execute(values)
        action = results[0] if vectorized else results[0][0]
        if self._states:
            return action, tuple(results[1:])
        return action, state

    def _feed(self, observation: Any, state: Any, episode_start: Any, action_masks: Any) -> tuple[list, bool]:
        """All graph inputs in order, and whether the observation had a batch axis."""
        values: list[Any] = [None] * len(self._inputs)
        if isinstance(self.observation_space, DictSpec) and not isinstance(observation, Mapping):
            raise ObservationError(
                f"the policy observes a dict space; pass a dict of arrays, found {type(observation).__name__}"
            )
        batches, vectorized = set(), False
        for index, key, feed in self._obs:
            leaf = observation
            for part in key:
                if not isinstance(leaf, Mapping) or part not in leaf:
                    raise ObservationError(f"the observation lacks key {'.'.join(key)!r}")
                leaf = leaf[part]
            values[index], vec = feed(leaf)
            batches.add(values[index].shape[0])
            vectorized = vectorized or vec
        if len(batches) != 1:
            raise ObservationError(f"the observation's keys have different batch sizes: {sorted(batches)}")
        batch = batches.pop()
        self._feed_state(state, batch, values)
        if self._start is not None:
            start = np.zeros(batch, np.float32) if episode_start is None else episode_start
            values[self._start] = _reshaped(start, np.float32, (batch,), "episode_start")
        if self._mask is not None and action_masks is not None:
            size = self._inputs[self._mask].size
            values[self._mask] = _reshaped(action_masks, bool, (batch, size), "action_masks")
        return values, vectorized

    def _feed_state(self, state: Any, batch: int, values: list) -> None:
        if state is not None and len(state) != len(self._states):
            raise ObservationError(f"expected a state of {len(self._states)} arrays, found {len(state)}")
        for position, (index, spec) in enumerate(self._states):
            shape = list(spec.shape)
            shape.insert(spec.batch_axis, batch)
            if state is None:
                values[index] = np.zeros(shape, dtype=spec.dtype)
            else:
                values[index] = _reshaped(state[position], spec.dtype, tuple(shape), f"state[{position}]", exact=True)

    def _execute(self, values) -> tuple:
        try:
            return self._programs[self._ctx.deterministic](*values)
        except RlportError:
            raise
        except _RUNTIME_ERRORS as exc:
            raise self._diagnose(list(values)) from exc

    def _diagnose(self, inputs: list) -> GraphError:
        """Re-run node by node to name the op that failed (only on the error path)."""
        values = dict(zip((g.name for g in self._inputs), inputs, strict=True))
        for fn, node in self._steps:
            args = [values[name] for name in node.inputs]
            try:
                result = fn(*args)
            except _RUNTIME_ERRORS as exc:
                shapes = [getattr(a, "shape", None) for a in args]
                return GraphError(
                    f"op {node.op!r} (outputs {list(node.outputs)}) failed on inputs of shapes {shapes}: {exc}"
                )
            outputs = [result] if len(node.outputs) == 1 else list(result)
            values.update(zip(node.outputs, outputs, strict=True))
        return GraphError("the graph failed, but not when run node by node; please report this")

    def _dry_run(self) -> None:
        """Run the graph once on a dummy batch: shape errors surface at load, not in the field."""
        batch = 2
        obs = dummy_observation(self.observation_space, batch)
        with np.errstate(all="ignore"):
            action, _ = self.predict(obs, deterministic=True)
        if isinstance(self.action_space, DictSpec):
            raise GraphError("dict action spaces are not supported (SB3 does not support them either)")
        expected = (batch, *self.action_space.shape)
        if np.shape(action) != expected:
            raise GraphError(
                f"the graph's output has shape {np.shape(action)} for a batch of {batch}, "
                f"but the action space needs {expected}"
            )


def _leaf_space(space, key: tuple[str, ...]):
    for part in key:
        if not isinstance(space, DictSpec):
            raise GraphError(f"observation input key {list(key)} does not fit a {type(space).__name__} space")
        space = space[part]
    return space


def _reshaped(value: Any, dtype: Any, shape: tuple[int, ...], what: str, exact: bool = False) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.shape == shape or (not exact and array.size == int(np.prod(shape))):
        return array.reshape(shape)
    raise ObservationError(f"{what} has shape {array.shape}, expected {shape}")
