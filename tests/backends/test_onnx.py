"""ONNX export and the onnxruntime backend: same actions as the numpy runtime.

Every case exports a bundle, checks the model with ``onnx.checker`` (full check), and compares
onnxruntime's deterministic actions with the numpy runtime's: discrete actions identical,
continuous ones within 1e-5, on a batch of sampled observations and on single observations.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.backends.onnx import export as onnx_export
from rlport.backends.onnx.export import METADATA_KEY, export_onnx
from rlport.backends.onnx.runtime import OnnxPolicy
from rlport.bundle.bundle import Bundle
from rlport.bundle.spaces import BoxSpec, DiscreteSpec
from rlport.errors import MissingDependencyError, ObservationError, UnsupportedError
from rlport.graph.graph import Graph, GraphInput, Node
from sb3_models import ACTION_SPACES, OBS_SPACES, ModelSpec, SpacesEnv, make_model, sample_obs, take

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

N_OBS = 500
N_SINGLE = 3


def _bundle(model, **kwargs) -> Bundle:
    return rlport.from_sb3(model, probes=0, fingerprint=False, evaluate=0, **kwargs)


def _same(ours, theirs, what: str) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, f"{what}: {ours.dtype}{ours.shape}"
    if theirs.dtype.kind == "f":
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5, err_msg=what)
    else:
        assert np.array_equal(ours, theirs), f"{what}: {(ours != theirs).sum()} elements differ"


def _check(bundle: Bundle, obs, tmp_path, **predict_kwargs) -> OnnxPolicy:
    """Export, check, and compare with the numpy runtime on a batch and single observations."""
    onnx.checker.check_model(onnx.load(export_onnx(bundle, tmp_path / "policy.onnx")), full_check=True)
    policy, reference = OnnxPolicy(bundle), NumpyPolicy(bundle)
    ours, state = policy.predict(obs, deterministic=True, **predict_kwargs)
    theirs, _ = reference.predict(obs, deterministic=True, **predict_kwargs)
    assert state is None
    _same(ours, theirs, "batch")
    assert len(np.unique(np.asarray(theirs).reshape(N_OBS, -1), axis=0)) >= 3, "a weak test: constant actions"
    masks = predict_kwargs.pop("action_masks", None)
    for i in range(N_SINGLE):  # batch 1 and batch N_OBS in the same session
        kwargs = {} if masks is None else {"action_masks": masks[i]}
        ours, _ = policy.predict(take(obs, i), deterministic=True, **kwargs)
        theirs, _ = reference.predict(take(obs, i), deterministic=True, **kwargs)
        _same(ours, theirs, f"single observation {i}")
    return policy


CASES = [
    ModelSpec("PPO", action="discrete"),
    ModelSpec("PPO", action="box"),
    ModelSpec("PPO", action="multidiscrete"),
    ModelSpec("PPO", action="multibinary"),
    ModelSpec("PPO", obs="discrete", action="box2d"),
    ModelSpec("A2C", obs="multidiscrete", action="discrete"),
    ModelSpec("PPO", obs="multibinary2d", action="box"),
    ModelSpec("A2C", obs="box64", action="box64"),
    ModelSpec("PPO", action="box", kwargs={"use_sde": True}),
    ModelSpec("PPO", "CnnPolicy", obs="gray", action="discrete"),
    ModelSpec("PPO", "CnnPolicy", obs="rgb", action="box"),
    ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="multidiscrete"),
    ModelSpec("PPO", "MultiInputPolicy", obs="dict_mixed", action="multibinary"),
    ModelSpec("SAC", action="box"),
    ModelSpec("SAC", action="box2d", kwargs={"use_sde": True}),
    ModelSpec("TD3", action="box"),
    ModelSpec("DQN", action="discrete"),
    ModelSpec("QRDQN", obs="discrete", action="discrete"),
    ModelSpec("CrossQ", obs="multibinary"),
]


@pytest.mark.parametrize("spec", CASES, ids=str)
def test_actions_match_numpy(spec, tmp_path):
    bundle = _bundle(make_model(spec))
    _check(bundle, sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=3), tmp_path)


@pytest.mark.parametrize(
    "spec",
    [ModelSpec("MaskablePPO", action="discrete"), ModelSpec("MaskablePPO", action="multidiscrete")],
    ids=str,
)
def test_maskable(spec, tmp_path):
    bundle = _bundle(make_model(spec))
    size = bundle.graph.inputs_with_role("action_mask")[0].size
    sizes = [size] if spec.action == "discrete" else list(ACTION_SPACES[spec.action].nvec)
    rng = np.random.default_rng(4)
    masks = rng.random((N_OBS, size)) < 0.5
    for start, n in zip(np.cumsum([0, *sizes[:-1]]), sizes, strict=True):
        masks[np.arange(N_OBS), start + rng.integers(0, n, N_OBS)] = True
    obs = sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=3)
    policy = _check(bundle, obs, tmp_path, action_masks=masks)
    free, _ = policy.predict(obs, deterministic=True)
    masked, _ = policy.predict(obs, deterministic=True, action_masks=masks)
    assert not np.array_equal(free, masked)
    masks[0, : sizes[0]] = False
    with pytest.raises(ObservationError, match="allows no action"):
        policy.predict(obs, deterministic=True, action_masks=masks)


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box"),
        ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="discrete", policy_kwargs={"n_lstm_layers": 2}),
    ],
    ids=str,
)
def test_recurrent_steps_carry_state(spec, tmp_path):
    n_envs, n_steps = 4, 60
    bundle = _bundle(make_model(spec))
    export_onnx(bundle, tmp_path / "policy.onnx")
    policy, reference = OnnxPolicy(bundle), NumpyPolicy(bundle)
    assert policy.is_recurrent
    obs = sample_obs(OBS_SPACES[spec.obs], n_envs * n_steps, seed=5)
    starts = np.random.default_rng(6).random((n_steps, n_envs)) < 0.1
    starts[0] = True
    ours_state = theirs_state = None
    for t in range(n_steps):
        step = take(obs, slice(t * n_envs, (t + 1) * n_envs))
        ours, ours_state = policy.predict(step, ours_state, starts[t], deterministic=True)
        theirs, theirs_state = reference.predict(step, theirs_state, starts[t], deterministic=True)
        _same(ours, theirs, f"step {t}")
        for mine, ref in zip(ours_state, theirs_state, strict=True):
            _same(mine, ref, f"state at step {t}")
    ours, state = policy.predict(take(obs, 0), deterministic=True)
    theirs, _ = reference.predict(take(obs, 0), deterministic=True)
    _same(ours, theirs, "single observation, no state")
    assert state[0].shape[1] == 1


@pytest.mark.parametrize(
    ("spec", "vn_kwargs"),
    [
        (ModelSpec("PPO", action="box"), {"clip_obs": 1.5}),
        (ModelSpec("SAC", "MultiInputPolicy", obs="dict", action="box"), {"norm_obs_keys": ["vec"]}),
    ],
    ids=["PPO-box", "SAC-dict-subset"],
)
def test_vec_normalize(spec, vn_kwargs, tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = DummyVecEnv([lambda: SpacesEnv(OBS_SPACES[spec.obs], ACTION_SPACES[spec.action])])
    vec_normalize = VecNormalize(venv, norm_reward=False, **vn_kwargs)
    rng = np.random.default_rng(7)
    rms = vec_normalize.obs_rms
    for stats in rms.values() if isinstance(rms, dict) else [rms]:
        stats.mean = rng.normal(0.0, 1.0, stats.mean.shape)
        stats.var = rng.uniform(0.05, 3.0, stats.var.shape)
    vec_normalize.training = False
    bundle = _bundle(make_model(spec, env=vec_normalize), vec_normalize=vec_normalize)
    assert "normalize" in bundle.summary()["ops"]
    _check(bundle, sample_obs(OBS_SPACES[spec.obs], N_OBS, seed=8), tmp_path)


def test_exported_file(tmp_path):
    """Named inputs for dict keys, a dynamic batch, metadata, a newer opset, an atomic write."""
    bundle = _bundle(make_model(ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="discrete")))
    path = export_onnx(bundle, tmp_path / "policy.onnx", opset=18)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.onnx"]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 18
    assert json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY]) == json.loads(
        json.dumps(bundle.summary())
    )
    assert [i.name for i in model.graph.input] == ["obs.disc", "obs.img", "obs.vec"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    obs = sample_obs(OBS_SPACES["dict"], 7, seed=1)
    obs["img"] = np.ascontiguousarray(obs["img"].transpose(0, 3, 1, 2))
    (action,) = session.run(None, {f"obs.{k}": v for k, v in obs.items()})
    expected, _ = NumpyPolicy(bundle).predict(obs, deterministic=True)
    assert action.dtype == np.int64 and np.array_equal(action, expected)


def _toy_bundle(op: str, attrs: dict | None = None, prelu: int = 0) -> Bundle:
    """obs (6,) -> linear 8 -> ``op`` -> linear 3: one activation between two layers."""
    rng = np.random.default_rng(0)
    tensors = {
        "w1": rng.normal(size=(8, 6)).astype(np.float32),
        "b1": rng.normal(size=8).astype(np.float32),
        "w2": rng.normal(size=(3, 8)).astype(np.float32),
    }
    params = {}
    if prelu:
        tensors["slope"] = rng.uniform(0.0, 0.5, prelu).astype(np.float32)
        params = {"weight": "slope"}
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        policy=(
            Node("linear", ("obs",), ("h",), params={"weight": "w1", "bias": "b1"}),
            Node(op, ("h",), ("a",), params=params, attrs=attrs or {}),
            Node("linear", ("a",), ("action",), params={"weight": "w2"}),
        ),
        output="action",
    )
    space = BoxSpec.create(-np.inf, np.inf, (3,))
    return Bundle(BoxSpec.create(-3.0, 3.0, (6,)), space, graph, tensors)


ACTIVATION_CASES = [
    *[
        pytest.param(op, {}, 0, id=op)
        for op in ["identity", "relu", "relu6", "leaky_relu", "rrelu", "elu", "celu", "selu", "gelu", "silu"]
        + ["mish", "sigmoid", "logsigmoid", "hardsigmoid", "hardswish", "hardtanh", "tanh", "tanhshrink"]
        + ["softplus", "softsign", "softmax", "log_softmax", "hardshrink", "softshrink"]
    ],
    pytest.param("gelu", {"approximate": "tanh"}, 0, id="gelu-tanh"),
    pytest.param("softplus", {"beta": 2.0, "threshold": 1.0}, 0, id="softplus-threshold"),
    pytest.param("threshold", {"threshold": 0.1, "value": -2.0}, 0, id="threshold"),
    pytest.param("prelu", {}, 8, id="prelu-per-channel"),
    pytest.param("prelu", {}, 1, id="prelu-shared"),
]


@pytest.mark.parametrize(("op", "attrs", "prelu"), ACTIVATION_CASES)
def test_activations(op, attrs, prelu, tmp_path):
    bundle = _toy_bundle(op, attrs, prelu)
    obs = np.random.default_rng(1).uniform(-3, 3, (N_OBS, 6)).astype(np.float32)
    _check(bundle, obs, tmp_path)


def test_conv_norms_reshape_and_mean(tmp_path):
    """conv2d with padding, dilation and groups (one input channel per group); batch_norm; layer_norm; reshape; mean."""
    rng = np.random.default_rng(2)
    t = {
        "conv.w": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        "conv.b": rng.normal(size=4).astype(np.float32),
        "bn.mean": rng.normal(size=4).astype(np.float32),
        "bn.var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
        "bn.w": rng.normal(size=4).astype(np.float32),
        "ln.w": rng.normal(size=(6, 6)).astype(np.float32),
        "ln.b": rng.normal(size=(6, 6)).astype(np.float32),
        "head.w": rng.normal(size=(12, 24)).astype(np.float32),
    }
    nodes = (
        Node("divide", ("obs",), ("x",), attrs={"divisor": 255.0}),
        Node(
            "conv2d",
            ("x",),
            ("c",),
            {"weight": "conv.w", "bias": "conv.b"},
            {"padding": [1, 2], "dilation": [1, 2], "groups": 2},
        ),
        Node("batch_norm", ("c",), ("n",), {"mean": "bn.mean", "var": "bn.var", "weight": "bn.w"}),
        Node("layer_norm", ("n",), ("l",), {"weight": "ln.w", "bias": "ln.b"}, {"axes": 2}),
        Node("mean", ("l",), ("m",), attrs={"axis": 2}),
        Node("flatten", ("m",), ("f",)),
        Node("linear", ("f",), ("q",), {"weight": "head.w"}),
        Node("reshape", ("q",), ("r",), attrs={"shape": [3, 4]}),
        Node("mean", ("r",), ("v",), attrs={"axis": 1}),
        Node("greedy", ("v",), ("action",), attrs={"n": 4}),
    )
    graph = Graph((GraphInput("obs", "observation"),), "action", policy=nodes)
    bundle = Bundle(BoxSpec.create(0, 255, (2, 6, 6), "uint8"), DiscreteSpec(4), graph, t)
    obs = np.random.default_rng(3).integers(0, 256, (N_OBS, 2, 6, 6), dtype=np.uint8)
    _check(bundle, obs, tmp_path)


def test_unsupported_op(monkeypatch, tmp_path):
    bundle = _bundle(make_model(ModelSpec("PPO", action="discrete")))
    monkeypatch.delitem(onnx_export.EMITTERS, "tanh")
    with pytest.raises(UnsupportedError, match=r"op 'tanh' cannot be exported to ONNX; the exporter supports: .*relu"):
        export_onnx(bundle, tmp_path / "policy.onnx")
    assert not list(tmp_path.iterdir())
    with pytest.raises(UnsupportedError, match="opset 16"):
        onnx_export.onnx_model(bundle, opset=16)


def test_a_policy_that_draws_straight_from_its_input_samples_like_numpy():
    """Nothing for ONNX to compute before the draw: the tail runs on the inputs alone."""
    graph = Graph((GraphInput("obs", "observation"),), "action", policy=(Node("categorical", ("obs",), ("action",)),))
    bundle = Bundle(BoxSpec.create(-3.0, 3.0, (5,)), DiscreteSpec(5), graph, {})
    obs = np.random.default_rng(4).uniform(-3, 3, (200, 5)).astype(np.float32)
    ours, _ = OnnxPolicy(bundle, seed=9).predict(obs)
    theirs, _ = NumpyPolicy(bundle, seed=9).predict(obs)
    np.testing.assert_array_equal(ours, theirs)
    assert len(np.unique(ours)) == 5
    np.testing.assert_array_equal(OnnxPolicy(bundle).predict(obs, deterministic=True)[0], obs.argmax(axis=1))


def test_discrete_observations_are_range_checked():
    bundle = _bundle(make_model(ModelSpec("PPO", obs="discrete", action="discrete")))
    policy = OnnxPolicy(bundle)
    with pytest.raises(ObservationError, match="outside"):
        policy.predict(np.array([7]))
    with pytest.raises(ObservationError, match="outside"):
        policy.predict(np.array([7]), deterministic=True)
    action, state = policy.predict(3, deterministic=True)
    assert action.shape == () and state is None


def test_missing_onnx_names_the_extra(monkeypatch):
    bundle = _toy_bundle("relu")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "rlport\[onnx\]"'):
        onnx_export.onnx_model(bundle)
