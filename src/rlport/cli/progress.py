"""A dependency-free progress bar on stderr (drawn only when stderr is a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, AttributeError):
        return False


class Progress:
    """``with Progress(total, "training") as bar: bar.update(n)``; silent when not on a TTY.

    Example:
        >>> with Progress(3, "episodes", silent=True) as bar:
        ...     for _ in range(3):
        ...         bar.update()
    """

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, width: int = 30, silent: bool = False
    ) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.done = 0
        self.width = width
        stream = stream or sys.stderr
        self.stream = None if silent or not _is_tty(stream) else stream
        self._start = time.monotonic()
        self._drawn = 0.0

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        now = time.monotonic()
        if self.stream is None or (now - self._drawn < 0.1 and self.done < self.total):
            return
        self._drawn = now
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = now - self._start
        self.stream.write(f"\r{self.label:<12} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s {note:<20}")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
