"""rlport.fleet: ``rlport eval``, many bundles x envs x seeds on local processes or a Ray cluster."""

from __future__ import annotations

from rlport.fleet.run import evaluate

__all__ = ["evaluate"]
