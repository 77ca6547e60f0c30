"""Code to prepend to a subprocess so that torch, SB3 and gymnasium cannot be imported in it."""

from __future__ import annotations

import textwrap

BLOCKER = textwrap.dedent(
    """
    import sys, importlib.abc

    BLOCKED = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "gym", "onnxruntime")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)
