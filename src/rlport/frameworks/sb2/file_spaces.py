"""gym spaces as SB2 files pickle them (gym 0.1x ``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``,
``Dict``) -> rlport space specs, from the inert records of the allow-list reader.

gym 0.1x pickles a space's ``__dict__``: ``low``/``high``/``shape``/``dtype`` for a Box (``_shape``
in later gym), ``n`` for Discrete and MultiBinary, ``nvec`` for MultiDiscrete, ``spaces`` (an
OrderedDict) for Dict; ``np_random`` when the space was seeded (ignored).

Example:
    >>> spec = space_spec(record, "model.pkl: observation_space")   # doctest: +SKIP
    >>> spec.shape                                                  # doctest: +SKIP
    (4,)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlport.bundle.spaces import (
    MAX_DEPTH,
    MAX_ELEMENTS,
    BoxSpec,
    DictSpec,
    DiscreteSpec,
    MultiBinarySpec,
    MultiDiscreteSpec,
    SpaceSpec,
)
from rlport.errors import BundleError, SpaceError, UnsupportedError
from rlport.readers import safe_pickle
from rlport.readers.untrusted import echo

__all__ = ["space_spec", "MAX_SPACE_DIMS"]

MAX_SPACE_DIMS = 32
"""The most dimensions a space in an SB2 file may have (numpy 1's limit; real spaces have at most 3)."""
_KINDS = ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict")


def _shape(value: Any, what: str) -> tuple[int, ...]:
    items = list(value) if isinstance(value, (tuple, list)) else None
    ok = items is not None and len(items) <= MAX_SPACE_DIMS and all(type(v) is int and v >= 0 for v in items)
    if not ok or math.prod(items) > MAX_ELEMENTS:
        raise SpaceError(f"{what}: shape {echo(value)} is not at most {MAX_SPACE_DIMS} non-negative sizes with at "
                         f"most {MAX_ELEMENTS} elements")  # fmt: skip
    return tuple(items)


def _number_dtype(value: Any, what: str) -> np.dtype:
    dtype = value if isinstance(value, np.dtype) else None
    if dtype is None or dtype.kind not in "biuf":
        raise SpaceError(f"{what}: dtype {echo(value)} is not a numpy number type")
    return dtype


def _bounds(attrs: dict[str, Any], key: str, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    value = attrs[key]
    if not isinstance(value, (np.ndarray, np.generic, int, float)):
        raise SpaceError(f"{what}: Box {key} is {type(value).__name__}, not numbers")
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.size not in (1, math.prod(shape)):
        raise SpaceError(f"{what}: Box {key} holds {array.size} {array.dtype} values for shape {shape}")
    return np.broadcast_to(array.reshape(-1) if array.size > 1 else array, (math.prod(shape),)).reshape(shape)


def _box(attrs: dict[str, Any], what: str) -> BoxSpec:
    shape = _shape(attrs["_shape"] if attrs.get("_shape") is not None else attrs["shape"], what)
    dtype = _number_dtype(attrs["dtype"], what)
    low, high = (_bounds(attrs, key, shape, dtype, what).astype(dtype) for key in ("low", "high"))
    return BoxSpec(shape, dtype.name, low, high)


def _int(value: Any, what: str) -> int:
    value = value.item() if isinstance(value, np.generic) else value
    if type(value) is not int:
        raise SpaceError(f"{what}: expected an integer, found {echo(value)}")
    return value


def _spec(kind: str, attrs: dict[str, Any], what: str, depth: int) -> SpaceSpec:
    if kind == "Box":
        return _box(attrs, what)
    if kind == "Discrete":
        return DiscreteSpec(_int(attrs["n"], what), _int(attrs.get("start", 0), what))
    if kind == "MultiDiscrete":
        nvec = np.asarray(attrs["nvec"])
        _shape(list(nvec.shape), what)
        if nvec.dtype.kind not in "iu":
            raise SpaceError(f"{what}: MultiDiscrete nvec holds {nvec.dtype}, not integers")
        return MultiDiscreteSpec(tuple(int(v) for v in nvec.reshape(-1)), tuple(nvec.shape),
                                 tuple(0 for _ in range(nvec.size)), "int64")  # fmt: skip
    if kind == "MultiBinary":
        n = attrs["n"]
        return MultiBinarySpec(_shape(list(n) if isinstance(n, (list, tuple)) else [_int(n, what)], what))
    spaces = attrs["spaces"]
    if not isinstance(spaces, dict) or not all(isinstance(k, str) for k in spaces):
        raise SpaceError(f"{what}: a Dict space's spaces should be a mapping with string keys, found {echo(spaces)}")
    return DictSpec(tuple((k, space_spec(v, f"{what}[{echo(k, 60)}]", depth + 1)) for k, v in spaces.items()))


def space_spec(record: Any, what: str, depth: int = 0) -> SpaceSpec:
    """The space spec of a pickled gym space record.

    Raises:
        UnsupportedError: not one of the gym spaces rlport represents (Tuple, a custom space).
        SpaceError: a shape, dtype or bound that does not describe a valid space.
        BundleError: the record lacks what its kind needs.
    """
    name = safe_pickle.global_name(record) or type(record).__name__
    kind = name.rsplit(".", 1)[-1]
    gym = name.startswith(("gym.", "gymnasium."))
    if not isinstance(record, safe_pickle.Instance) or not gym or kind not in _KINDS:
        raise UnsupportedError(f"{what}: space {echo(name, 80)} is not supported (supported: gym {', '.join(_KINDS)})")
    if depth > MAX_DEPTH:
        raise SpaceError(f"{what}: Dict spaces nest more than {MAX_DEPTH} deep")
    try:
        return _spec(kind, record.attributes(), what, depth)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BundleError(f"{what}: a gym {kind} record lacks what it needs ({echo(str(exc), 200)})") from exc
