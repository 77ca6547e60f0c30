"""How every ``rlport`` subcommand answers: an exit code, and JSON or a readable table.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 130 interrupted (Ctrl-C).

Warnings: rlport's own (:class:`~rlport.errors.RlportWarning`) and other libraries' (gymnasium's
"environment is out of date"...) are shown once each, as one plain line on stderr naming the
library, terminal escape codes stripped. Deprecation notices from libraries are hidden: they are
addressed to the authors of the code that calls the library, not to its users (Python hides them
too, outside ``__main__``); ``python -W default -m rlport ...`` shows them.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "emit",
    "emit_error",
    "plain",
    "plain_warnings",
    "printable",
    "table",
    "width",
    "wrapped",
]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# C0/C1 controls but newline and tab, lone surrogates, and the bidirectional overrides that reorder the text shown
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# ANSI escape sequences (colours, cursor moves) that libraries put around their messages
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_LEVEL = re.compile(r"^(WARN|WARNING):\s*")


def printable(text: str) -> str:
    r"""``text`` with terminal control characters escaped (``\x1b``): names from a file cannot drive the terminal.

    Example:
        >>> printable("evil\x1b[2J")
        'evil\\x1b[2J'
    """
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def plain(text: str) -> str:
    r"""``text`` without ANSI escape sequences and a leading ``WARN:`` tag, on one line, printable.

    Example:
        >>> plain("\x1b[33mWARN: The environment Walker2d-v4 is out of date.\x1b[0m")
        'The environment Walker2d-v4 is out of date.'
    """
    return printable(_LEVEL.sub("", " ".join(_ANSI.sub("", text).split())))


def _library(filename: str) -> str | None:
    """The top-level package a warning came from (``gymnasium``), from the file that raised it."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return Path(parts[parts.index(marker) + 1]).stem
    return None


@contextmanager
def plain_warnings(prefix: str) -> Iterator[None]:
    """Within the block, show each distinct warning once as ``PREFIX: warning from LIBRARY: text`` on stderr.

    Deprecation notices are hidden unless the user asked for warnings with ``-W`` / ``PYTHONWARNINGS``.
    """
    from rlport.errors import RlportWarning

    seen: set[tuple[type, str]] = set()
    user_filters = bool(sys.warnoptions)

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if not user_filters and issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
            return
        text = plain(str(message))
        if (category, text) in seen:
            return
        seen.add((category, text))
        library = None if issubclass(category, RlportWarning) else _library(filename)
        source = f" from {library}" if library else ""
        try:
            print(wrapped(f"{prefix}: warning{source}: {text}"), file=sys.stderr)
        except (OSError, ValueError):  # stderr closed
            pass

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def emit_error(error_type: str, message: str, exit_code: int) -> None:
    """Print the ``--json`` answer of a command that failed: ``{"error": {"type", "message", "exit_code"}}``."""
    error = {"error": {"type": error_type, "message": message, "exit_code": exit_code}}
    try:
        print(json.dumps(error, indent=2, sort_keys=True))
    except (OSError, ValueError):  # stdout closed: the exit code still says it
        pass


def emit(data: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    """Print ``data`` as indented, key-sorted JSON (``--json``) or as ``render(data)`` for people."""
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(printable(render(data)))


def width() -> int:
    """The terminal's width in columns (100 when the output is not a terminal, at least 60)."""
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def wrapped(text: str, indent: str = "  ") -> str:
    """``text`` wrapped to the terminal's width at spaces (words and paths are never cut), continued after ``indent``.

    Example:
        >>> wrapped("a " * 80, indent="    ").count("\n") >= 1
        True
    """
    return textwrap.fill(text, width(), subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns two spaces apart; rows may be shorter than the widest one.

    A row wider than the terminal has its last cell wrapped onto lines that start under that cell.
    """
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1]))
        start = len(head) + 2 if head else 0
        line = (head + "  " + row[-1] if head else row[-1]).rstrip()
        if len(line) <= width() or start > width() - 30:
            lines.append(line)
            continue
        body = textwrap.wrap(row[-1], width() - start, break_long_words=False, break_on_hyphens=False) or [""]
        lines.append((head + "  " + body[0]).rstrip())
        lines.extend(" " * start + part for part in body[1:])
    return "\n".join(lines)
