"""Where the RL Zoo sample is, found one way for every test (the ``zoo_sample`` fixture in conftest.py uses it).

The sample is the folder named by the environment variable ``RLPORT_ZOO_SAMPLE`` (a relative
value is taken from the current directory), else ``../shared/zoo-sample`` next to this
repository. It is *expected* in CI (``CI`` set to true, as CI services and ``.ci/run`` set it)
and when ``RLPORT_ZOO_SAMPLE`` names it: there a missing sample fails the tests that need it.
Elsewhere they skip, saying where the sample was looked for.

Test modules that parametrise over the sample's files at collection time use :func:`zoo_files`
and :func:`zoo_params`, and ask for the ``zoo_sample`` fixture (or :data:`needs_zoo`) so that a
missing sample is reported once per test instead of leaving an empty, silently skipped list.

Example:
    >>> from zoo import needs_zoo, zoo_files, zoo_params              # doctest: +SKIP
    >>> FILES = zoo_params([pytest.param(p, id=p.parts[-4]) for p in zoo_files("*/*/*/vecnormalize.pkl")])
    >>> @needs_zoo
    ... @pytest.mark.parametrize("path", FILES)
    ... def test_it(path): ...
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["ENV_VAR", "needs_zoo", "require_zoo_sample", "zoo_files", "zoo_params", "zoo_sample_path"]

ENV_VAR = "RLPORT_ZOO_SAMPLE"
REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT = Path("..") / "shared" / "zoo-sample"  # relative to the repository root
RUN_MARKER = "*/*/evaluations.npz"  # every RL Zoo run folder has one

needs_zoo = pytest.mark.usefixtures("zoo_sample")
"""Mark a test that needs the sample: it then skips, or fails where the sample is expected."""


def zoo_sample_path() -> Path:
    """The sample folder: ``$RLPORT_ZOO_SAMPLE`` if set, else ``../shared/zoo-sample`` from the repository root."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        return Path(value).expanduser().resolve()
    return (REPOSITORY / DEFAULT).resolve()


def _expected() -> bool:
    """In CI, or when the environment variable names the sample, a missing sample is an error."""
    ci = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
    return ci or bool(os.environ.get(ENV_VAR, "").strip())


def _problem(path: Path) -> str | None:
    """Why ``path`` is not a usable sample; ``None`` if it is."""
    if not path.is_dir():
        return f"no RL Zoo sample at {path}"
    if not any(path.glob(RUN_MARKER)):
        return f"no RL Zoo run (ALGO/ENV_1/evaluations.npz) under {path}"
    return None


def require_zoo_sample() -> Path:
    """The sample folder; else fail (in CI, or when ``$RLPORT_ZOO_SAMPLE`` is set) or skip, saying what to do."""
    path = zoo_sample_path()
    problem = _problem(path)
    if problem is None:
        return path
    hint = (
        f"{problem}; set {ENV_VAR} to a folder of rl-trained-agents runs "
        f"(ALGO/ENV_1/...), or place it at {DEFAULT.as_posix()} beside the repository"
    )
    if _expected():
        pytest.fail(f"{hint} (the sample is expected here: CI is set, or {ENV_VAR} is)", pytrace=False)
    pytest.skip(hint)


def zoo_files(pattern: str) -> list[Path]:
    """The sample's files matching ``pattern`` (a glob below the sample folder), sorted; ``[]`` without a sample."""
    path = zoo_sample_path()
    return sorted(path.glob(pattern)) if _problem(path) is None else []


def zoo_params(params: list, width: int = 1) -> list:
    """``params`` for ``pytest.mark.parametrize``; without any, one placeholder of ``width`` ``None`` values.

    The placeholder keeps the test collected, so that its ``zoo_sample`` fixture fails or skips
    it with the reason (an empty list would be skipped by pytest without one). A test using this
    must ask for ``zoo_sample`` (or be marked :data:`needs_zoo`).
    """
    if params:
        return list(params)
    return [pytest.param(*([None] * width), id="zoo-sample-missing")]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Only as a plugin (``pytest -p zoo``): keep just the tests that need the sample (test_zoo_sample_fixture.py)."""
    kept = [item for item in items if "zoo_sample" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
