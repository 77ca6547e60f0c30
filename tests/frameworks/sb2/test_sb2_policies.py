"""SB2 policies -> graph: every family against an independent numpy rebuild of SB2's TF forward pass.

Parameters are SB2-shaped and random, made by ``sb2_reference.Store`` the way ``tf.get_variable``
makes them (TF names, TF layouts, creation order); each case runs with both saved forms (by name,
and the ``get_parameter_list()`` list) and on the numpy, torch and ONNX backends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sb2_reference as ref

import rlport
from rlport.assemble import assemble
from rlport.bundle.manifest import EnvSpec
from rlport.bundle.spaces import BoxSpec, DictSpec, DiscreteSpec, MultiDiscreteSpec
from rlport.errors import UnsupportedError
from rlport.frameworks.sb2.model import SB2Model
from rlport.frameworks.sb2.policies import build_sb2_graph
from rlport.graph.schema import OPS

BACKENDS = ("numpy", "torch", "onnx")
TANH = "tensorflow.python.ops.math_ops.tanh"
RELU = "tensorflow.python.ops.gen_nn_ops.relu"
LN_LSTM = "layer_norm" in OPS["lstm"].attrs  # engineer C's layer-normalised LSTM


def box(shape, low=-1.0, high=1.0, dtype="float32"):
    bounds = {"low": np.full(shape, low), "high": np.full(shape, high)}
    return BoxSpec.create(low, high, tuple(shape), dtype), {"type": "box", "shape": tuple(shape), **bounds}


def discrete(n):
    return DiscreteSpec(n), {"type": "discrete", "n": n}


OBS4, ACT2 = box((4,), -3.0, 3.0), discrete(2)
IMAGE = box((36, 36, 2), 0, 255, "uint8")


@dataclass
class Case:
    """An SB2 model to rebuild: ``forward(store, obs, state, mask) -> (action, state)`` is SB2's predict."""

    id: str
    algorithm: str
    policy: str
    obs: Any
    act: Any
    forward: Any
    kwargs: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    scope: str = "model/"
    recurrent: int = 0  # the LSTM's width (state is concat([c, h]))


def _ac(obs_space, act_space, **kw):
    def forward(s, obs, state, mask):
        action, _ = ref.feedforward(s, obs, obs_space, act_space, **kw)
        return ref.actor_critic_predict(action, act_space), None

    return forward


def _lstm(obs_space, act_space, **kw):
    def forward(s, obs, state, mask):
        action, new_state = ref.lstm_policy(s, obs, state, mask, obs_space, act_space, **kw)
        return ref.actor_critic_predict(action, act_space), new_state

    return forward


def _dqn(obs_space, n, **kw):
    def forward(s, obs, state, mask):
        return np.argmax(ref.dqn_q_values(s, obs, obs_space, n, **kw), axis=1), None

    return forward


def _actor(algo, obs_space, act_space, layers=(64, 64), act="relu", layer_norm=False, normalize=False, her=False):
    def forward(s, obs, state, mask):
        x = ref.her_obs(obs) if her else ref.process_obs(obs, obs_space, scale=False)
        if algo == "ddpg":
            x = ref.ddpg_normalize(s, x, normalize)
        with s.scope("model"):
            a = ref.off_policy_actor(s, x, algo, act_space["shape"][0], list(layers), act, layer_norm)
            ref.off_policy_critics(s, x, a, algo, list(layers), act, layer_norm)
        return ref.unscale_action(a, act_space["low"], act_space["high"]), None

    return forward


BOX_ACT = box((2,), -2.0, 1.5)
MD_ACT = (MultiDiscreteSpec(nvec=(3, 2), shape=(2,), start=(0, 0)), {"type": "multi_discrete", "nvec": [3, 2]})
GOAL = DictSpec(spaces=(("achieved_goal", box((3,))[0]), ("desired_goal", box((3,))[0]),
                        ("observation", box((5,), -4.0, 4.0)[0])))  # fmt: skip

CASES = [
    Case("a2c-mlp-discrete", "a2c", "MlpPolicy", OBS4, ACT2, _ac(OBS4[1], ACT2[1])),
    Case("ppo2-mlp-box", "ppo2", "MlpPolicy", OBS4, BOX_ACT, _ac(OBS4[1], BOX_ACT[1])),
    Case("acktr-net-arch-relu", "acktr", "MlpPolicy", OBS4, BOX_ACT,
         _ac(OBS4[1], BOX_ACT[1], net_arch=[16, dict(pi=[8], vf=[8, 4])], act="relu"),
         kwargs={"net_arch": [16, {"pi": [8], "vf": [8, 4]}], "act_fun": RELU}),
    Case("trpo-layers", "trpo", "MlpPolicy", OBS4, ACT2, _ac(OBS4[1], ACT2[1], layers=[32]), kwargs={"layers": [32]}),
    Case("acer-mlp", "acer", "MlpPolicy", OBS4, discrete(3), _ac(OBS4[1], discrete(3)[1])),
    Case("ppo1-multidiscrete", "ppo1", "MlpPolicy", OBS4, MD_ACT, _ac(OBS4[1], MD_ACT[1])),
    Case("gail-discrete-obs", "gail", "MlpPolicy", discrete(5), ACT2, _ac(discrete(5)[1], ACT2[1])),
    Case("a2c-cnn", "a2c", "CnnPolicy", IMAGE, ACT2, _ac(IMAGE[1], ACT2[1], feature="cnn")),
    Case("ppo2-mlp-lstm", "ppo2", "MlpLstmPolicy", OBS4, ACT2, _lstm(OBS4[1], ACT2[1], n_lstm=8),
         kwargs={"n_lstm": 8}, recurrent=8),
    Case("a2c-lstm-net-arch-box", "a2c", "MlpLstmPolicy", OBS4, BOX_ACT,
         _lstm(OBS4[1], BOX_ACT[1], n_lstm=6, net_arch=[8, "lstm", dict(pi=[8], vf=[4])]),
         kwargs={"n_lstm": 6, "net_arch": [8, "lstm", {"pi": [8], "vf": [4]}]}, recurrent=6),
    Case("a2c-cnn-lstm", "a2c", "CnnLstmPolicy", IMAGE, ACT2, _lstm(IMAGE[1], ACT2[1], n_lstm=8, feature="cnn"),
         kwargs={"n_lstm": 8}, recurrent=8),
    Case("dqn-dueling", "dqn", "MlpPolicy", OBS4, discrete(3), _dqn(OBS4[1], 3), scope="deepq/"),
    Case("dqn-plain", "dqn", "MlpPolicy", OBS4, discrete(3), _dqn(OBS4[1], 3, dueling=False, layers=[16]),
         kwargs={"dueling": False, "layers": [16]}, scope="deepq/"),
    Case("dqn-layer-norm", "dqn", "LnMlpPolicy", OBS4, discrete(3), _dqn(OBS4[1], 3, layer_norm=True, layers=[64]),
         kwargs={"layers": [64]}, scope="deepq/"),
    Case("dqn-cnn", "dqn", "CnnPolicy", IMAGE, discrete(3), _dqn(IMAGE[1], 3, feature="cnn", layers=[8]),
         kwargs={"layers": [8]}, scope="deepq/"),
    Case("sac-mlp", "sac", "MlpPolicy", OBS4, BOX_ACT, _actor("sac", OBS4[1], BOX_ACT[1])),
    Case("sac-layer-norm", "sac", "LnMlpPolicy", OBS4, BOX_ACT, _actor("sac", OBS4[1], BOX_ACT[1], layer_norm=True)),
    Case("td3-mlp", "td3", "MlpPolicy", OBS4, BOX_ACT, _actor("td3", OBS4[1], BOX_ACT[1], layers=[32, 16]),
         kwargs={"layers": [32, 16]}),
    Case("ddpg-normalised", "ddpg", "MlpPolicy", OBS4, BOX_ACT, _actor("ddpg", OBS4[1], BOX_ACT[1], normalize=True),
         data={"normalize_observations": True}),
    Case("ddpg-layer-norm", "ddpg", "LnMlpPolicy", OBS4, BOX_ACT, _actor("ddpg", OBS4[1], BOX_ACT[1], layer_norm=True)),
    Case("her-sac", "sac", "MlpPolicy", (GOAL, None), BOX_ACT, _actor("sac", None, BOX_ACT[1], her=True),
         data={"_her": {"n_sampled_goal": 4}}),
]  # fmt: skip

LN_CASES = [
    Case("ppo2-mlp-ln-lstm", "ppo2", "MlpLnLstmPolicy", OBS4, ACT2,
         _lstm(OBS4[1], ACT2[1], n_lstm=8, layer_norm=True), kwargs={"n_lstm": 8}, recurrent=8),
    Case("a2c-cnn-ln-lstm", "a2c", "CnnLnLstmPolicy", IMAGE, BOX_ACT,
         _lstm(IMAGE[1], BOX_ACT[1], n_lstm=8, layer_norm=True, feature="cnn"), kwargs={"n_lstm": 8}, recurrent=8),
]  # fmt: skip


def observations(case: Case, rng: np.random.Generator, n: int = 6) -> Any:
    space = case.obs[0]
    if isinstance(space, DictSpec):
        return {key: rng.uniform(-3, 3, (n, *sub.shape)).astype(np.float32) for key, sub in space.spaces}
    if isinstance(space, DiscreteSpec):
        return rng.integers(0, space.n, n)
    if space.dtype == "uint8":
        return rng.integers(0, 256, (n, *space.shape)).astype(np.uint8)
    return rng.uniform(-4, 4, (n, *space.shape)).astype(np.float32)  # beyond the bounds: clipping matters


def make_model(case: Case, form: str, seed: int = 0) -> tuple[SB2Model, ref.Store]:
    """Run SB2's forward pass once with a creating store: SB2-shaped random parameters in TF's order."""
    rng = np.random.default_rng(seed)
    store = ref.Store(rng)
    state = np.zeros((6, 2 * case.recurrent), np.float32) if case.recurrent else None
    case.forward(store, observations(case, rng), state, np.zeros(6))
    saved = [n for n in store.order if n.startswith(case.scope)] + [n for n in store.order if "obs_rms" in n]
    params = {n: store.values[n] for n in saved} if form == "named" else [store.values[n] for n in saved]
    module = {"dqn": "deepq", "sac": "sac", "td3": "td3", "ddpg": "ddpg"}.get(case.algorithm, "common")
    model = SB2Model(case.algorithm, case.policy, f"stable_baselines.{module}.policies", dict(case.data), params,
                     case.obs[0], case.act[0], dict(case.kwargs), "2.10.1", f"{case.id}.pkl")  # fmt: skip
    return model, ref.Store(values=store.values)


def to_bundle(model: SB2Model):
    sb2 = build_sb2_graph(model, None)
    return assemble(sb2.graph, sb2.tensors, model.observation_space, model.action_space, EnvSpec(id=None),
                    sb2.source, {"framework": "stable-baselines"}, probes=0)  # fmt: skip


def check_same_actions(case: Case, model: SB2Model, store: ref.Store, backends=BACKENDS) -> None:
    bundle = to_bundle(model)
    rng = np.random.default_rng(7)
    for backend in backends:
        policy = rlport.load(bundle, backend=backend)
        state, sb2_state = None, np.zeros((6, 2 * case.recurrent)) if case.recurrent else None
        for step in range(4 if case.recurrent else 1):
            obs = observations(case, rng)
            starts = (rng.uniform(size=6) < 0.3).astype(np.float32) if step else np.ones(6, np.float32)
            store.counts.clear()  # a new TF graph: layer names count from 0 again
            expected, sb2_state = case.forward(store, obs, sb2_state, starts)
            got, state = policy.predict(obs, state=state, episode_start=starts, deterministic=True)
            assert got.shape == np.shape(expected), (backend, step)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"{backend} step {step}")


@pytest.mark.parametrize("form", ["named", "list"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_graph_acts_as_sb2(case: Case, form: str) -> None:
    model, store = make_model(case, form)
    check_same_actions(case, model, store)


@pytest.mark.skipif(not LN_LSTM, reason="needs the lstm op's layer_norm attribute (engineer C)")
@pytest.mark.parametrize("case", LN_CASES, ids=[c.id for c in LN_CASES])
def test_layer_norm_lstm_acts_as_sb2(case: Case) -> None:
    model, store = make_model(case, "list")
    check_same_actions(case, model, store)


def test_lstm_states_carry_over_and_reset() -> None:
    """Several steps with the same observation give different actions until an episode start resets them."""
    case = CASES[[c.id for c in CASES].index("a2c-lstm-net-arch-box")]
    model, store = make_model(case, "named", seed=3)
    policy = rlport.load(to_bundle(model))
    obs = observations(case, np.random.default_rng(1), 1)
    first, state = policy.predict(obs, episode_start=np.ones(1), deterministic=True)
    second, state = policy.predict(obs, state=state, episode_start=np.zeros(1), deterministic=True)
    again, _ = policy.predict(obs, state=state, episode_start=np.ones(1), deterministic=True)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(again, first, rtol=1e-6)


def test_sampling_follows_sb2_distribution() -> None:
    """PPO2's Gaussian: sampled actions spread around the mode with exp(logstd), before clipping."""
    case = replace(CASES[1], act=box((2,), -100.0, 100.0))
    case.forward = _ac(OBS4[1], case.act[1])
    model, store = make_model(case, "named")
    policy = rlport.load(to_bundle(model), seed=0)
    obs = np.repeat(observations(case, np.random.default_rng(2), 1), 4000, axis=0)
    samples, _ = policy.predict(obs, deterministic=False)
    mode, _ = policy.predict(obs[:1], deterministic=True)
    std = np.exp(store.values["model/pi/logstd:0"].reshape(-1))
    np.testing.assert_allclose(samples.mean(axis=0), mode[0], atol=4 * std.max() / np.sqrt(4000) * 2)
    np.testing.assert_allclose(samples.std(axis=0), std, rtol=0.08)


# ---- checks that refuse, each made to fail on purpose -------------------------------------------------


def test_wrong_shape_is_named() -> None:
    model, _ = make_model(CASES[0], "named")
    params = dict(model.params)
    params["model/pi_fc1/w:0"] = np.zeros((64, 32), np.float32)
    with pytest.raises(UnsupportedError, match=r"model/pi_fc1/w:0 has shape \(64, 32\).*\(64, 64\)"):
        build_sb2_graph(replace(model, params=params), None)


def test_wrong_shape_in_a_list_is_named_by_position() -> None:
    model, _ = make_model(CASES[0], "list")
    params = list(model.params)
    params[2] = np.zeros((3, 64), np.float32)  # creation order: pi_fc0/w, pi_fc0/b, vf_fc0/w ...
    with pytest.raises(UnsupportedError, match=r"parameter 2 \(model/vf_fc0/w\)"):
        build_sb2_graph(replace(model, params=params), None)


def test_missing_variable_is_named() -> None:
    model, _ = make_model(CASES[1], "named")
    params = {k: v for k, v in model.params.items() if k != "model/pi/logstd:0"}
    with pytest.raises(UnsupportedError, match="no variable model/pi/logstd:0"):
        build_sb2_graph(replace(model, params=params), None)


def test_short_parameter_list_is_refused() -> None:
    model, _ = make_model(CASES[1], "list")
    with pytest.raises(UnsupportedError, match="holds 5 parameters"):
        build_sb2_graph(replace(model, params=list(model.params)[:5]), None)


def test_unknown_act_fun_is_refused() -> None:
    model, _ = make_model(CASES[0], "named")
    with pytest.raises(UnsupportedError, match="act_fun .*os.system.* is not supported"):
        build_sb2_graph(replace(model, policy_kwargs={"act_fun": "os.system"}), None)


def test_unknown_policy_class_is_refused() -> None:
    model, _ = make_model(CASES[0], "named")
    with pytest.raises(UnsupportedError, match="SB2 policy 'MyPolicy'.*not supported"):
        build_sb2_graph(replace(model, policy="MyPolicy"), None)


def test_unknown_policy_kwarg_and_custom_extractor_are_refused() -> None:
    model, _ = make_model(CASES[0], "named")
    with pytest.raises(UnsupportedError, match="policy_kwargs .*'dropout'"):
        build_sb2_graph(replace(model, policy_kwargs={"dropout": 0.5}), None)
    cnn, _ = make_model(CASES[[c.id for c in CASES].index("a2c-cnn")], "named")
    with pytest.raises(UnsupportedError, match="cnn_extractor .*my_cnn.* only SB2's nature_cnn"):
        build_sb2_graph(replace(cnn, policy_kwargs={"cnn_extractor": "mymodule.my_cnn"}), None)


def test_unknown_algorithm_is_refused() -> None:
    model, _ = make_model(CASES[0], "named")
    with pytest.raises(UnsupportedError, match="SB2 algorithm 'gail2' is not supported"):
        build_sb2_graph(replace(model, algorithm="gail2"), None)


def test_vec_normalize_statistics_are_applied() -> None:
    from rlport.frameworks.sb2.model import ObsNormalisation

    case = CASES[1]
    model, store = make_model(case, "named")
    norm = ObsNormalisation(np.array([0.5, -1.0, 2.0, 0.0]), np.array([4.0, 0.25, 1.0, 9.0]), clip=2.0)
    sb2 = build_sb2_graph(model, norm)
    bundle = assemble(sb2.graph, sb2.tensors, model.observation_space, model.action_space, EnvSpec(id=None),
                      sb2.source, {}, probes=0)  # fmt: skip
    obs = observations(case, np.random.default_rng(5))
    normalised = np.clip((obs - norm.mean) / np.sqrt(norm.var + norm.epsilon), -2.0, 2.0)
    expected, _ = case.forward(store, normalised, None, None)
    got, _ = rlport.load(bundle).predict(obs, deterministic=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---- the real SB2 RL Zoo sample (../shared/sb2-sample), read with files.read_sb2 ----------------------

SAMPLE = Path(os.environ.get("RLPORT_SB2_SAMPLE", Path(__file__).resolve().parents[3] / ".." / "shared" / "sb2-sample"))
SAMPLE_FILES = sorted(str(p.relative_to(SAMPLE)) for p in [*SAMPLE.glob("*/*.pkl"), *SAMPLE.glob("*/*.zip")])


def _ref_space(spec: Any) -> dict:
    if isinstance(spec, DiscreteSpec):
        return {"type": "discrete", "n": spec.n}
    return {
        "type": "box",
        "shape": spec.shape,
        "low": spec.low.astype(np.float64),
        "high": spec.high.astype(np.float64),
    }


def _sample_forward(model: SB2Model):
    """SB2's predict for the sample's policies (MlpPolicy everywhere; the zoo's CustomDQNPolicy is LnMlpPolicy)."""
    act = _ref_space(model.action_space)
    kw = dict(model.policy_kwargs)
    if model.algorithm == "dqn":
        return _dqn(_ref_space(model.observation_space), model.action_space.n, layer_norm=model.policy == "LnMlpPolicy",
                    layers=kw.get("layers"), dueling=kw.get("dueling", True))  # fmt: skip
    if model.algorithm in ("sac", "td3", "ddpg"):
        her = isinstance(model.observation_space, DictSpec)
        obs = None if her else _ref_space(model.observation_space)
        return _actor(model.algorithm, obs, act, layers=kw.get("layers") or (64, 64), her=her,
                      normalize=bool(model.data.get("normalize_observations")))  # fmt: skip
    return _ac(_ref_space(model.observation_space), act, layers=kw.get("layers"), net_arch=kw.get("net_arch"))


@pytest.mark.skipif(not SAMPLE_FILES, reason="the SB2 sample (../shared/sb2-sample) is not here")
@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_files_act_as_sb2(name: str) -> None:
    from rlport.frameworks.sb2.files import read_sb2

    model = read_sb2(SAMPLE / name)
    forward = _sample_forward(model)
    rng = np.random.default_rng(0)
    case = Case(name, model.algorithm, model.policy, (model.observation_space, None), None, forward)
    obs = observations(case, rng, 16)
    if isinstance(model.params, list):  # the reference's own creation order names the list
        order = ref.Store(np.random.default_rng(1))
        forward(order, obs, None, None)
        scope = {"dqn": "deepq/"}.get(model.algorithm, "model/")
        names = [n for n in order.order if n.startswith(scope)] + [n for n in order.order if "obs_rms" in n]
        assert all(np.shape(v) == order.values[n].shape for n, v in zip(names, model.params, strict=False))
        store = ref.Store(values=dict(zip(names, model.params, strict=False)))
    else:
        store = ref.Store(values=model.params)
    expected, _ = forward(store, obs, None, None)
    for backend in BACKENDS:
        got, _ = rlport.load(to_bundle(model), backend=backend).predict(obs, deterministic=True)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=backend)
