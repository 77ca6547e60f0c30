"""The summary of a fleet evaluation: one row per bundle x env, as the RL Zoo's ``benchmark.md``.

Columns: the bundle's file name (two bundles of one algorithm and env, e.g. a float and an int8 one, are
told apart), algorithm, env, mean and std of every episode's return (all seeds together), episodes,
steps, the reference (the returns recorded at export, else the published ones) and whether it was
reproduced, by ``rlport verify``'s returns rule (:func:`rlport.verify.checks.returns_verdict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlport.fleet.plan import FleetBundle
from rlport.verify.checks import returns_verdict
from rlport.verify.result import FAIL, PASS

__all__ = ["summarize", "render_markdown", "REPRODUCED"]

REPRODUCED = {PASS: "yes", FAIL: "no"}
"""The verdict of the returns rule as the table says it (WARN: ``undecided``)."""


def summarize(fleet: list[FleetBundle], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per bundle x env of ``results`` (in their order)."""
    by_path = {member.path: member for member in fleet}
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["bundle"], result.get("requested_env")), []).append(result)
    return [_row(by_path[path], env, group) for (path, env), group in groups.items()]


def _row(member: FleetBundle, requested_env: str | None, group: list[dict[str, Any]]) -> dict[str, Any]:
    env = requested_env or member.env_id
    good = [r for r in group if not r.get("error")]
    returns = [float(x) for r in good for x in r.get("returns", [])]
    row: dict[str, Any] = {
        "bundle": member.path, "algorithm": member.algorithm, "env": env, "jobs": len(group),
        "failed": len(group) - len(good), "episodes": len(returns),
        "steps": sum(int(r.get("steps") or 0) for r in good),
        "mean_return": float(np.mean(returns)) if returns else None,
        "std_return": float(np.std(returns)) if returns else None,
        "reference": None, "reproduced": None, "verdict": None,
    }  # fmt: skip
    if any("verify" in r for r in good):
        row["verified"] = all(r.get("ok") for r in good) and len(good) == len(group)
    reference = member.reference if requested_env in (None, member.env_id) else None  # another env: not its reference
    if reference is None:
        row["reproduced"] = "no reference" if requested_env in (None, member.env_id) else "other env"
        return row
    ref, source = reference
    if isinstance(ref, tuple):
        row["reference"] = {"mean": ref[0], "std": ref[1], "episodes": ref[2], "source": source}
    else:
        row["reference"] = {"mean": float(np.mean(ref)), "std": float(np.std(ref)), "episodes": len(ref),
                            "source": source}  # fmt: skip
    if not returns:
        row["reproduced"] = "not run"
        return row
    verdict = returns_verdict(returns, ref)
    row["reproduced"] = REPRODUCED.get(verdict.status, "undecided")
    row["verdict"] = verdict.to_json()
    return row


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """The summary as a markdown table (``benchmark.md``'s layout, with the reference and the verdict)."""
    head = "| bundle | algo | env | mean | std | episodes | steps | reference | reproduced |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---|---|"]
    for row in rows:
        ref = row["reference"]
        ref_text = f"{ref['mean']:.2f} ± {ref['std']:.2f} (n={ref['episodes']})" if ref else "-"
        reproduced = row["reproduced"] + (f", {row['failed']} failed" if row["failed"] else "")
        cells = [
            Path(row["bundle"]).name,
            row["algorithm"].lower(),
            str(row["env"]),
            _number(row["mean_return"]),
            _number(row["std_return"]),
            str(row["episodes"]),
            f"{row['steps']:,}",
            ref_text,
            reproduced,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """A table cell: ``|`` and line breaks from a file cannot break the table."""
    return " ".join(text.replace("|", "\\|").split())
