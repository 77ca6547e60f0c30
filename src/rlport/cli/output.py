"""How every ``rlport`` subcommand answers: an exit code, and JSON or a readable table.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["EXIT_BAD_INPUT", "EXIT_CHECK_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "emit", "printable", "table"]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# C0/C1 controls but newline and tab, lone surrogates, and the bidirectional overrides that reorder the text shown
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    r"""``text`` with terminal control characters escaped (``\x1b``): names from a file cannot drive the terminal.

    Example:
        >>> printable("evil\x1b[2J")
        'evil\\x1b[2J'
    """
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def emit(data: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    """Print ``data`` as indented, key-sorted JSON (``--json``) or as ``render(data)`` for people."""
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(printable(render(data)))


def table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns two spaces apart; rows may be shorter than the widest one."""
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)
