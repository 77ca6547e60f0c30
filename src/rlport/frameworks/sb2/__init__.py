"""Stable Baselines 2 (TensorFlow 1): model files (``.pkl``, ``.zip``) and RL Zoo folders read without
TensorFlow or pickle (``files``, ``zoo``), their policies as graphs (``policies``), bundles (``importer``).

Example:
    >>> from rlport.frameworks.sb2 import import_sb2                   # doctest: +SKIP
    >>> import_sb2("trained_agents/a2c/CartPole-v1.pkl").save("a2c.rlp")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["import_sb2", "is_sb2_file"]


def __getattr__(name: str) -> Any:
    """``import_sb2`` and ``is_sb2_file``, imported on first use (the policy modules need only ``model``)."""
    if name in __all__:
        from rlport.frameworks.sb2 import importer

        return getattr(importer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
