"""rlport's own env wrappers reproduce the originals they stand for."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib.common.wrappers import TimeFeatureWrapper

from rlport.bundle.manifest import EnvSpec, WrapperSpec
from rlport.envs import make_env


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [("Pendulum-v1", {}), ("Pendulum-v1", {"max_steps": 50}), ("MountainCarContinuous-v0", {"test_mode": True})],
    ids=["pendulum", "pendulum-max-steps", "mountaincar-test-mode"],
)
def test_time_feature_equals_sb3_contribs(env_id, kwargs):
    ours = make_env(EnvSpec(env_id, wrappers=(WrapperSpec("time_feature", kwargs),)))
    theirs = TimeFeatureWrapper(gym.make(env_id), **kwargs)
    assert ours.observation_space == theirs.observation_space
    a, _ = ours.reset(seed=3)
    b, _ = theirs.reset(seed=3)
    np.testing.assert_array_equal(a, b)
    ours.action_space.seed(0)
    for _ in range(300):
        action = ours.action_space.sample()
        a, ra, ta, ua, _ = ours.step(action)
        b, rb, tb, ub, _ = theirs.step(action)
        np.testing.assert_array_equal(a, b)
        assert (ra, ta, ua) == (rb, tb, ub)
        if ta or ua:
            break
    assert a.dtype == b.dtype


def test_time_feature_refuses_image_observations():
    from rlport.errors import EnvError

    with pytest.raises(EnvError, match="1-d Box"):
        make_env(EnvSpec("CarRacing-v3", wrappers=(WrapperSpec("time_feature"),)))
