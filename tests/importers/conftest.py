"""Make the shared SB3 test helpers (``sb3_models.py``) importable under any pytest import mode."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny networks: torch's thread pool only adds contention (SB3 predicts ~30x slower on 2 cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
