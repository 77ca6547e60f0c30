"""Acceptance on the real published SB2 RL Zoo agents of ``../shared/sb2-sample`` (or ``$RLPORT_SB2_SAMPLE``).

The sample is expected in CI (``CI=true``) and when ``RLPORT_SB2_SAMPLE`` names it: there a missing sample
fails these tests; elsewhere they skip. Every agent reads and imports; the HalfCheetahBulletEnv and FetchReach
agents say what their env needs; every agent whose env exists here reproduces its published return with
rlport's numpy runtime, within max(10%, 3 standard errors of the difference of means).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from rlport.backends.numpy import NumpyPolicy
from rlport.envs import make_env, run_episodes
from rlport.errors import RlportError
from rlport.frameworks.sb2 import import_sb2
from rlport.frameworks.sb2.files import read_sb2

ENV_VAR = "RLPORT_SB2_SAMPLE"
REPOSITORY = Path(__file__).resolve().parents[3]
DEFAULT = Path("..") / "shared" / "sb2-sample"


def _sample_path() -> Path:
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser().resolve() if value else (REPOSITORY / DEFAULT).resolve()


SAMPLE = _sample_path()
AGENTS = sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.glob("*/*.*") if p.suffix in (".pkl", ".zip"))
PARAMS = AGENTS or [pytest.param(None, id="sb2-sample-missing")]
EPISODES = {"CartPole-v1": 3, "Acrobot-v1": 5, "MountainCarContinuous-v0": 3, "Pendulum-v0": 8,
            "LunarLander-v2": 5, "LunarLanderContinuous-v2": 5}  # fmt: skip
"""Episodes per env: a modest total runtime; fewer episodes widen the standard error accordingly."""


@pytest.fixture(scope="session")
def sb2_sample() -> Path:
    """The sample folder; fails where it is expected (CI, or $RLPORT_SB2_SAMPLE set), skips elsewhere."""
    if AGENTS:
        return SAMPLE
    hint = f"no SB2 sample (ALGO/ENV.pkl|zip) at {SAMPLE}; set {ENV_VAR} or place it at {DEFAULT.as_posix()}"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"} or os.environ.get(ENV_VAR, "").strip():
        pytest.fail(f"{hint} (the sample is expected here)", pytrace=False)
    pytest.skip(hint)


def _import(agent: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_sb2(SAMPLE / agent, fingerprint=False, **kwargs)


@pytest.mark.parametrize("agent", PARAMS)
def test_every_agent_reads(sb2_sample, agent):
    model = read_sb2(sb2_sample / agent)
    folder = agent.split("/")[0]
    assert model.algorithm == folder or (folder == "her" and model.data["_her"]["her"])
    assert model.params and model.policy.endswith("Policy")


@pytest.mark.parametrize("agent", PARAMS)
def test_every_agent_imports_and_survives_a_round_trip(sb2_sample, agent, tmp_path):
    import rlport

    bundle = _import(agent, probes=16)
    assert bundle.provenance["framework"] == "stable-baselines"
    loaded = rlport.load(bundle.save(tmp_path / "agent.rlp"))
    assert loaded.bundle.probes is not None


@pytest.mark.parametrize(
    ("agent", "needs"),
    [("ppo2/HalfCheetahBulletEnv-v0.pkl", "pip install pybullet"), ("her/FetchReach-v1.pkl", "gymnasium-robotics")],
)
def test_bullet_and_robotics_agents_say_what_their_env_needs(sb2_sample, agent, needs):
    if not (sb2_sample / agent).exists():
        pytest.skip(f"{agent} is not in the sample")
    with pytest.warns(UserWarning, match=needs):
        bundle = import_sb2(sb2_sample / agent, probes=0, fingerprint=False)
    assert needs in bundle.provenance["env_needs"]


def _runnable(bundle) -> bool:
    try:
        make_env(bundle.env).close()
    except RlportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("agent", PARAMS)
def test_running_the_agent_reproduces_its_published_return(sb2_sample, agent):
    bundle = _import(agent, probes=0)
    prov = bundle.provenance
    if "published_return_mean" not in prov or not _runnable(bundle):
        pytest.skip(f"{agent}: no published return, or its env ({bundle.env.id}) cannot be made here")
    episodes = EPISODES.get(prov.get("zoo_env_id", bundle.env.id), 3)
    stats = run_episodes(NumpyPolicy(bundle, seed=0), make_env(bundle.env), episodes, seed=0)
    published, spread, m = prov["published_return_mean"], prov["published_return_std"], prov["published_episodes"]
    standard_error = np.sqrt(stats.std_return**2 / episodes + spread**2 / m)
    tolerance = max(3 * standard_error, 0.10 * abs(published))
    assert abs(stats.mean_return - published) <= tolerance, (
        f"{agent}: {stats.mean_return:.1f} ± {stats.std_return:.1f} over {episodes} episodes vs published "
        f"{published:.1f} ± {spread:.1f} (tolerance {tolerance:.1f})"
    )
