"""``rlport eval --engine ray`` on a local Ray of 2 CPUs: the same returns as the local engine, lost tasks retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlport.fleet import evaluate

pytest.importorskip("ray")
HERE = Path(__file__).parent


@pytest.mark.slow
def test_ray_gives_the_local_engines_returns_and_retries_a_lost_task(zoo_bundles, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(HERE))  # the crash env's module, for Ray's workers too
    monkeypatch.setenv("RLPORT_TEST_CRASH_MARKER", str(tmp_path / "crashed"))
    paths = [str(zoo_bundles["ppo-cartpole"]), str(zoo_bundles["a2c-pendulum"])]
    local = evaluate(paths, seeds=2, episodes=2, workers=2, engine="local")
    ray = evaluate(paths, seeds=2, episodes=2, workers=2, engine="ray")
    assert ray["engine"] == "ray" and ray["failed"] == 0
    key = ("bundle", "env", "seed", "episodes", "returns", "lengths", "mean_return", "std_return")
    assert [[r[k] for k in key] for r in ray["results"]] == [[r[k] for k in key] for r in local["results"]]
    assert ray["summary"] == local["summary"]
    once = evaluate(paths[:1], envs=["crash_env:CrashOnceCartPole-v0"], episodes=2, workers=2, engine="ray",
                    retries=1)  # fmt: skip
    assert once["results"][0]["attempts"] == 2 and once["results"][0]["returns"] == local["results"][0]["returns"]
