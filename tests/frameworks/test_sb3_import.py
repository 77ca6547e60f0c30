"""``rlport.import_sb3``: SB3 .zip files (today's and older layouts) act exactly like SB3's predict.

Every model of the live-export parity matrix is saved with ``model.save`` and imported from the
file, torch-free, then compared with SB3's own ``predict`` on thousands of observations.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_sb3_parity import (
    ACTIVATION_CASES,
    ACTOR_CRITIC_CASES,
    ARS_CASES,
    MASKABLE_CASES,
    OFF_POLICY_ACTOR_CASES,
    RECURRENT_CASES,
    VALUE_BASED_CASES,
    _masks,
    _vec_normalize,
)

import rlport
from old_layouts import LAYOUTS, shared_net_layout
from sb3_models import ModelSpec, assert_same_actions, make_model, sample_obs, take

N_OBS = 2000


def _imported(model, tmp_path, layout=None, **kwargs):
    path = tmp_path / "model.zip"
    model.save(path)
    if layout is not None:
        layout(path)
    bundle = rlport.import_sb3(path, probes=16, **kwargs)
    saved = bundle.save(tmp_path / "model.rlp")
    return bundle, rlport.load(saved)


def _check(model, policy, n: int = N_OBS, seed: int = 1, **predict_kwargs) -> None:
    obs = sample_obs(model.observation_space, n, seed)
    theirs, _ = model.predict(obs, deterministic=True, **predict_kwargs)
    ours, _ = policy.predict(obs, deterministic=True, **predict_kwargs)
    assert_same_actions(ours, theirs, "batch")
    for i in range(4):
        single = {k: v[i] for k, v in predict_kwargs.items()}
        assert_same_actions(
            policy.predict(take(obs, i), deterministic=True, **single)[0],
            model.predict(take(obs, i), deterministic=True, **single)[0],
            f"single {i}",
        )


@pytest.mark.parametrize(
    "spec", ACTOR_CRITIC_CASES + ACTIVATION_CASES + VALUE_BASED_CASES + OFF_POLICY_ACTOR_CASES + ARS_CASES
)
def test_imported_zip_matches_sb3(spec, tmp_path):
    model = make_model(spec)
    _, policy = _imported(model, tmp_path)
    _check(model, policy)


LAYOUT_SPECS = [
    ModelSpec("PPO", action="discrete"),
    ModelSpec("SAC", obs="dict_mixed", policy="MultiInputPolicy"),
    ModelSpec("DQN", "CnnPolicy", obs="gray", action="discrete"),
    ModelSpec("A2C", action="box", policy_kwargs={"activation_fn": __import__("torch").nn.ELU}),
]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("spec", LAYOUT_SPECS, ids=str)
def test_older_layouts_import(spec, layout, tmp_path):
    model = make_model(spec)
    _, policy = _imported(model, tmp_path, LAYOUTS[layout])
    _check(model, policy, n=500)


def test_sb3_1x_shared_layers_import(tmp_path):
    model = make_model(ModelSpec("PPO", action="box", policy_kwargs={"net_arch": [16, 16]}))
    bundle, policy = _imported(model, tmp_path, shared_net_layout)
    assert any(name.startswith("mlp_extractor.shared_net.") for name in bundle.tensors)
    _check(model, policy, n=500)


@pytest.mark.parametrize("spec", MASKABLE_CASES)
def test_imported_maskable_matches_sb3(spec, tmp_path):
    model = make_model(spec)
    _, policy = _imported(model, tmp_path)
    masks = _masks(model, 500, seed=3)
    _check(model, policy, n=500, action_masks=masks)


@pytest.mark.parametrize("spec", RECURRENT_CASES)
def test_imported_recurrent_matches_sb3(spec, tmp_path):
    model = make_model(spec)
    _, policy = _imported(model, tmp_path)
    n_envs, steps = 3, 120
    rng = np.random.default_rng(0)
    obs = sample_obs(model.observation_space, n_envs * steps, 2)
    theirs_state = ours_state = None
    for t in range(steps):
        step = take(obs, slice(t * n_envs, (t + 1) * n_envs))
        starts = rng.random(n_envs) < 0.1 if t else np.ones(n_envs, dtype=bool)
        theirs, theirs_state = model.predict(step, theirs_state, starts, deterministic=True)
        ours, ours_state = policy.predict(step, ours_state, starts, deterministic=True)
        assert_same_actions(ours, theirs, f"step {t}")
        for a, b in zip(ours_state, theirs_state, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "vn_kwargs"),
    [
        (ModelSpec("PPO", action="box"), {}),
        (ModelSpec("SAC", obs="dict_vec", policy="MultiInputPolicy"), {"norm_obs_keys": ["vel"]}),
    ],
    ids=["box", "dict-subset"],
)
def test_imported_vecnormalize_matches_sb3(spec, vn_kwargs, tmp_path):
    model = make_model(spec)
    vn = _vec_normalize(model.observation_space, model.action_space, seed=4, **vn_kwargs)
    vn.save(tmp_path / "vecnormalize.pkl")
    _, policy = _imported(model, tmp_path, vecnormalize=tmp_path / "vecnormalize.pkl")
    obs = sample_obs(model.observation_space, N_OBS, 5)
    theirs, _ = model.predict(vn.normalize_obs(obs), deterministic=True)
    ours, _ = policy.predict(obs, deterministic=True)
    assert_same_actions(ours, theirs, "normalised")


def test_import_records_provenance_and_keeps_the_critic_on_request(tmp_path):
    model = make_model(ModelSpec("SAC"))
    model.save(tmp_path / "sac.zip")
    lean = rlport.import_sb3(tmp_path / "sac.zip", env_id="Pendulum-v1")
    full = rlport.import_sb3(tmp_path / "sac.zip", include_critic=True)
    assert lean.env.id == "Pendulum-v1"
    assert lean.provenance["algorithm"] == "SAC"
    assert lean.provenance["framework_version"] == __import__("stable_baselines3").__version__
    state = {k: v.detach().numpy() for k, v in model.policy.state_dict().items()}
    assert set(full.tensors) >= set(state) > set(lean.tensors) - {"space.action.low", "space.action.high"}
    for name, value in state.items():
        np.testing.assert_array_equal(full.tensors[name], value)
    assert not any(name.startswith("critic.") for name in lean.tensors)


def test_import_needs_neither_torch_nor_sb3(tmp_path):
    import subprocess
    import sys

    from isolation import BLOCKER

    model = make_model(ModelSpec("PPO", action="discrete"))
    model.save(tmp_path / "m.zip")
    code = BLOCKER + (
        "import rlport, sys\n"
        f"b = rlport.import_sb3({str(tmp_path / 'm.zip')!r})\n"
        "assert not any(m.split('.')[0] in ('torch', 'stable_baselines3') for m in sys.modules)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
