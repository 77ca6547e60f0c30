"""Make the helper modules in tests/ (isolation.py) importable from every test folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from hypothesis import HealthCheck, settings

# Fuzz tests run the same examples every time: a red CI run then always means a code change.
settings.register_profile(
    "rlport", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("rlport")
