"""rlport.report: ``rlport card``, a page and a Hugging Face model card for a bundle."""

from __future__ import annotations

from rlport.report.card import card

__all__ = ["card"]
