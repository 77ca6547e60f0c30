"""The C backend's tests build their libraries in a private cache (pytest's temporary folder)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_library_cache(tmp_path_factory):
    """Compiled libraries go to pytest's temporary folder, not the user's cache."""
    previous = os.environ.get("RLPORT_C_CACHE")
    os.environ["RLPORT_C_CACHE"] = str(tmp_path_factory.mktemp("c-cache"))
    yield
    if previous is None:
        os.environ.pop("RLPORT_C_CACHE", None)
    else:
        os.environ["RLPORT_C_CACHE"] = previous
