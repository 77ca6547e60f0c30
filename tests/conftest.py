"""Shared test fixtures; helper modules in tests/ (isolation, zoo, sb3_models, old_layouts) importable everywhere."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hypothesis import HealthCheck, settings

from zoo import require_zoo_sample

# Fuzz tests run the same examples every time: a red CI run then always means a code change.
settings.register_profile(
    "rlport", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("rlport")


@pytest.fixture(autouse=True, scope="session")
def _sb3_logs_in_pytests_tmp(tmp_path_factory):
    """SB3's learn() makes a log folder in the system temp dir unless SB3_LOGDIR says where; keep them in pytest's."""
    previous = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3-logs"))
    yield
    if previous is None:
        os.environ.pop("SB3_LOGDIR", None)
    else:
        os.environ["SB3_LOGDIR"] = previous


@pytest.fixture(scope="session")
def zoo_sample() -> Path:
    """The RL Zoo sample folder (``$RLPORT_ZOO_SAMPLE``, else ``../shared/zoo-sample``); see tests/zoo.py.

    Missing: the test fails in CI (``CI=true``) or when ``$RLPORT_ZOO_SAMPLE`` is set, and skips elsewhere.
    """
    return require_zoo_sample()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny networks: torch's thread pool only adds contention (SB3 predicts ~30x slower on 2 cores)."""
    try:
        import torch
    except ImportError:  # the numpy-only tests run without torch
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
