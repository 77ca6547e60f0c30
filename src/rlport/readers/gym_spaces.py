"""Convert between gymnasium (or gym) spaces and rlport's space specs."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.bundle.spaces import (
    BoxSpec,
    DictSpec,
    DiscreteSpec,
    MultiBinarySpec,
    MultiDiscreteSpec,
    SpaceSpec,
)
from rlport.errors import MissingDependencyError, SpaceError, UnsupportedError

__all__ = ["spec_from_space", "space_from_spec"]


def spec_from_space(space: Any) -> SpaceSpec:
    """The spec of a gymnasium space (matched by class name, so gym-era objects work too)."""
    kind = type(space).__name__
    if kind == "Box":
        return BoxSpec(
            tuple(int(s) for s in space.shape),
            np.dtype(space.dtype).name,
            np.array(space.low).copy(),
            np.array(space.high).copy(),
        )
    if kind == "Discrete":
        return DiscreteSpec(int(space.n), int(getattr(space, "start", 0)))
    if kind == "MultiDiscrete":
        nvec = np.asarray(space.nvec)
        start = np.asarray(getattr(space, "start", np.zeros_like(nvec)))
        return MultiDiscreteSpec(
            tuple(int(v) for v in nvec.reshape(-1)),
            tuple(nvec.shape),
            tuple(int(v) for v in start.reshape(-1)),
            np.dtype(space.dtype).name,
        )
    if kind == "MultiBinary":
        n = space.n
        return MultiBinarySpec(tuple(int(v) for v in np.atleast_1d(n)))
    if kind == "Dict":
        return DictSpec(tuple((str(k), spec_from_space(s)) for k, s in space.spaces.items()))
    raise UnsupportedError(
        f"space {kind} is not supported (supported: Box, Discrete, MultiDiscrete, MultiBinary, Dict)"
    )


def space_from_spec(spec: SpaceSpec) -> Any:
    """The gymnasium space for a spec (gymnasium is imported here)."""
    try:
        from gymnasium import spaces
    except ImportError as exc:
        raise MissingDependencyError('this needs gymnasium; pip install "rlport[envs]"') from exc
    if isinstance(spec, BoxSpec):
        return spaces.Box(low=spec.low, high=spec.high, shape=spec.shape, dtype=np.dtype(spec.dtype))
    if isinstance(spec, DiscreteSpec):
        return spaces.Discrete(spec.n, start=spec.start)
    if isinstance(spec, MultiDiscreteSpec):
        nvec = np.array(spec.nvec).reshape(spec.shape)
        return spaces.MultiDiscrete(nvec, dtype=np.dtype(spec.dtype), start=np.array(spec.start).reshape(spec.shape))
    if isinstance(spec, MultiBinarySpec):
        return spaces.MultiBinary(list(spec.shape) if len(spec.shape) > 1 else spec.shape[0])
    if isinstance(spec, DictSpec):
        from collections import OrderedDict

        return spaces.Dict(OrderedDict((k, space_from_spec(s)) for k, s in spec.spaces))
    raise SpaceError(f"no gymnasium space for {type(spec).__name__}")
