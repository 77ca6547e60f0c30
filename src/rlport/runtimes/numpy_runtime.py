"""Run a bundle's policy graph with numpy alone, following SB3's ``predict`` convention.

Example:
    >>> import rlport
    >>> policy = rlport.load("cartpole.rlp")                      # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.bundle.spaces import DictSpec, batch_observation, dummy_observation
from rlport.errors import GraphError, ObservationError, RlportError
from rlport.graph.schema import op_schema
from rlport.runtimes.numpy_ops import IMPLEMENTATIONS, PREPARE

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
    """Turn a node into a one-argument-list callable with its parameters and attributes bound."""
    schema = op_schema(node.op)
    fn = IMPLEMENTATIONS.get(node.op)
    if fn is None:
        raise GraphError(f"op {node.op!r} has no numpy implementation")
    attrs = node.resolved_attrs()
    params = {role: _widen(tensors[name]) for role, name in node.params.items()}
    kwargs = PREPARE[node.op](params, attrs) if node.op in PREPARE else {**params, **attrs}
    if schema.stochastic:
        kwargs["ctx"] = ctx
    if not kwargs:
        return fn
    return lambda *args: fn(*args, **kwargs)


class NumpyPolicy:
    """A bundle's policy, ready to act. Needs numpy only.

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
        slots: dict[str, int] = {}
        for graph_input in graph.inputs:
            slots[graph_input.name] = len(slots)
        self._steps = []
        for node in graph.nodes():
            ins = tuple(slots[name] for name in node.inputs)
            for name in node.outputs:
                slots[name] = len(slots)
            outs = tuple(slots[name] for name in node.outputs)
            self._steps.append((_bind(node, bundle.tensors, self._ctx), ins, outs, node))
        self._n_slots = len(slots)
        self._obs = [(i.key or (), slots[i.name]) for i in graph.inputs_with_role("observation")]
        self._states = [(i, slots[i.name], slots[i.output]) for i in graph.inputs_with_role("state")]
        self._start = [slots[i.name] for i in graph.inputs_with_role("episode_start")]
        self._mask = [(i, slots[i.name]) for i in graph.inputs_with_role("action_mask")]
        self._output = slots[graph.output]
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
        """
        values: list[Any] = [None] * self._n_slots
        batch, vectorized = self._feed_observation(observation, values)
        if self._states:
            self._feed_state(state, batch, values)
        if self._start:
            start = np.zeros(batch, np.float32) if episode_start is None else episode_start
            values[self._start[0]] = np.asarray(start, dtype=np.float32).reshape(batch)
        if self._mask and action_masks is not None:
            spec, slot = self._mask[0]
            values[slot] = np.asarray(action_masks, dtype=bool).reshape(batch, spec.size)
        self._ctx.deterministic = deterministic
        self._run(values)
        action = values[self._output]
        if not vectorized:
            action = action.squeeze(axis=0)
        if self._states:
            return action, tuple(values[out] for _, _, out in self._states)
        return action, state

    def _feed_observation(self, observation: Any, values: list) -> tuple[int, bool]:
        space = self.observation_space
        if not isinstance(space, DictSpec):
            array, vectorized = batch_observation(observation, space)
            values[self._obs[0][1]] = array
            return array.shape[0], vectorized
        if not isinstance(observation, Mapping):
            raise ObservationError(
                f"the policy observes a dict space; pass a dict of arrays, found {type(observation).__name__}"
            )
        batches, vectorized = set(), False
        for key, slot in self._obs:
            leaf, sub = observation, space
            for part in key:
                if not isinstance(leaf, Mapping) or part not in leaf:
                    raise ObservationError(f"the observation lacks key {'.'.join(key)!r}")
                leaf, sub = leaf[part], sub[part]
            array, vec = batch_observation(leaf, sub, what=f"observation[{'.'.join(key)!r}]")
            values[slot] = array
            batches.add(array.shape[0])
            vectorized = vectorized or vec
        if len(batches) != 1:
            raise ObservationError(f"the observation's keys have different batch sizes: {sorted(batches)}")
        return batches.pop(), vectorized

    def _feed_state(self, state: Any, batch: int, values: list) -> None:
        if state is not None and len(state) != len(self._states):
            raise ObservationError(f"expected a state of {len(self._states)} arrays, found {len(state)}")
        for index, (spec, slot, _) in enumerate(self._states):
            shape = list(spec.shape)
            shape.insert(spec.batch_axis, batch)
            if state is None:
                values[slot] = np.zeros(shape, dtype=spec.dtype)
                continue
            array = np.asarray(state[index], dtype=spec.dtype)
            if list(array.shape) != shape:
                raise ObservationError(f"state {index} has shape {array.shape}, expected {tuple(shape)}")
            values[slot] = array

    def _run(self, values: list) -> None:
        for fn, ins, outs, node in self._steps:
            try:
                result = fn(*[values[i] for i in ins])
            except RlportError:
                raise
            except _RUNTIME_ERRORS as exc:
                shapes = [getattr(values[i], "shape", None) for i in ins]
                raise GraphError(
                    f"op {node.op!r} (outputs {list(node.outputs)}) failed on inputs of shapes {shapes}: {exc}"
                ) from exc
            if len(outs) == 1:
                values[outs[0]] = result
            else:
                for slot, value in zip(outs, result, strict=True):
                    values[slot] = value

    def _dry_run(self) -> None:
        """Run the graph once on a dummy batch: shape errors surface at load, not in the field."""
        batch = 2
        obs = dummy_observation(self.observation_space, batch)
        with np.errstate(all="ignore"):
            action, _ = self.predict(obs, deterministic=True)
        expected = (batch, *self.action_space.shape) if hasattr(self.action_space, "shape") else None
        if expected is not None and action.shape != expected:
            raise GraphError(
                f"the graph's output has shape {action.shape} for a batch of {batch}, but the action "
                f"space needs {expected}"
            )
