"""`rlport eval` (issue 17: many bundles, local processes or Ray): its parser and command."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to ``rlport``'s parser (none yet)."""
