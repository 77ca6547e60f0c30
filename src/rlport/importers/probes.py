"""Parity probes: moved to :mod:`rlport.bundle.probes` (the bundle assembly records them); re-exported here.

Example:
    >>> from rlport.importers.probes import check_against_source   # the same function as rlport.bundle.probes'
"""

from __future__ import annotations

from rlport.bundle.probes import (
    MAX_PROBE_BYTES,
    MIN_PROBES,
    PARITY_ATOL,
    Predict,
    ProbeComparison,
    action_tolerance,
    check_against_source,
    compare_probes,
    probe_count,
    record_probes,
)

__all__ = [
    "record_probes",
    "probe_count",
    "compare_probes",
    "check_against_source",
    "action_tolerance",
    "ProbeComparison",
    "PARITY_ATOL",
    "MIN_PROBES",
    "MAX_PROBE_BYTES",
    "Predict",
]
