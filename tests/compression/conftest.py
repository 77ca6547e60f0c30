"""The ``family`` fixture of the compression tests; the models are in tests/quantised_models.py."""

from __future__ import annotations

import pytest

from quantised_models import FAMILIES


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> str:
    return request.param
