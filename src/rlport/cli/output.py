"""How every ``rlport`` subcommand answers: an exit code, and JSON or a readable table.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["EXIT_BAD_INPUT", "EXIT_CHECK_FAILED", "EXIT_OK", "emit", "table"]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def emit(data: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    """Print ``data`` as indented, key-sorted JSON (``--json``) or as ``render(data)`` for people."""
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render(data))


def table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns two spaces apart; rows may be shorter than the widest one."""
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)
