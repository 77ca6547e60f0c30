"""Bundles of the RL Zoo sample, imported once per session with ``rlport import`` (the CLI, as a user would)."""

from __future__ import annotations

import contextlib
import io

import pytest

from rlport.cli.main import main

RUNS = {"ppo-cartpole": "ppo/CartPole-v1_1", "qrdqn-acrobot": "qrdqn/Acrobot-v1_1", "a2c-pendulum": "a2c/Pendulum-v1_1"}
"""The quick runs (episodes of a few hundred steps) the fleet tests evaluate."""


def import_runs(zoo_sample, folder, runs):
    """``rlport import RUN -o NAME.rlp`` for each run; the bundles' paths by name."""
    paths = {}
    for name, run in runs.items():
        path = folder / f"{name}.rlp"
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["import", str(zoo_sample / run), "-o", str(path), "--no-fingerprint"]) == 0
        paths[name] = path
    return paths


@pytest.fixture(scope="session")
def zoo_bundles(zoo_sample, tmp_path_factory):
    """The :data:`RUNS` as bundles in one folder."""
    return import_runs(zoo_sample, tmp_path_factory.mktemp("fleet-zoo"), RUNS)


@pytest.fixture(scope="session")
def import_zoo_runs(zoo_sample):
    """:func:`import_runs` for a test's own runs: ``import_zoo_runs(folder, {name: "algo/ENV_1"})``."""
    return lambda folder, runs: import_runs(zoo_sample, folder, runs)
