"""`rlport card` (issue 17: a page and a model card for a bundle): its parser and command."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to ``rlport``'s parser (none yet)."""
