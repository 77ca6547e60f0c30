"""The JSON lines file of a fleet evaluation: one result a line, written as results arrive.

An interrupted evaluation keeps every line it wrote; ``resume`` reads them back (the file is
untrusted: a line is kept only when it is a JSON object whose job matches one of the plan
exactly and that has no error) and the run goes on with the jobs that have no result yet.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any

from rlport.bundle.atomic import check_destination
from rlport.bundle.container import read_regular_file
from rlport.errors import BundleError
from rlport.fleet.plan import Job

__all__ = ["open_stream", "done_results", "MAX_RESULTS_FILE"]

MAX_RESULTS_FILE = 1024**3
"""The largest results file ``--resume`` reads, in bytes."""


def open_stream(path: str | Path, append: bool) -> IO[str]:
    """The results file, opened to add lines (``append``) or new (an existing file is refused: pass --resume).

    Raises:
        BundleError: the folder is missing, the path is a folder, or the file exists and ``append`` is False.
    """
    path = Path(path)
    check_destination(path, "the results")
    if path.exists() and not append:
        raise BundleError(
            f"the results file {str(path)!r} exists; pass --resume to go on with it, or remove it to start anew"
        )
    try:
        return path.open("a" if append else "x", encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"cannot write the results to {str(path)!r}: {exc.strerror or exc}") from exc


def done_results(path: str | Path, jobs: list[Job], verify: bool) -> dict[int, dict[str, Any]]:
    """The results already in ``path`` for jobs of the plan, by job index (a missing file: none)."""
    path = Path(path)
    if not path.exists():
        return {}
    text = read_regular_file(path, f"the results file {path}", MAX_RESULTS_FILE).decode("utf-8", errors="replace")
    wanted = {(job.digest, job.env, job.seed, job.episodes): job for job in jobs}
    kept: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        result = _parsed(line)
        if result is None or result.get("error") is not None or ("verify" in result) != verify:
            continue
        key = (result.get("digest"), result.get("requested_env"), result.get("seed"), result.get("episodes"))
        job = wanted.get(key)  # type: ignore[arg-type]
        if job is not None and _well_formed(result, verify):
            kept[job.index] = {**result, "bundle": job.bundle, **_recomputed(result)}
    return kept


def _parsed(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:  # the last line of an interrupted run may be cut
        return None
    return value if isinstance(value, dict) else None


def _well_formed(result: dict[str, Any], verify: bool) -> bool:
    """Whether a result read back has the fields the summary uses, of the right types."""
    if verify:
        return isinstance(result.get("ok"), bool) and isinstance(result.get("verify"), dict)
    returns = result.get("returns")
    lengths = result.get("lengths")
    if not isinstance(returns, list) or not isinstance(lengths, list) or len(returns) != result.get("episodes"):
        return False
    numbers = all(isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) for r in returns)
    return numbers and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths)


def _recomputed(result: dict[str, Any]) -> dict[str, Any]:
    """Mean, std and steps from the returns and lengths read back (the figures the file states are not trusted)."""
    if "returns" not in result:
        return {}
    import numpy as np

    returns = np.asarray(result["returns"], dtype=np.float64)
    return {"mean_return": float(returns.mean()), "std_return": float(returns.std()),
            "steps": int(sum(result["lengths"]))}  # fmt: skip
