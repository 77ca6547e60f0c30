"""The argument types of the ``rlport`` command: each checks one option's value as argparse parses it.

A bad value is then an argparse error (``rlport run: error: argument --seed: ...``, exit code 2)
that names the option, what it takes and what was given, before any file is read.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_ENV_KWARGS_LENGTH",
    "MAX_EPISODES",
    "MAX_MODULE_NAME_LENGTH",
    "MAX_OPSET",
    "MAX_PROBES",
    "MAX_SEED",
    "MAX_STEPS",
    "MAX_TIMESTEPS",
    "algorithm",
    "count",
    "env_kwargs",
    "module_name",
    "seed",
]

MAX_EPISODES = 100_000
"""Most episodes one ``run``, ``verify``, ``fingerprint``, ``demo`` or ``import --evaluate`` plays."""
MAX_STEPS = 100_000
"""Most steps per episode ``rlport fingerprint`` records."""
MAX_PROBES = 10_000
"""Most parity probes ``rlport import --probes`` records (each holds one observation: 28 KB for Atari)."""
MAX_SEED = 2**32 - 1
"""Largest seed accepted (seeds are 0 .. 2**32 - 1, the range every seeded library takes)."""
MAX_TIMESTEPS = 100_000_000
"""Most training steps ``rlport demo --timesteps`` takes."""
MAX_ENV_KWARGS_LENGTH = 65_536
"""Longest ``--env-kwargs`` JSON text, in characters."""
MAX_MODULE_NAME_LENGTH = 200
"""Longest ``--env-module`` name, in characters."""
MAX_OPSET = 1_000
"""Largest ``export --opset`` parsed (the exporter then checks it against the installed onnx)."""

_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _shown(text: str, limit: int = 100) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def count(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` to ``maximum``.

    Example:
        >>> count(1, 10)("3")
        3
    """

    def parse(text: str) -> int:
        value = int(text) if _INTEGER.fullmatch(text.strip()) else None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"takes a whole number {minimum:,} .. {maximum:,}, not {_shown(text)}")
        return value

    parse.__name__ = "count"  # argparse names the type in some messages
    return parse


def seed(text: str) -> int:
    """An argparse type: a seed, 0 .. :data:`MAX_SEED`."""
    return count(0, MAX_SEED)(text)


def env_kwargs(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object of keyword arguments for ``gymnasium.make``.

    Example:
        >>> env_kwargs('{"g": 9.0}')
        {'g': 9.0}
    """
    if len(text) > MAX_ENV_KWARGS_LENGTH:
        raise argparse.ArgumentTypeError(f"is {len(text):,} characters, over the limit of {MAX_ENV_KWARGS_LENGTH:,}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise argparse.ArgumentTypeError(
            f"is not a JSON object ({type(exc).__name__}: {str(exc)[:100]}); write e.g. '{{\"g\": 9.0}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"is not a JSON object: found a JSON {type(value).__name__} {_shown(text)}; write e.g. '{{\"g\": 9.0}}'"
        )
    return value


def algorithm(text: str) -> str:
    """An argparse type: an algorithm rlport reads (SB3's ``to_sb3.ALGORITHMS``, or SB2's), in any case."""
    from rlport.frameworks.sb2.model import ALGORITHMS as SB2_ALGORITHMS
    from rlport.frameworks.sb3.to_sb3 import ALGORITHMS

    by_lower = {name: name for name in SB2_ALGORITHMS} | {name.lower(): name for name in ALGORITHMS}
    if text.lower() not in by_lower:
        known = ", ".join(ALGORITHMS) + "; Stable Baselines 2: " + ", ".join(SB2_ALGORITHMS)
        raise argparse.ArgumentTypeError(f"unknown algorithm {_shown(text)}; known: {known}")
    return by_lower[text.lower()]


def module_name(text: str) -> str:
    """An argparse type: a dotted Python module name (``my_envs`` or ``pkg.envs``)."""
    if len(text) > MAX_MODULE_NAME_LENGTH or not _MODULE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"takes a Python module name such as my_envs or pkg.envs, not {_shown(text)}")
    return text
