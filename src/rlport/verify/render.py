"""The ``rlport verify`` report as text for people: a table that fits the terminal, and a verdict line.

Columns ``check``, ``result``, ``measured`` and ``tolerance``; cells too wide for their column wrap
within it (at spaces: words are never cut), a ``measured`` made of several ``;``-separated notes
starts each on its own line, and a check's ``detail`` goes on its own wrapped line(s) under its row.
Nothing is left out: ``--json`` has the same text, unwrapped.

Example:
    >>> parity = {"name": "parity", "status": "PASS", "measured": "0/64 probes differ", "tolerance": "0"}
    >>> print(render_report({"ok": True, "checks": [parity]}, 60))
    check   result  measured            tolerance
    parity  PASS    0/64 probes differ  0
    <BLANKLINE>
    OK: every check passed
"""

from __future__ import annotations

import textwrap
from typing import Any

__all__ = ["render_report", "MIN_WIDTH"]

MIN_WIDTH = 60
"""The narrowest table drawn; a narrower terminal wraps its lines."""
_GAP = "  "


def render_report(report: dict[str, Any], width: int) -> str:
    """The report (``Report.to_json()``) as a table at most ``width`` characters wide, then the verdict."""
    width = max(width, MIN_WIDTH)
    checks = report["checks"]
    head = ("check", "result", "measured", "tolerance")
    name_w = max(len(head[0]), *(len(c["name"]) for c in checks)) if checks else len(head[0])
    status_w = len(head[1])
    left = name_w + status_w + 2 * len(_GAP)
    measured_w, tolerance_w = _widths(checks, width - left)
    lines = [_row(head, (name_w, status_w, measured_w, tolerance_w))]
    for check in checks:
        measured = _wrap(check["measured"], measured_w, split=True)
        tolerance = _wrap(check["tolerance"], tolerance_w)
        for i in range(max(len(measured), len(tolerance), 1)):
            cells = (check["name"] if i == 0 else "", check["status"] if i == 0 else "",
                     _at(measured, i), _at(tolerance, i))  # fmt: skip
            lines.append(_row(cells, (name_w, status_w, measured_w, tolerance_w)))
        if check.get("detail"):
            lines += [" " * left + text for text in _wrap(check["detail"], width - left, split=True)]
    return "\n".join(lines) + "\n\n" + textwrap.fill(verdict(report), width, break_long_words=False)


def verdict(report: dict[str, Any]) -> str:
    """The last line: FAILED (a check failed), WARN (none failed, some could not confirm) or OK (all passed)."""
    failed = [c["name"] for c in report["checks"] if c["status"] == "FAIL"]
    warned = [c["name"] for c in report["checks"] if c["status"] == "WARN"]
    if failed:
        return f"FAILED: {', '.join(failed)} (see the FAIL rows)"
    if warned:
        return f"WARN: no check failed, but {', '.join(warned)} could not confirm the bundle here (see the WARN rows)"
    return "OK: every check passed"


def _widths(checks: list[dict[str, Any]], room: int) -> tuple[int, int]:
    """Widths of the measured and tolerance columns within ``room`` characters (gap included)."""
    measured = max([len("measured")] + [len(p) for c in checks for p in _parts(c["measured"])])
    tolerance = max([len("tolerance")] + [len(c["tolerance"]) for c in checks])
    room -= len(_GAP)
    if measured + tolerance <= room:
        return measured, tolerance
    tolerance = min(tolerance, max(len("tolerance"), room // 3))
    return max(room - tolerance, len("measured")), tolerance


def _parts(text: str) -> list[str]:
    return [part for part in text.split("; ") if part] or [""]


def _wrap(text: str, width: int, split: bool = False) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken at spaces (a longer word keeps its own line)."""
    lines: list[str] = []
    for part in _parts(text) if split else [text]:
        lines += textwrap.wrap(part, width, break_long_words=False, break_on_hyphens=False) or [""]
    return [line for line in lines if line] or [""]


def _at(lines: list[str], i: int) -> str:
    return lines[i] if i < len(lines) else ""


def _row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    return _GAP.join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()
