"""Manifest pieces other than spaces and the graph: env spec, probes summary, canonical JSON.

See docs/FORMAT.md sections 2, 6 and 7.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from rlport.errors import BundleError, FormatVersionError, short

__all__ = [
    "WrapperSpec",
    "EnvSpec",
    "ProbeInfo",
    "canonical_json",
    "parse_json",
    "check_fields_known",
    "FIELDS_SINCE",
    "KNOWN_WRAPPERS",
    "MAX_FRAME_STACK",
]

KNOWN_WRAPPERS = ("time_limit", "time_feature", "frame_stack")
MAX_FRAME_STACK = 64
"""The most frames a ``frame_stack`` wrapper may stack (Atari agents stack 4)."""
MAX_STEPS = 1 << 31
"""The largest step count a wrapper or ``max_episode_steps`` may name."""
MAX_NAME_LENGTH = 256
"""The longest wrapper name a manifest may hold."""
_WRAPPER_KWARGS: dict[str, dict[str, tuple[str, int, int]]] = {
    "time_limit": {"max_episode_steps": ("int", 1, MAX_STEPS)},
    "time_feature": {"max_steps": ("int", 1, MAX_STEPS), "test_mode": ("bool", 0, 1)},
    "frame_stack": {"n_stack": ("int", 1, MAX_FRAME_STACK)},
}
"""The keyword arguments each known wrapper takes: name -> (kind, minimum, maximum)."""


def canonical_json(data: Any) -> bytes:
    """The one byte form of a JSON value rlport writes (sorted keys, compact, ASCII, newline)."""
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"the manifest holds a value JSON cannot represent: {exc}") from exc
    return (text + "\n").encode("ascii")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a manifest")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large for a float64")
    return value


def parse_json(data: bytes, what: str) -> Any:
    """Parse strict JSON (no NaN/Infinity, no float beyond float64, no duplicate keys) or raise :class:`BundleError`."""
    try:
        return json.loads(
            data.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{what} is not valid JSON ({short(str(exc), 200)}); the bundle is corrupt") from exc


@dataclass(frozen=True)
class WrapperSpec:
    """One declarative env wrapper, applied innermost first."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_NAME_LENGTH:
            raise BundleError(
                f"an env wrapper needs a name of 1 to {MAX_NAME_LENGTH} characters, found {short(self.name)}"
            )
        if not isinstance(self.kwargs, dict):
            raise BundleError(f"wrapper {short(self.name)}: 'kwargs' must be an object")
        known = _WRAPPER_KWARGS.get(self.name)
        if known is None:
            return  # recorded by name (an RL Zoo wrapper rlport cannot build); `make_env` refuses it
        for key, value in self.kwargs.items():
            if key not in known:
                raise BundleError(f"wrapper {self.name!r} takes {sorted(known)}, not {short(key)}")
            kind, low, high = known[key]
            ok = isinstance(value, bool) if kind == "bool" else isinstance(value, int) and not isinstance(value, bool)
            if not ok or not low <= value <= high:
                wanted = "a boolean" if kind == "bool" else f"an integer in {low}..{high}"
                raise BundleError(f"wrapper {self.name!r}: {key} must be {wanted}, found {short(value)}")

    @classmethod
    def from_json(cls, data: Any) -> WrapperSpec:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise BundleError(f"an env wrapper must be an object with a 'name', found {short(data)}")
        return cls(data["name"], data.get("kwargs", {}))


@dataclass(frozen=True)
class EnvSpec:
    """The environment a policy acts in: a gymnasium id, its kwargs and wrappers."""

    id: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: tuple[WrapperSpec, ...] = ()
    max_episode_steps: int | None = None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "kwargs": dict(self.kwargs),
            "wrappers": [w.to_json() for w in self.wrappers],
            "max_episode_steps": self.max_episode_steps,
        }

    @classmethod
    def from_json(cls, data: Any) -> EnvSpec:
        if not isinstance(data, dict):
            raise BundleError(f"'env' must be an object, found {type(data).__name__}")
        env_id = data.get("id")
        kwargs = data.get("kwargs", {})
        wrappers = data.get("wrappers", [])
        steps = data.get("max_episode_steps")
        if env_id is not None and not isinstance(env_id, str):
            raise BundleError(f"env id must be a string or null, found {short(env_id)}")
        if not isinstance(kwargs, dict) or not isinstance(wrappers, list):
            raise BundleError("env 'kwargs' must be an object and 'wrappers' a list")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or not 0 < steps <= MAX_STEPS):
            raise BundleError(
                f"env max_episode_steps must be an integer in 1..{MAX_STEPS} or null, found {short(steps)}"
            )
        return cls(env_id, kwargs, tuple(WrapperSpec.from_json(w) for w in wrappers), steps)


@dataclass(frozen=True)
class ProbeInfo:
    """Summary of ``probes.safetensors``: how many probes, whether they are one stream, whence."""

    count: int
    sequential: bool
    source: str

    def to_json(self) -> dict:
        return {"count": self.count, "sequential": self.sequential, "source": self.source}

    @classmethod
    def from_json(cls, data: Any) -> ProbeInfo:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("count"), int)
            or isinstance(data.get("count"), bool)
            or data["count"] < 0
            or not isinstance(data.get("sequential"), bool)
            or not isinstance(data.get("source"), str)
        ):
            raise BundleError(
                f"'probes' must be {{count: int >= 0, sequential: bool, source: str}}, found {short(data)}"
            )
        return cls(data["count"], data["sequential"], data["source"])


FIELDS_SINCE: dict[str, tuple[int, int]] = {"encodings": (1, 1)}
"""Top-level manifest fields added after 1.0, with the format version that added them."""
_FIELD_MEANING = {"encodings": "quantised tensor encodings"}


def check_fields_known(manifest: dict, declared: tuple[int, int], reader: tuple[int, int], what: str) -> None:
    """Refuse a field newer than the bundle's declared version, or newer than the ``reader``'s version.

    Args:
        manifest: the parsed manifest.
        declared: the version the bundle declares (``format_version``, equal to the archive comment's).
        reader: the newest version the reading rlport knows (``(1, 1)`` here; ``(1, 0)`` is how a 1.0
            reader behaves).
        what: how messages name the bundle.

    Raises:
        FormatVersionError: the field needs a newer reader (a 1.0 reader given ``encodings``).
        BundleError: the bundle declares a version older than a field it holds (corrupt).
    """
    for name, since in FIELDS_SINCE.items():
        if name not in manifest:
            continue
        needed = f"{since[0]}.{since[1]}"
        if reader < since:
            raise FormatVersionError(
                f"{what}: uses {_FIELD_MEANING[name]} (format {needed}); this rlport reads format "
                f"{reader[0]}.{reader[1]}: upgrade rlport (pip install -U rlport)"
            )
        if declared < since:
            raise BundleError(
                f"{what}: declares format {declared[0]}.{declared[1]} but holds {name!r}, a field of format "
                f"{needed}; the bundle is corrupt"
            )
