"""Policy distillation (issue 15): a small MLP student trained on its teacher's decisions.

Example:
    >>> from rlport.distillation import distill
    >>> student, report = distill("teacher.rlp", hidden=(64, 64))   # doctest: +SKIP
"""

from __future__ import annotations

from rlport.distillation.api import distill

__all__ = ["distill"]
