"""The torch backend's module under torch's own tools, against the numpy backend's deterministic actions.

Families: PPO on CartPole, SAC on Pendulum, RecurrentPPO (state in and out), MaskablePPO (a
mask input) and a Dict observation (with a one-hot and an image leaf). Each module is traced
or exported on a batch of 3 and then run on a batch of 64, so the batch axis must stay dynamic.
``torch.jit.script`` is refused by name (see rlport/runtimes/torch_graph_module.py).
"""

from __future__ import annotations

import importlib.util
import inspect

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch

import rlport
from rlport.backends.numpy import NumpyPolicy
from rlport.backends.torch.module import _forward_source, forward_parameter_names
from rlport.backends.torch.runtime import TorchPolicy
from rlport.errors import UnsupportedError
from rlport.graph.graph import Graph, GraphInput
from sb3_models import OBS_SPACES, ModelSpec, assert_same_actions, make_model, sample_obs

N = 64


def _cartpole_obs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, 4)).astype(np.float32)  # its bounds are ~infinite


def _pendulum_obs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform([-1, -1, -8], [1, 1, 8], (n, 3)).astype(np.float32)


def _spec_obs(spec: ModelSpec):
    return lambda n, seed: sample_obs(OBS_SPACES[spec.obs], n, seed)


def _family(spec: ModelSpec, env_id: str | None = None, observations=None) -> tuple:
    return spec, env_id, observations or _spec_obs(spec)


FAMILIES = {
    "ppo-cartpole": _family(ModelSpec("PPO", action="discrete"), "CartPole-v1", _cartpole_obs),
    "sac-pendulum": _family(ModelSpec("SAC", action="box"), "Pendulum-v1", _pendulum_obs),
    "recurrent-ppo": _family(ModelSpec("RecurrentPPO", "MlpLstmPolicy", action="box")),
    "maskable-ppo": _family(ModelSpec("MaskablePPO", action="discrete")),
    "dict-obs": _family(ModelSpec("PPO", "MultiInputPolicy", obs="dict", action="box")),
}
MORE = {  # with FAMILIES, 12 different graphs for torch.compile
    str(spec): _family(spec)
    for spec in [
        ModelSpec("PPO", action="multidiscrete"),
        ModelSpec("PPO", action="multibinary"),
        ModelSpec("A2C", "CnnPolicy", obs="gray", action="discrete"),
        ModelSpec("TD3", action="box2d"),
        ModelSpec("DQN", obs="discrete", action="discrete"),
        ModelSpec("QRDQN", obs="multidiscrete", action="discrete"),
        ModelSpec("TQC", action="box"),
    ]
}
_BUNDLES: dict[str, rlport.Bundle] = {}


def _policy(family: str) -> TorchPolicy:
    """The torch backend's policy for a family (a fresh module of a cached bundle)."""
    if family not in _BUNDLES:
        spec, env_id, _ = {**FAMILIES, **MORE}[family]
        model = make_model(spec, env=None if env_id is None else gym.make(env_id))
        _BUNDLES[family] = rlport.from_sb3(model, probes=8, fingerprint=False, evaluate=0)
    return TorchPolicy(_BUNDLES[family])


def _arguments(family: str, policy: TorchPolicy, n: int, seed: int = 5) -> dict:
    """``predict``'s arguments for ``n`` rows: observations, and states, starts and masks where the graph has them."""
    rng = np.random.default_rng(seed)
    arguments: dict = {"observation": {**FAMILIES, **MORE}[family][2](n, seed)}
    graph = policy.bundle.graph
    if graph.inputs_with_role("state"):
        shapes = [(*s.shape[: s.batch_axis], n, *s.shape[s.batch_axis :]) for s in graph.inputs_with_role("state")]
        arguments["state"] = tuple(rng.normal(0.0, 0.5, shape).astype(np.float32) for shape in shapes)
        arguments["episode_start"] = rng.integers(0, 2, n).astype(bool)
    for mask in graph.inputs_with_role("action_mask"):
        allowed = rng.random((n, mask.size)) < 0.6
        allowed[np.arange(n), rng.integers(0, mask.size, n)] = True  # every row allows an action
        arguments["action_masks"] = allowed
    return arguments


def _reference(policy: TorchPolicy, arguments: dict) -> list[np.ndarray]:
    """The numpy backend's deterministic ``(action, *next_states)``."""
    action, state = NumpyPolicy(policy.bundle).predict(deterministic=True, **arguments)
    return [action, *(state if policy.is_recurrent else ())]


def _assert_same(policy: TorchPolicy, outputs, reference: list[np.ndarray], what: str) -> None:
    outputs = [o.detach().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outputs]
    assert len(outputs) == len(reference), what
    assert_same_actions(outputs[0], reference[0], what)
    for ours, theirs in zip(outputs[1:], reference[1:], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5, err_msg=f"{what}: next state")


def _case(family: str):
    policy = _policy(family)
    arguments = _arguments(family, policy, N)
    return policy, policy.module_inputs(**arguments), _reference(policy, arguments)


# ---- the signature -------------------------------------------------------------------------


def test_each_module_has_a_plain_signature_of_its_graphs_inputs():
    expected = {
        "ppo-cartpole": ["obs"],
        "recurrent-ppo": ["obs", "lstm_h", "lstm_c", "episode_start"],
        "maskable-ppo": ["obs", "action_mask"],
        "dict-obs": ["obs_disc", "obs_img", "obs_vec"],
    }
    forwards = []
    for family, names in expected.items():
        module = _policy(family).module
        parameters = inspect.signature(module.forward).parameters
        assert [n for n, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD] == names, family
        assert module.input_names == tuple(names)
        assert not hasattr(module, "graph") and module.policy_graph is _policy(family).bundle.graph
        forwards.append(type(module).forward.__code__)
    assert len({id(code) for code in forwards}) == len(forwards)  # torch.compile caches per code object
    masked = inspect.signature(_policy("maskable-ppo").module.forward).parameters
    assert masked["action_mask"].default is None and masked["obs"].default is inspect.Parameter.empty


def test_names_from_the_manifest_never_reach_the_generated_code():
    hostile = ["x); import os; os.system('true'", "def", "self", "obs", "obs", "9lives", "é", "options", "a" * 100]
    graph = Graph(tuple(GraphInput(name, "observation") for name in hostile), output="y")
    names = forward_parameter_names(graph)
    assert names == ("x___import_os__os_system__true_", "input1", "input2", "obs", "obs_", "input5", "_",
                     "input7", "input8")  # fmt: skip
    assert all(name.isidentifier() and name.isascii() for name in names)
    source = _forward_source(graph, names)
    assert "os.system" not in source and "'" not in source and ";" not in source


def test_deterministic_is_an_attribute_not_an_input():
    policy = _policy("sac-pendulum")
    module, inputs = policy.module, policy.example_inputs(batch=8)
    with torch.no_grad():
        (mode,) = module(*inputs)
        module.deterministic = False
        module.seed(0)
        (sampled,) = module(*inputs)
        (again,) = module(*inputs, deterministic=True)
    assert not torch.equal(mode, sampled) and torch.equal(mode, again)


# ---- the tools ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_jit_script_is_refused_clearly(family):
    module = _policy(family).module
    with pytest.raises(UnsupportedError, match=r"torch\.jit\.script cannot compile .*use torch\.jit\.trace"):
        torch.jit.script(module)


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_jit_trace(family):
    policy, inputs, reference = _case(family)
    traced = torch.jit.trace(policy.module, policy.example_inputs(batch=3))
    with torch.no_grad():
        _assert_same(policy, traced(*inputs), reference, f"{family}: torch.jit.trace")


def _onnx_outputs(path, module, inputs) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[module.input_names.index(i.name)].numpy() for i in session.get_inputs()}
    return session.run(None, feed)


@pytest.mark.parametrize("family", FAMILIES)
def test_classic_torch_onnx_export_runs_in_onnxruntime(family, tmp_path):
    policy, inputs, reference = _case(family)
    module, path = policy.module, tmp_path / "policy.onnx"
    torch.onnx.export(
        module,
        policy.example_inputs(batch=3),
        str(path),
        dynamo=False,
        input_names=list(module.input_names),
        dynamic_axes=module.dynamic_shapes("batch"),
    )
    _assert_same(policy, _onnx_outputs(path, module, inputs), reference, f"{family}: torch.onnx.export")


@pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None, reason="torch's dynamo ONNX exporter needs onnxscript"
)
@pytest.mark.parametrize("family", FAMILIES)
def test_dynamo_torch_onnx_export_runs_in_onnxruntime(family, tmp_path):
    policy, inputs, reference = _case(family)
    module, path = policy.module, tmp_path / "policy.onnx"
    program = torch.onnx.export(
        module, policy.example_inputs(batch=3), dynamo=True, dynamic_shapes=module.dynamic_shapes(), verbose=False
    )
    program.save(str(path))
    _assert_same(policy, _onnx_outputs(path, module, inputs), reference, f"{family}: torch.onnx.export(dynamo=True)")


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_export_with_a_dynamic_batch(family):
    policy, inputs, reference = _case(family)
    module = policy.module
    program = torch.export.export(module, policy.example_inputs(batch=3), dynamic_shapes=module.dynamic_shapes())
    with torch.no_grad():
        _assert_same(policy, program.module()(*inputs), reference, f"{family}: torch.export")
        one = policy.module_inputs(**_arguments(family, policy, 1, seed=9))
        _assert_same(policy, program.module()(*one), [r for r in module(*one)], f"{family}: torch.export, batch 1")


def test_torch_compile_fullgraph_on_twelve_modules_in_one_process():
    """Each module has its own forward: dynamo's recompile limit (8 per code object) is never reached.

    ``backend="eager"`` runs what dynamo captured without generating code (the limit is
    dynamo's, before any backend); inductor is covered by test_torch_runtime.py.
    """
    torch._dynamo.reset()
    families = [*FAMILIES, *MORE]
    assert len(families) == 12
    for family in families:
        policy, inputs, reference = _case(family)
        compiled = torch.compile(policy.module, fullgraph=True, backend="eager")
        with torch.no_grad():
            _assert_same(policy, compiled(*inputs), reference, f"{family}: torch.compile")
