"""Every SB3 policy family, exported to C, compiles strictly and acts as the numpy backend.

Per family: the export compiles with every C compiler at hand (``-std=c99 -Wall -Wextra -Werror
-pedantic``, with and without the sampling code), and ``rlport.load(path, backend="c")`` gives
the numpy backend's deterministic actions on 256 observations (discrete: identical; continuous:
within 1e-5 of the action half-range), recurrent states included, episode starts too.
"""

from __future__ import annotations

import numpy as np
import pytest
from c_toolchain import assert_close_actions, needs_compiler, strict_compile

import rlport
from rlport.backends.c.export import export_c
from rlport.backends.c.runtime import CPolicy
from rlport.backends.numpy import NumpyPolicy
from sb3_models import ModelSpec, make_model, sample_obs

pytestmark = needs_compiler

FAMILIES = [
    ModelSpec("PPO", action="discrete"),
    ModelSpec("A2C", obs="multidiscrete", action="multibinary"),
    ModelSpec("PPO", "CnnPolicy", obs="rgb", action="box"),
    ModelSpec("TRPO", action="multidiscrete"),
    ModelSpec("MaskablePPO", "MultiInputPolicy", obs="dict", action="discrete"),
    ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="discrete"),
    ModelSpec("DQN", obs="discrete", action="discrete"),
    ModelSpec("QRDQN", obs="multibinary", action="discrete"),
    ModelSpec("SAC"),
    ModelSpec("SAC", kwargs={"use_sde": True}),
    ModelSpec("TQC", obs="box64", action="box2d"),
    ModelSpec("TD3", obs="dict_vec", policy="MultiInputPolicy"),
    ModelSpec("ARS", "MlpPolicy", policy_kwargs={"squash_output": True}),
]
ROWS = 256


@pytest.fixture(scope="module", params=FAMILIES, ids=str)
def family(request, tmp_path_factory):
    model = make_model(request.param)
    bundle = rlport.from_sb3(model, probes=8, fingerprint=False, evaluate=0)
    path = bundle.save(tmp_path_factory.mktemp("bundle") / "model.rlp")
    return model, bundle, path


def test_the_export_compiles_strictly_with_every_compiler(family, tmp_path):
    _, bundle, _ = family
    strict_compile(export_c(bundle, tmp_path / "policy"))


def test_the_c_backend_acts_as_the_numpy_backend(family):
    model, bundle, path = family
    policy = rlport.load(path, backend="c")
    assert isinstance(policy, CPolicy) and policy.backend == "c"
    reference = NumpyPolicy(bundle)
    obs = sample_obs(model.observation_space, ROWS, seed=1)
    ours, state = policy.predict(obs, deterministic=True)
    theirs, their_state = reference.predict(obs, deterministic=True)
    assert_close_actions(ours, theirs, bundle.action_space)
    if reference.is_recurrent:  # a second step from the state, half the rows starting new episodes
        for ours_s, theirs_s in zip(state, their_state, strict=True):
            np.testing.assert_allclose(ours_s, theirs_s, rtol=1e-5, atol=1e-6)
        starts = np.arange(ROWS) % 2 == 0
        ours, _ = policy.predict(obs, state=state, episode_start=starts, deterministic=True)
        theirs, _ = reference.predict(obs, state=their_state, episode_start=starts, deterministic=True)
        assert_close_actions(ours, theirs, bundle.action_space)


def test_single_observations_act_as_batches(family):
    model, bundle, _ = family
    policy = CPolicy(bundle)
    obs = sample_obs(model.observation_space, 4, seed=2)
    batch, _ = policy.predict(obs, deterministic=True)
    for k in range(4):
        one = {key: value[k] for key, value in obs.items()} if isinstance(obs, dict) else obs[k]
        action, _ = policy.predict(one, deterministic=True)
        np.testing.assert_array_equal(action, batch[k])


def test_sampled_actions_are_in_the_action_space_and_follow_the_seed(family):
    model, bundle, _ = family
    obs = sample_obs(model.observation_space, 32, seed=3)
    first, _ = CPolicy(bundle, seed=7).predict(obs, deterministic=False)
    again, _ = CPolicy(bundle, seed=7).predict(obs, deterministic=False)
    np.testing.assert_array_equal(first, again)
    assert all(model.action_space.contains(np.asarray(a, dtype=model.action_space.dtype)) for a in first)
