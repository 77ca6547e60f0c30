"""``CPolicy``: a bundle's C export, compiled with the system C compiler and called with ctypes.

Example:
    >>> import rlport
    >>> policy = rlport.load("cartpole.rlp", backend="c")           # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)     # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import numpy as np

from rlport.backends.c.compiler import build_library
from rlport.backends.c.emit import MASK_ERROR, OBSERVATION_ERROR, SAMPLING_ERROR
from rlport.backends.c.generate import generate
from rlport.backends.predict import GraphPredictor
from rlport.errors import GraphError, ObservationError, RlportError

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["CPolicy"]

_P = ctypes.c_void_p


class CPolicy(GraphPredictor):
    """A bundle's policy run by its C export (``rlport.load(path, backend="c")``).

    The export (``rlport export --format c``) is compiled once into a shared library cached by
    its digest (see :mod:`rlport.backends.c.compiler`) and called row by row. Acting
    deterministically gives the numpy backend's actions (discrete: identical; continuous: within
    float32 rounding). Sampling draws the uniform numbers the C code reads from a numpy
    generator (seeded by ``seed``): the same distribution as the numpy backend, not the same draws.
    Calls hold the GIL (the library's scratch arenas are static): threads may share a policy, one call
    runs at a time.

    Args:
        bundle: a loaded :class:`~rlport.bundle.bundle.Bundle`.
        seed: seed of the generator used when ``deterministic=False``.

    Raises:
        MissingDependencyError: no C compiler was found.
        UnsupportedError: the graph uses an op or a dtype the C export lacks.
    """

    backend = "c"

    def __init__(self, bundle: Bundle, seed: int | None = None) -> None:
        self.bundle = bundle
        self.observation_space = bundle.observation_space
        self.action_space = bundle.action_space
        self._code = generate(bundle)
        self.library_path = build_library(self._code.header, self._code.source)
        # PyDLL keeps the GIL during a call: the library's scratch arenas are static, so two Python threads
        # (or two policies of the same bundle, which share the loaded library) never run it at once.
        self._lib = ctypes.PyDLL(str(self.library_path))
        self._act = self._lib.rlport_policy_act_batch
        self._act.argtypes = [ctypes.c_long, _P, _P, _P, _P, _P, _P]
        self._act.restype = ctypes.c_int
        self._rng = np.random.default_rng(seed)
        self._bind_inputs(bundle.graph)
        self._obs_dtypes = [np.dtype(leaf.dtype) for leaf in self._code.observations]
        self._state_dtypes = [np.dtype(leaf.dtype) for leaf in self._code.states]
        self._action_dtype = np.dtype(self._code.action_dtype)
        self._short = self._single_observation_path()
        self._dry_run()

    def _single_observation_path(self) -> tuple | None:
        """For a graph whose one input is an array observation: buffers and a direct call of ``rlport_policy_act``.

        One observation is copied into a preallocated buffer whose address is the ``rlport_observation``
        (a struct of one array), and the action is read from a preallocated buffer: no allocation,
        no ctypes array per call.
        """
        roles = [graph_input.role for graph_input in self._inputs]
        if roles != ["observation"] or self._obs[0][1]:
            return None
        leaf = self._code.observations[0]
        buffer = np.zeros((1, *leaf.shape), dtype=leaf.dtype)
        out = np.zeros((1, *self._code.action_shape), dtype=self._action_dtype)
        act = self._lib.rlport_policy_act
        act.argtypes = [_P, _P, ctypes.c_float, _P, _P, _P]
        act.restype = ctypes.c_int
        return self._obs[0][2], buffer, out, act, _P(buffer.ctypes.data), _P(out.ctypes.data)

    def predict(self, observation, state=None, episode_start=None, deterministic=False, action_masks=None):
        """:meth:`GraphPredictor.predict`, with a short path for one observation of a graph whose one input is an array.

        There, ``state``, ``episode_start`` and ``action_masks`` are ignored, as SB3 ignores them.
        """
        if self._short is None or deterministic is not True:
            return super().predict(observation, state, episode_start, deterministic, action_masks)
        feed, buffer, out, act, source, target = self._short
        value, vectorized = feed(observation)
        if vectorized:
            return super().predict(observation, state, episode_start, deterministic, action_masks)
        np.copyto(buffer, value, casting="unsafe")  # a discrete leaf's values were checked: exact in its dtype
        status = act(source, None, 0.0, None, None, target)
        if status:
            raise _status_error(status)
        return self._checked(out.copy(), False), state

    def seed(self, seed: int | None) -> None:
        """Reseed the generator used for ``deterministic=False``."""
        self._rng = np.random.default_rng(seed)

    def _run(self, values: list, deterministic: bool) -> tuple:
        code = self._code
        keep: list[np.ndarray] = []  # the arrays whose addresses the call takes stay alive until it returns

        def address(array: np.ndarray) -> int:
            keep.append(array)
            return array.ctypes.data

        obs = [
            np.ascontiguousarray(values[index], dtype=dtype)
            for (index, _, _), dtype in zip(self._obs, self._obs_dtypes, strict=True)
        ]
        batch = obs[0].shape[0]
        states = [
            np.ascontiguousarray(np.moveaxis(values[index], spec.batch_axis, 0), dtype=dtype)
            for (index, spec), dtype in zip(self._states, self._state_dtypes, strict=True)
        ]
        obs_table = (_P * len(obs))(*(address(a) for a in obs))
        state_table = (_P * max(len(states), 1))(*(address(a) for a in states))
        start = None if self._start is None or values[self._start] is None else values[self._start]
        start = None if start is None else address(np.ascontiguousarray(start, dtype=np.float32))
        mask = None if self._mask is None or values[self._mask] is None else values[self._mask]
        mask = None if mask is None else address(np.ascontiguousarray(mask, dtype=np.uint8))
        uniforms = None
        if not deterministic:
            uniforms = address(self._rng.random((batch, max(code.uniforms, 1)), dtype=np.float32))
        actions = np.empty((batch, *code.action_shape), dtype=self._action_dtype)
        status = self._act(batch, obs_table, state_table, start, mask, uniforms, address(actions))
        if status:
            raise _status_error(status)
        next_states = [
            np.ascontiguousarray(np.moveaxis(s, 0, spec.batch_axis))
            for s, (_, spec) in zip(states, self._states, strict=True)
        ]
        return (actions, *next_states)


def _status_error(status: int) -> RlportError:
    if status == OBSERVATION_ERROR:
        return ObservationError("a discrete observation is outside its space (0..n-1 after the policy's offset); "
                                "pass values the observation space holds")  # fmt: skip
    if status == MASK_ERROR:
        return ObservationError("an action mask allows no action at all for some row; allow at least one")
    if status == SAMPLING_ERROR:
        return GraphError("the C library was built without sampling (RLPORT_DETERMINISTIC_ONLY)")
    return GraphError(f"the C library returned the unknown status {status}; please report this")
