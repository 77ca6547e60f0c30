"""Bundles of the RL Zoo sample for the card tests (imported once per session with ``rlport import``)."""

from __future__ import annotations

import contextlib
import io

import pytest

from rlport.cli.main import main


@pytest.fixture(scope="session")
def card_bundles(zoo_sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("card-zoo")
    paths = {}
    for name, run in {"cartpole": "ppo/CartPole-v1_1", "panda": "her/PandaReach-v1_1"}.items():
        paths[name] = folder / f"{name}.rlp"
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["import", str(zoo_sample / run), "-o", str(paths[name]), "--no-fingerprint"]) == 0
    return paths
