"""The C compilers at hand, strict compilation and the action comparison, for the C backend's tests.

The tests skip (cleanly, saying why) only when no C compiler exists; CI has gcc, so they run there.
Every compiler found among gcc, clang and cc (clang when installed) compiles each export with
``-std=c99 -Wall -Wextra -Werror -pedantic``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rlport.bundle.spaces import BoxSpec

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
VARIANTS = [[], ["-DRLPORT_DETERMINISTIC_ONLY", "-DRLPORT_NO_BATCH"]]
"""Each export compiles as is and with the sampling and batch code left out (what a microcontroller builds)."""


def compilers() -> list[str]:
    """gcc, clang and cc where installed, one per distinct executable."""
    found: dict[str, str] = {}
    for name in ("gcc", "clang", "cc"):
        path = shutil.which(name)
        if path and os.path.realpath(path) not in found:
            found[os.path.realpath(path)] = name
    return list(found.values())


COMPILERS = compilers()
needs_compiler = pytest.mark.skipif(not COMPILERS, reason="no C compiler (gcc, clang or cc) on PATH")


def strict_compile(folder: Path) -> None:
    """Compile ``folder``'s rlport_policy.c with every compiler, strictly, in every variant; fail with its errors."""
    for compiler in COMPILERS:
        for defines in VARIANTS:
            args = [compiler, *STRICT, *defines, "-c", "rlport_policy.c", "-o", os.devnull]
            result = subprocess.run(args, cwd=folder, capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"{' '.join(args)}:\n{result.stderr[:3000]}"


def assert_close_actions(ours: np.ndarray, numpy_actions: np.ndarray, space) -> None:
    """Discrete: identical. Continuous: within 1e-5 of the half-range of a bounded action (1e-5 absolute otherwise)."""
    assert ours.shape == numpy_actions.shape and ours.dtype == numpy_actions.dtype
    if numpy_actions.dtype.kind != "f":
        np.testing.assert_array_equal(ours, numpy_actions)
        return
    half = (space.high.astype(np.float64) - space.low) / 2 if isinstance(space, BoxSpec) else np.float64(1)
    half = np.where(np.isfinite(half), half, 1.0)
    assert np.all(np.abs(ours.astype(np.float64) - numpy_actions) <= 1e-5 * half), np.abs(ours - numpy_actions).max()
