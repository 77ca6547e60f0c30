"""The dynamics fingerprint: record seeded rollouts, replay them, and fail on every divergence."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from rlport.bundle.manifest import EnvSpec
from rlport.verify.fingerprint import record_fingerprint, replay_fingerprint
from rlport.verify.result import FAIL, PASS, WARN

PENDULUM = EnvSpec("Pendulum-v1")


@pytest.fixture(scope="module")
def pendulum():
    return record_fingerprint(PENDULUM, episodes=2, steps=30, seed=7)


def _copy(tensors):
    return {name: value.copy() for name, value in tensors.items()}


def test_record_layout(pendulum):
    meta, tensors = pendulum
    assert meta == {"env": PENDULUM.to_json(), "episodes": 2, "steps": 30, "seed": 7}
    assert sorted(tensors) == ["action", "done", "episode", "obs", "reset_obs", "reward"]
    assert tensors["obs"].shape == (60, 3) and tensors["obs"].dtype == np.float64
    assert tensors["reset_obs"].shape == (2, 3)
    assert tensors["reward"].dtype == np.float64
    assert tensors["done"].dtype == np.uint8 and not tensors["done"].any()
    assert tensors["episode"].dtype == np.int64 and list(tensors["episode"]) == [0] * 30 + [1] * 30
    assert tensors["action"].shape == (60, 1)


def test_record_is_deterministic(pendulum):
    _, again = record_fingerprint(PENDULUM, episodes=2, steps=30, seed=7)
    for name, value in pendulum[1].items():
        np.testing.assert_array_equal(again[name], value)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1", "LunarLander-v3"])
def test_replay_same_env_passes_bit_identical(env_id):
    if env_id.startswith("Lunar"):
        pytest.importorskip("Box2D")
    meta, tensors = record_fingerprint(EnvSpec(env_id), episodes=3, steps=60)
    result = replay_fingerprint(meta, tensors)
    assert result.name == "dynamics" and result.status == PASS, result
    assert result.measured == f"max |Δobs| = 0, max |Δreward| = 0 over {len(tensors['reward'])} steps"


def _dict_pendulum(**kwargs):
    import gymnasium as gym

    class DictObs(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            box = env.observation_space
            self.observation_space = gym.spaces.Dict(
                {
                    "cos_sin": gym.spaces.Box(box.low[:2], box.high[:2]),
                    "speed": gym.spaces.Box(box.low[2:], box.high[2:]),
                }
            )

        def observation(self, observation):
            return {"cos_sin": observation[:2], "speed": observation[2:]}

    return DictObs(gym.make("Pendulum-v1", **kwargs))


def test_dict_observations_stored_per_key():
    import gymnasium as gym

    gym.register("rlport-test/DictPendulum-v0", entry_point=_dict_pendulum)
    meta, tensors = record_fingerprint(EnvSpec("rlport-test/DictPendulum-v0"), episodes=2, steps=5)
    assert {"obs.cos_sin", "obs.speed", "reset_obs.cos_sin", "reset_obs.speed"} <= set(tensors)
    assert tensors["obs.speed"].shape == (10, 1)
    assert replay_fingerprint(meta, tensors).status == PASS
    tensors["obs.speed"][3] += 1.0
    result = replay_fingerprint(meta, tensors)
    assert result.status == FAIL and result.detail.startswith("episode 0, step 3: obs 'speed' differs by 1")


def test_cartpole_episodes_end_inside_steps():
    _, tensors = record_fingerprint(EnvSpec("CartPole-v1"), episodes=3, steps=100)
    assert tensors["done"].sum() == 3 and tensors["done"][-1] == 1
    assert len(tensors["reward"]) < 300


def test_other_physics_fails_at_first_step(pendulum):
    result = replay_fingerprint(*pendulum, env=EnvSpec("Pendulum-v1", {"g": 9.0}))
    assert result.status == FAIL
    assert "episode 0, step 0: obs differs by" in result.detail
    assert result.data == {"episode": 0, "step": 0}
    assert "1e-06" in result.tolerance


def test_tampered_reward_fails_at_that_step(pendulum):
    meta, tensors = pendulum
    tensors = _copy(tensors)
    tensors["reward"][30 + 4] += 0.5
    result = replay_fingerprint(meta, tensors)
    assert result.status == FAIL
    assert result.detail.startswith("episode 1, step 4: reward differs by 0.5")
    assert result.measured == "max |Δ| = 0.5 at the first divergence"


def test_small_noise_within_tolerance_passes(pendulum):
    meta, tensors = pendulum
    tensors = _copy(tensors)
    tensors["obs"] += 1e-8
    assert replay_fingerprint(meta, tensors).status == PASS


def test_tampered_episode_end_fails(pendulum):
    meta, tensors = pendulum
    tensors = _copy(tensors)
    tensors["done"][10] = 1
    result = replay_fingerprint(meta, tensors)
    assert result.status == FAIL and "episode 0, step 10: episode end differs" in result.detail


@pytest.mark.parametrize("name", ["reward", "obs", "reset_obs", "action", "episode", "done"])
def test_missing_tensor_fails_cleanly(pendulum, name):
    meta, tensors = pendulum
    tensors = {k: v for k, v in tensors.items() if k != name}
    result = replay_fingerprint(meta, tensors)
    assert result.status == FAIL and f"lacks tensor(s) {name}" in result.detail


def test_wrong_length_tensor_fails_cleanly(pendulum):
    meta, tensors = pendulum
    tensors = _copy(tensors)
    tensors["action"] = tensors["action"][:-1]
    result = replay_fingerprint(meta, tensors)
    assert result.status == FAIL and "'action' has shape (59, 1), expected 60 rows" in result.detail


@pytest.mark.parametrize(
    "meta_change", [{"seed": "0"}, {"episodes": None}, {"env": "Pendulum-v1"}], ids=["seed", "episodes", "env"]
)
def test_bad_meta_fails_cleanly(pendulum, meta_change):
    meta, tensors = pendulum
    result = replay_fingerprint({**meta, **meta_change}, tensors)
    assert result.status == FAIL and "fingerprint meta" in result.detail


def test_env_that_cannot_be_created_warns(pendulum):
    result = replay_fingerprint(*pendulum, env=EnvSpec("NoSuchEnv-v0"))
    assert result.status == WARN and "NoSuchEnv" in result.detail


def test_different_spaces_fail_with_detail(pendulum):
    result = replay_fingerprint(*pendulum, env=EnvSpec("MountainCarContinuous-v0"))
    assert result.status == FAIL
    assert result.detail == "episode 0, reset: reset obs has shape (2,), recorded (3,)"


def test_env_rejecting_an_action_fails_not_raises():
    meta, tensors = record_fingerprint(EnvSpec("CartPole-v1"), episodes=1, steps=10)
    tensors["action"] = np.full(len(tensors["action"]), 0.5)
    result = replay_fingerprint(meta, tensors)
    assert result.status == FAIL and result.detail.startswith("episode 0, step 0: the env raised")
