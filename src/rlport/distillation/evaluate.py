"""How a student compares with its teacher: sizes, agreement on held-out states, paired returns.

Example:
    >>> weights(bundle)                                   # doctest: +SKIP
    {'parameters': 4610, 'bytes': 18440}
    >>> round(paired_difference([1.0, 2.0, 3.0], [1.5, 2.0, 2.5])["high"], 3)
    1.242
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlport.bundle.bundle import Bundle
from rlport.bundle.spaces import BoxSpec

__all__ = ["AGREEMENT_TOLERANCE", "weights", "agreement", "paired_difference", "t_quantile"]

AGREEMENT_TOLERANCE = 0.05
"""Continuous actions agree when every element differs by at most this share of its bound's range (or, unbounded, by
this much)."""

_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
"""Student's t 97.5% quantiles for 1 to 30 degrees of freedom."""


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (a two-sided 95% interval)."""
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)  # Cornish-Fisher, < 1e-4 off


def weights(bundle: Bundle) -> dict[str, int]:
    """Parameters and stored bytes of the tensors the graph uses (normalisation and bounds included)."""
    names = {name for node in bundle.graph.nodes() for name in node.params.values()}
    try:
        from rlport.compression import weight_bytes  # as stored: int8 tensors with their scales
    except ImportError:  # an rlport without compression: every tensor is stored as it is held
        stored = int(sum(bundle.tensors[n].nbytes for n in names))
    else:
        stored = weight_bytes(bundle)
    return {"parameters": int(sum(bundle.tensors[n].size for n in names)), "bytes": stored}


def agreement(teacher_actions: np.ndarray, student_actions: np.ndarray, action_space: Any) -> dict[str, Any]:
    """The share of states where the deterministic actions agree (equal; or within :data:`AGREEMENT_TOLERANCE`)."""
    count = len(teacher_actions)
    if count == 0:
        return {"states": 0, "share": None, "mean_error": None}
    t = np.asarray(teacher_actions, np.float64).reshape(count, -1)
    s = np.asarray(student_actions, np.float64).reshape(count, -1)
    if not isinstance(action_space, BoxSpec):
        return {"states": count, "share": float(np.mean((t == s).all(axis=1))), "mean_error": None}
    low = np.broadcast_to(np.asarray(action_space.low, np.float64), action_space.shape).reshape(-1)
    high = np.broadcast_to(np.asarray(action_space.high, np.float64), action_space.shape).reshape(-1)
    width = np.where(np.isfinite(high - low) & (high > low), high - low, 1.0)
    error = np.abs(t - s) / width
    return {
        "states": count,
        "share": float(np.mean((error <= AGREEMENT_TOLERANCE).all(axis=1))),
        "mean_error": float(error.mean()),
    }


def paired_difference(teacher: list[float], student: list[float]) -> dict[str, Any]:
    """Student minus teacher return per paired episode: the mean and its 95% confidence interval (Student's t)."""
    d = np.asarray(student, np.float64) - np.asarray(teacher, np.float64)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "episodes": n}
    half = t_quantile(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "episodes": n}
