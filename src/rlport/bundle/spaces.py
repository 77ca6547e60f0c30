"""Observation and action space specs: small, validated, JSON round-trippable.

They mirror gymnasium's spaces without importing gymnasium (see ``docs/FORMAT.md`` section 3).

Example:
    >>> spec = BoxSpec.create(low=-1.0, high=1.0, shape=(2,))
    >>> space_from_json(spec.to_json()) == spec
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import singledispatch
from typing import Any

import numpy as np

from rlport.errors import ObservationError, SpaceError, short

__all__ = [
    "BoxSpec",
    "DiscreteSpec",
    "MultiDiscreteSpec",
    "MultiBinarySpec",
    "DictSpec",
    "SpaceSpec",
    "space_from_json",
    "is_image",
    "batch_observation",
    "leaves",
    "dummy_observation",
    "item_shape",
    "sample_observations",
    "MAX_ELEMENTS",
]

MAX_ELEMENTS = 1 << 24
"""The most elements a space may have, all its leaves together (docs/FORMAT.md section 1)."""
SPACE_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64")  # fmt: skip
"""The dtypes a box or multi_discrete space may have (every backend represents them)."""
MAX_LEAVES = 1024
"""The most leaves (non-dict sub-spaces) a dict space may have."""
MAX_DEPTH = 16
"""The deepest a dict space may nest."""
MAX_DISCRETE = 1 << 31
"""The most values a discrete space (or one entry of a multi_discrete one) may have; starts are bounded likewise."""


def _declared_elements(data: Any, depth: int = 0) -> tuple[int, int]:
    """(elements, leaves) a space's JSON declares, counted before anything is allocated."""
    if depth > MAX_DEPTH:
        raise SpaceError(f"a space nests more than {MAX_DEPTH} dict levels deep")
    if not isinstance(data, dict):
        return 0, 1
    if data.get("type") == "dict" and isinstance(data.get("spaces"), list):
        total = leaves = 0
        for entry in data["spaces"]:
            elements, count = _declared_elements(entry.get("space") if isinstance(entry, dict) else None, depth + 1)
            total, leaves = total + elements, leaves + count
            if total > MAX_ELEMENTS or leaves > MAX_LEAVES:
                break
        return total, leaves
    shape = data.get("shape", [len(data["nvec"])] if isinstance(data.get("nvec"), list) else [])
    if isinstance(shape, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape):
        return math.prod(shape), 1
    return 0, 1


def _encode_number(value: float | int) -> float | int | str:
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    if math.isnan(value):
        raise SpaceError("space bounds must not be NaN")
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _decode_number(value: Any, what: str) -> float | int:
    if isinstance(value, str) and value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{what}: expected a number or 'inf'/'-inf', found {short(value)}")
    if isinstance(value, int) and abs(value) > 2**63:
        raise SpaceError(f"{what}: the bound {short(value)} is beyond any numpy dtype; use 'inf' or '-inf'")
    return value


def _encode_bounds(array: np.ndarray) -> Any:
    flat = array.reshape(-1)
    if flat.size > 0 and np.all(flat == flat[0]):
        return _encode_number(flat[0].item())
    return [_encode_number(v) for v in flat.tolist()]


def _decode_bounds(value: Any, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    size = math.prod(shape)
    if isinstance(value, list):
        if len(value) != size:
            raise SpaceError(f"{what}: expected {size} bounds for shape {shape}, found {len(value)}")
        numbers = np.array([_decode_number(v, what) for v in value], dtype=np.float64).reshape(shape)
    else:
        numbers = np.full(shape, _decode_number(value, what), dtype=np.float64)
    if dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        bad = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < info.min) | (numbers > info.max)
        if np.any(bad):
            raise SpaceError(f"{what}: {numbers[bad].reshape(-1)[0].item()!r} is not a valid {dtype.name} bound")
    return numbers.astype(dtype)


def _int_list(value: Any, what: str, minimum: int | None = None) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        raise SpaceError(f"{what}: expected a list of integers, found {value!r}")
    if minimum is not None and any(v < minimum for v in value):
        raise SpaceError(f"{what}: every value must be >= {minimum}, found {list(value)}")
    return tuple(int(v) for v in value)


def _check_size(shape: tuple[int, ...], kind: str) -> None:
    if math.prod(shape) > MAX_ELEMENTS:
        raise SpaceError(
            f"{kind} space of shape {tuple(shape)} has {math.prod(shape)} elements, "
            f"more than the limit of {MAX_ELEMENTS}"
        )


def _numeric_dtype(name: Any, kind: str) -> np.dtype:
    """A bool, integer or float numpy dtype, from its name."""
    dtype = np.dtype(name) if isinstance(name, str) and name in SPACE_DTYPES else None
    if dtype is None:
        raise SpaceError(
            f"{kind} dtype {short(name)} is not the name of a numpy bool, integer or float dtype that every "
            f"backend represents ({', '.join(SPACE_DTYPES)})"
        )
    return dtype


def _require(data: dict, key: str, kind: str) -> Any:
    if key not in data:
        raise SpaceError(f"{kind} space: missing field '{key}'")
    return data[key]


@dataclass(frozen=True, eq=False)
class BoxSpec:
    """A box of per-element bounds (gymnasium ``Box``)."""

    shape: tuple[int, ...]
    dtype: str
    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        _check_size(_int_list(self.shape, "box shape", minimum=0), "box")
        _numeric_dtype(self.dtype, "box")
        for name, bound in (("low", self.low), ("high", self.high)):
            if not isinstance(bound, np.ndarray):
                raise SpaceError(f"box {name} must be a numpy array, found {type(bound).__name__}")
            if bound.shape != tuple(self.shape):
                raise SpaceError(f"box {name} has shape {bound.shape}, expected {self.shape}")
        if np.any(np.isnan(self.low)) or np.any(np.isnan(self.high)):
            raise SpaceError("box bounds must not be NaN")
        if np.any(self.low > self.high):
            raise SpaceError("box bounds must have low <= high for every element")

    @classmethod
    def create(cls, low: Any, high: Any, shape: tuple[int, ...], dtype: str = "float32"):
        """Build from scalar or array bounds, broadcast to ``shape``."""
        np_dtype = np.dtype(dtype)
        low_a = np.broadcast_to(np.asarray(low, dtype=np_dtype), shape).copy()
        high_a = np.broadcast_to(np.asarray(high, dtype=np_dtype), shape).copy()
        return cls(tuple(shape), np_dtype.name, low_a, high_a)

    def to_json(self) -> dict:
        return {
            "type": "box",
            "shape": list(self.shape),
            "dtype": self.dtype,
            "low": _encode_bounds(self.low),
            "high": _encode_bounds(self.high),
        }

    @classmethod
    def from_json(cls, data: dict) -> BoxSpec:
        shape = _int_list(_require(data, "shape", "box"), "box shape", minimum=0)
        _check_size(shape, "box")
        dtype = _numeric_dtype(_require(data, "dtype", "box"), "box")
        low = _decode_bounds(_require(data, "low", "box"), shape, dtype, "box low")
        high = _decode_bounds(_require(data, "high", "box"), shape, dtype, "box high")
        return cls(shape, dtype.name, low, high)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoxSpec):
            return NotImplemented
        return (
            tuple(self.shape) == tuple(other.shape)
            and np.dtype(self.dtype) == np.dtype(other.dtype)
            and np.array_equal(self.low, other.low)
            and np.array_equal(self.high, other.high)
        )

    def __hash__(self) -> int:
        return hash((tuple(self.shape), np.dtype(self.dtype).name))

    def __repr__(self) -> str:
        return f"BoxSpec(shape={self.shape}, dtype={self.dtype!r})"


@dataclass(frozen=True)
class DiscreteSpec:
    """One integer in ``start .. start + n - 1`` (gymnasium ``Discrete``)."""

    n: int
    start: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 0 < self.n <= MAX_DISCRETE:
            raise SpaceError(f"discrete n must be a positive integer (at most {MAX_DISCRETE}), found {short(self.n)}")
        if isinstance(self.start, bool) or not isinstance(self.start, int) or abs(self.start) > MAX_DISCRETE:
            raise SpaceError(
                f"discrete start must be an integer in -{MAX_DISCRETE}..{MAX_DISCRETE}, found {short(self.start)}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    def to_json(self) -> dict:
        return {"type": "discrete", "n": self.n, "start": self.start}

    @classmethod
    def from_json(cls, data: dict) -> DiscreteSpec:
        return cls(_require(data, "n", "discrete"), data.get("start", 0))


@dataclass(frozen=True)
class MultiDiscreteSpec:
    """A vector of independent discrete values (gymnasium ``MultiDiscrete``)."""

    nvec: tuple[int, ...]
    shape: tuple[int, ...]
    start: tuple[int, ...]
    dtype: str = "int64"

    def __post_init__(self) -> None:
        _check_size(_int_list(self.shape, "multi_discrete shape", minimum=0), "multi_discrete")
        if any(v > MAX_DISCRETE for v in _int_list(self.nvec, "multi_discrete nvec", minimum=1)):
            raise SpaceError(f"multi_discrete nvec entries must be at most {MAX_DISCRETE}")
        if any(abs(v) > MAX_DISCRETE for v in _int_list(self.start, "multi_discrete start")):
            raise SpaceError(f"multi_discrete start entries must be within -{MAX_DISCRETE}..{MAX_DISCRETE}")
        if _numeric_dtype(self.dtype, "multi_discrete").kind not in "iu":
            raise SpaceError(f"multi_discrete dtype must be a numpy integer dtype, found {self.dtype!r}")
        if math.prod(self.shape) != len(self.nvec) or len(self.start) != len(self.nvec):
            raise SpaceError(
                f"multi_discrete: shape {self.shape}, nvec of {len(self.nvec)} and start of "
                f"{len(self.start)} values do not agree"
            )

    def to_json(self) -> dict:
        return {
            "type": "multi_discrete",
            "nvec": list(self.nvec),
            "shape": list(self.shape),
            "start": list(self.start),
            "dtype": self.dtype,
        }

    @classmethod
    def from_json(cls, data: dict) -> MultiDiscreteSpec:
        nvec = _int_list(_require(data, "nvec", "multi_discrete"), "multi_discrete nvec", 1)
        shape = _int_list(data.get("shape", [len(nvec)]), "multi_discrete shape", 0)
        start = _int_list(data.get("start", [0] * len(nvec)), "multi_discrete start")
        return cls(nvec, shape, start, data.get("dtype", "int64"))


@dataclass(frozen=True)
class MultiBinarySpec:
    """A binary array of ``shape`` (gymnasium ``MultiBinary``)."""

    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_size(_int_list(self.shape, "multi_binary shape", minimum=1), "multi_binary")

    def to_json(self) -> dict:
        return {"type": "multi_binary", "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict) -> MultiBinarySpec:
        shape = _int_list(_require(data, "shape", "multi_binary"), "multi_binary shape", 1)
        return cls(shape)


@dataclass(frozen=True)
class DictSpec:
    """Named sub-spaces in a fixed order (gymnasium ``Dict``)."""

    spaces: tuple[tuple[str, SpaceSpec], ...]

    def __post_init__(self) -> None:
        keys = [key for key, _ in self.spaces]
        if not all(isinstance(k, str) and k for k in keys):
            raise SpaceError(f"dict space keys must be non-empty strings, found {keys}")
        if len(set(keys)) != len(keys):
            raise SpaceError(f"dict space has duplicate keys: {keys}")

    def __getitem__(self, key: str) -> SpaceSpec:
        for name, space in self.spaces:
            if name == key:
                return space
        raise SpaceError(f"dict space has no key {key!r} (keys: {[k for k, _ in self.spaces]})")

    def to_json(self) -> dict:
        return {
            "type": "dict",
            "spaces": [{"key": key, "space": space.to_json()} for key, space in self.spaces],
        }

    @classmethod
    def from_json(cls, data: dict) -> DictSpec:
        entries = _require(data, "spaces", "dict")
        if not isinstance(entries, list):
            raise SpaceError(f"dict space: 'spaces' must be a list, found {type(entries).__name__}")
        pairs = []
        for entry in entries:
            if not isinstance(entry, dict) or "key" not in entry or "space" not in entry:
                raise SpaceError(f"dict space: each entry needs 'key' and 'space', found {entry!r}")
            pairs.append((entry["key"], _space_from_json(entry["space"])))
        return cls(tuple(pairs))


SpaceSpec = BoxSpec | DiscreteSpec | MultiDiscreteSpec | MultiBinarySpec | DictSpec

_BY_TYPE = {
    "box": BoxSpec,
    "discrete": DiscreteSpec,
    "multi_discrete": MultiDiscreteSpec,
    "multi_binary": MultiBinarySpec,
    "dict": DictSpec,
}


def space_from_json(data: Any) -> SpaceSpec:
    """Read a space spec written by ``to_json``; raise :class:`SpaceError` on anything else.

    The sizes it declares are checked against the limits before any bound is allocated.
    """
    elements, count = _declared_elements(data)
    if count > 1 and elements > MAX_ELEMENTS or count > MAX_LEAVES:  # one leaf checks its own size
        raise SpaceError(
            f"the space declares {elements} elements in {count} leaves, over the limits of {MAX_ELEMENTS} "
            f"elements and {MAX_LEAVES} leaves; the bundle is hostile or not a policy rlport can run"
        )
    return _space_from_json(data)


def _space_from_json(data: Any) -> SpaceSpec:
    if not isinstance(data, dict):
        raise SpaceError(f"a space must be a JSON object, found {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _BY_TYPE:
        raise SpaceError(f"unknown space type {kind!r}; known: {', '.join(_BY_TYPE)}")
    return _BY_TYPE[kind].from_json(data)


def is_image(space: SpaceSpec) -> bool:
    """SB3's image test: a 3-d uint8 box bounded by 0 and 255."""
    return (
        isinstance(space, BoxSpec)
        and len(space.shape) == 3
        and space.dtype == "uint8"
        and bool(np.all(space.low == 0))
        and bool(np.all(space.high == 255))
    )


def leaves(space: SpaceSpec, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], SpaceSpec]]:
    """The non-dict sub-spaces of ``space`` with their key paths, in order."""
    if isinstance(space, DictSpec):
        out = []
        for key, sub in space.spaces:
            out.extend(leaves(sub, (*prefix, key)))
        return out
    return [(prefix, space)]


def _maybe_transpose(obs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Accept channel-last images for a channel-first image space (SB3's ``maybe_transpose``)."""
    if obs.shape == shape or obs.shape[1:] == shape:
        return obs
    if obs.ndim == 3:
        transposed = np.transpose(obs, (2, 0, 1))
    elif obs.ndim == 4:
        transposed = np.transpose(obs, (0, 3, 1, 2))
    else:
        return obs
    if transposed.shape == shape or transposed.shape[1:] == shape:
        return transposed
    return obs


@singledispatch
def item_shape(space) -> tuple[int, ...]:
    raise SpaceError(f"no observation layout for {type(space).__name__}")


@item_shape.register
def _(space: BoxSpec) -> tuple[int, ...]:
    return space.shape


@item_shape.register
def _(space: DiscreteSpec) -> tuple[int, ...]:
    return ()


@item_shape.register
def _(space: MultiDiscreteSpec) -> tuple[int, ...]:
    return space.shape


@item_shape.register
def _(space: MultiBinarySpec) -> tuple[int, ...]:
    return space.shape


def batch_observation(obs: Any, space: SpaceSpec, what: str = "observation") -> tuple[np.ndarray, bool]:
    """Give a leaf observation a batch axis, as SB3's ``obs_to_tensor`` does.

    Returns:
        The observation shaped ``(batch, *item_shape)`` and whether it already had a batch axis.
    """
    try:
        array = np.asarray(obs)
    except ValueError as exc:  # ragged nested lists
        raise ObservationError(f"{what}: cannot be read as one numeric array ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise ObservationError(f"{what}: expected a numeric array, found {type(obs).__name__} of dtype {array.dtype}")
    if is_image(space):
        array = _maybe_transpose(array, space.shape)
    shape = item_shape(space)
    if array.shape == shape:
        return array.reshape((1, *shape)), False
    if array.shape[1:] == shape and array.ndim == len(shape) + 1:
        return array, True
    raise ObservationError(
        f"{what}: shape {array.shape} does not fit the policy's space (expected {shape} for one "
        f"observation or (batch, *{shape}) for a batch)"
    )


@singledispatch
def dummy_observation(space, batch: int) -> Any:
    """A valid observation batch (zeros, moved inside the bounds) for dry runs."""
    raise SpaceError(f"no dummy observation for {type(space).__name__}")


@dummy_observation.register
def _(space: BoxSpec, batch: int) -> np.ndarray:
    low = np.where(np.isfinite(space.low), space.low, 0)
    high = np.where(np.isfinite(space.high), space.high, 0)
    zeros = np.minimum(np.maximum(np.zeros(space.shape), low), high)
    return np.broadcast_to(zeros.astype(space.dtype), (batch, *space.shape)).copy()


@dummy_observation.register
def _(space: DiscreteSpec, batch: int) -> np.ndarray:
    return np.zeros(batch, dtype=np.int64)


@dummy_observation.register
def _(space: MultiDiscreteSpec, batch: int) -> np.ndarray:
    return np.zeros((batch, *space.shape), dtype=space.dtype)


@dummy_observation.register
def _(space: MultiBinarySpec, batch: int) -> np.ndarray:
    return np.zeros((batch, *space.shape), dtype=np.int8)


@dummy_observation.register
def _(space: DictSpec, batch: int) -> dict:
    return {key: dummy_observation(sub, batch) for key, sub in space.spaces}


@singledispatch
def sample_observations(space, n: int, rng: np.random.Generator) -> Any:
    """``n`` observations drawn from ``space`` (bounded: uniform; unbounded: normal), like gymnasium's sample."""
    raise SpaceError(f"cannot sample from {type(space).__name__}")


@sample_observations.register
def _(space: BoxSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n, *space.shape)
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    if np.dtype(space.dtype).kind in "iub":
        return rng.integers(low, high, size=shape, endpoint=True).astype(space.dtype)
    normal = rng.standard_normal(shape)
    bounded = np.isfinite(low) & np.isfinite(high)
    uniform = rng.uniform(np.where(bounded, low, 0.0), np.where(bounded, high, 1.0), size=shape)
    above = np.isfinite(low) & ~np.isfinite(high)
    below = ~np.isfinite(low) & np.isfinite(high)
    exponential = rng.exponential(size=shape)
    out = np.where(bounded, uniform, normal)
    out = np.where(above, np.where(np.isfinite(low), low, 0.0) + exponential, out)
    out = np.where(below, np.where(np.isfinite(high), high, 0.0) - exponential, out)
    return out.astype(space.dtype)


@sample_observations.register
def _(space: DiscreteSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    return (space.start + rng.integers(0, space.n, size=n)).astype(np.int64)


@sample_observations.register
def _(space: MultiDiscreteSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    nvec, start = np.asarray(space.nvec), np.asarray(space.start)
    return (start + rng.integers(0, nvec, size=(n, len(nvec)))).reshape(n, *space.shape).astype(space.dtype)


@sample_observations.register
def _(space: MultiBinarySpec, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 2, size=(n, *space.shape)).astype(np.int8)


@sample_observations.register
def _(space: DictSpec, n: int, rng: np.random.Generator) -> dict:
    return {key: sample_observations(sub, n, rng) for key, sub in space.spaces}
