"""`rlport distill` (issue 15: a small student of a policy): its parser and command."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to ``rlport``'s parser (none yet)."""
