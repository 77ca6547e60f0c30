"""The outcome of one verification check, and of a whole verification."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PASS", "WARN", "FAIL", "CheckResult", "Report"]

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass(frozen=True)
class CheckResult:
    """One check: its verdict, the figure measured, the tolerance it was held to, and why.

    Example:
        >>> CheckResult("parity", PASS, "max |a - a_probe| = 0", "<= 1e-05", "256 probes").status
        'PASS'
    """

    name: str
    status: str
    measured: str = ""
    tolerance: str = ""
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in (PASS, WARN, FAIL):
            raise ValueError(f"status must be PASS, WARN or FAIL, not {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "measured": self.measured,
            "tolerance": self.tolerance,
            "detail": self.detail,
            "data": self.data,
        }


@dataclass
class Report:
    """All checks of one verification; ``failed`` when any check FAILs, ``undecided`` lists the WARN ones."""

    checks: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)

    @property
    def undecided(self) -> list[str]:
        """The names of the checks that WARN: they could not confirm that the bundle behaves as at the source."""
        return [check.name for check in self.checks if check.status == WARN]

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.failed, "warned": self.undecided, "checks": [check.to_json() for check in self.checks]}
