"""``from_torch``: any torch policy network into a bundle.

The module maps a float32 observation batch to the head's inputs (see
:data:`~rlport.frameworks.torch.heads.HEADS`). What the module is fed, from the observation
space: a Box as stored (cast to float32; images too, so that ``x / 255`` inside the module is
captured), Discrete and MultiDiscrete one-hot (as SB3 does), MultiBinary as float32, and a
Dict space's keys each flattened and concatenated in the space's key order.
:func:`observation_tensor` makes that batch from observations, for training code.

Example:
    >>> import gymnasium as gym, torch.nn as nn                           # doctest: +SKIP
    >>> env = gym.make("CartPole-v1")                                      # doctest: +SKIP
    >>> net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2))  # doctest: +SKIP
    >>> bundle = rlport.from_torch(net, env.observation_space, env.action_space, head="categorical",
    ...                            env_id="CartPole-v1")                   # doctest: +SKIP
    >>> bundle.save("cartpole.rlp")                                        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import platform
from importlib import metadata
from typing import Any

import numpy as np

from rlport.assemble import Reference, assemble
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.errors import UnsupportedError, require
from rlport.readers.gym_spaces import spec_from_space

__all__ = ["from_torch", "observation_tensor", "module_input_width"]


def _kind(space: Any) -> str:
    return type(space).__name__


def _leaves(space: Any) -> list[tuple[str | None, Any]]:
    if _kind(space) != "Dict":
        return [(None, space)]
    leaves = []
    for key, sub in space.spaces.items():
        if _kind(sub) == "Dict":
            raise UnsupportedError(f"nested Dict observation spaces (key {key!r}) are not supported by from_torch")
        leaves.append((key, sub))
    return leaves


def _leaf_width(space: Any) -> int:
    kind = _kind(space)
    if kind == "Discrete":
        return int(space.n)
    if kind == "MultiDiscrete":
        return int(np.sum(space.nvec))
    if kind in ("Box", "MultiBinary"):
        return int(np.prod(space.shape))
    raise UnsupportedError(f"observation space {kind} is not supported by from_torch")


def module_input_width(space: Any) -> tuple[int, ...]:
    """The shape (without the batch axis) of what the module is fed for ``space``."""
    leaves = _leaves(space)
    if len(leaves) == 1 and leaves[0][0] is None and _kind(space) in ("Box", "MultiBinary"):
        return tuple(int(s) for s in space.shape)
    return (sum(_leaf_width(sub) for _, sub in leaves),)


def _leaf_tensor(torch: Any, space: Any, obs: Any, dict_leaf: bool) -> Any:
    kind = _kind(space)
    array = np.asarray(obs)
    if kind == "Discrete":
        index = torch.as_tensor(array.reshape(-1).astype(np.int64))
        return torch.nn.functional.one_hot(index, int(space.n)).float()
    if kind == "MultiDiscrete":
        nvec = [int(n) for n in np.asarray(space.nvec).ravel()]
        rows = torch.as_tensor(array.reshape(-1, len(nvec)).astype(np.int64))
        parts = [torch.nn.functional.one_hot(rows[:, k], n).float() for k, n in enumerate(nvec)]
        return torch.cat(parts, dim=-1)
    tensor = torch.as_tensor(array.astype(np.float32)).reshape((-1, *space.shape))
    return tensor.reshape(tensor.shape[0], -1) if dict_leaf else tensor


def observation_tensor(observation_space: Any, obs: Any, obs_normalization: dict | None = None) -> Any:
    """A batch of observations as the module of ``from_torch`` is fed it: a float32 torch tensor.

    Example:
        >>> logits = net(observation_tensor(env.observation_space, obs_batch))   # doctest: +SKIP
    """
    torch = require("torch", "torch", "from_torch")
    leaves = _leaves(observation_space)
    if leaves[0][0] is None:
        if obs_normalization is not None:
            obs = _normalized(np.asarray(obs), obs_normalization)
        return _leaf_tensor(torch, observation_space, obs, False)
    return torch.cat([_leaf_tensor(torch, sub, obs[key], True) for key, sub in leaves], dim=-1)


def _normalization(settings: Any) -> dict[str, Any]:
    """``obs_normalization`` checked: ``mean``, ``var`` (arrays) and optional ``epsilon``, ``clip``."""
    if not isinstance(settings, dict) or not {"mean", "var"} <= set(settings):
        raise UnsupportedError("obs_normalization must be a dict with 'mean' and 'var' (and optionally 'epsilon', "
                               f"'clip'), found {type(settings).__name__}")  # fmt: skip
    unknown = set(settings) - {"mean", "var", "epsilon", "clip"}
    if unknown:
        raise UnsupportedError(f"obs_normalization has unknown keys {sorted(unknown)}; known: mean, var, epsilon, clip")
    return {
        "mean": np.asarray(settings["mean"], dtype=np.float64),
        "var": np.asarray(settings["var"], dtype=np.float64),
        "epsilon": float(settings.get("epsilon", 1e-8)),
        "clip": float(settings.get("clip", 10.0)),
    }


def _normalized(obs: np.ndarray, n: dict[str, Any]) -> np.ndarray:
    """The ``normalize`` op's numpy reference, term for term."""
    std = np.sqrt(n["var"] + n["epsilon"])
    return np.clip((obs - n["mean"]) / std, -n["clip"], n["clip"]).astype(np.float32)


def _observations(b: Any, e: Any, space: Any, normalization: dict | None) -> Any:
    """Graph inputs and pre-processing: one float32 value, as :func:`observation_tensor` makes it."""
    from rlport.frameworks.torch.values import Var

    b.stage = "preprocess"
    leaves = _leaves(space)
    if normalization is not None and (leaves[0][0] is not None or _kind(space) != "Box"):
        raise UnsupportedError("obs_normalization is supported for Box observation spaces only")
    values = []
    for key, sub in leaves:
        x = b.input("obs" if key is None else f"obs.{key}", "observation", key=None if key is None else (key,))
        kind = _kind(sub)
        if normalization is not None:
            params = {"mean": b.tensor("obs_normalization.mean", normalization["mean"]),
                      "var": b.tensor("obs_normalization.var", normalization["var"])}  # fmt: skip
            x = b.add("normalize", [x], params, {"epsilon": normalization["epsilon"], "clip": normalization["clip"]})
        elif kind == "Discrete":
            x = b.add("one_hot", [x], attrs={"n": int(sub.n)})
        elif kind == "MultiDiscrete":
            x = b.add("multi_one_hot", [x], attrs={"sizes": [int(n) for n in np.asarray(sub.nvec).ravel()]})
        else:
            x = b.add("cast", [x], attrs={"dtype": "float32"})
        if key is not None and kind in ("Box", "MultiBinary") and len(sub.shape) != 1:
            x = b.add("flatten", [x])
        values.append(x)
    out = values[0] if len(values) == 1 else b.add("concat", values)
    b.stage = "policy"
    return Var(out, module_input_width(space))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _reference(module: Any, head: str, observation_space: Any, action_space: Any, normalization: Any) -> Reference:
    import torch

    from rlport.frameworks.torch.heads import head_action

    def observations(count: int) -> Any:
        space = copy.deepcopy(observation_space)
        space.seed(12345)
        samples = [space.sample() for _ in range(count)]
        if isinstance(samples[0], dict):
            return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
        return np.stack(samples)

    def predict(obs: Any, state: Any, episode_start: Any) -> tuple[Any, Any]:
        with torch.no_grad():
            outputs = module(observation_tensor(observation_space, obs, normalization))
        return head_action(head, outputs, action_space), None

    differs = (
        f"{type(module).__qualname__}.forward() as torch.export captured it (it computes otherwise when called: "
        "a branch on torch.compiler.is_exporting(), Python state or randomness)"
    )
    return Reference(
        name="torch module",
        predict=predict,
        observations=observations,
        recurrent=False,
        describe=f"torch {_version('torch')} module forward + head {head!r}",
        cannot_express=[differs],
    )


def from_torch(
    module: Any,
    observation_space: Any,
    action_space: Any,
    head: str,
    obs_normalization: dict[str, Any] | None = None,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    probes: int = 256,
) -> Bundle:
    """Capture a torch module (``torch.export``, non-strict, dynamic batch) as a bundle's policy.

    Args:
        module: an ``nn.Module`` mapping the float32 observation batch (see the module doc) to the
            head's inputs. It is captured in eval mode (batch norm uses its running statistics).
        observation_space, action_space: the gymnasium spaces.
        head: how the outputs become the action: one of :data:`~rlport.frameworks.torch.heads.HEADS`.
        obs_normalization: ``{"mean", "var", "epsilon" (1e-8), "clip" (10.0)}`` applied to a Box
            observation before the module, ``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)``.
        env_id, env_kwargs: the gymnasium env to run the policy in (recorded only).
        probes: how many parity probes to record (the module's own deterministic actions).

    Returns:
        The :class:`~rlport.bundle.bundle.Bundle`, checked against the module on probes.

    Raises:
        UnsupportedError: an ATen op without a graph equivalent (named with its module path), a
            recurrent layer, a head that does not fit the spaces, or a bundle that acts otherwise
            than the module on the probes.
    """
    torch = require("torch", "torch", "from_torch")
    from rlport.frameworks.torch.heads import check_head

    if not isinstance(module, torch.nn.Module):
        raise UnsupportedError(f"from_torch needs a torch.nn.Module, found {type(module).__name__}")
    check_head(head, action_space)
    normalization = None if obs_normalization is None else _normalization(obs_normalization)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    cpu_module = copy.deepcopy(module).to("cpu") if device.type != "cpu" else module
    training = cpu_module.training
    cpu_module.eval()  # captured and checked in eval mode (batch norm's running statistics, no dropout)
    try:
        return _assemble(cpu_module, observation_space, action_space, head, normalization, env_id, env_kwargs, probes)
    finally:
        cpu_module.train(training)


def _assemble(module, observation_space, action_space, head, normalization, env_id, env_kwargs, probes) -> Bundle:
    """Capture, translate, add the head, then assemble (checked against the module on probes)."""
    import torch

    from rlport.frameworks.torch.capture import capture, translate
    from rlport.frameworks.torch.heads import emit_head
    from rlport.frameworks.torch.values import Emitter
    from rlport.graph.builder import GraphBuilder

    b = GraphBuilder()
    e = Emitter(b)
    x = _observations(b, e, observation_space, normalization)
    program = capture(module, torch.zeros((2, *x.shape), dtype=torch.float32), type(module).__name__)
    output = emit_head(e, head, translate(program, e, [x]), action_space)
    source = {
        "framework": "torch",
        "module_class": f"{type(module).__module__}.{type(module).__qualname__}",
        "head": head,
        "state_dict": [name for name in module.state_dict() if name in b.tensors],
        "constants": list(e.made),
    }
    return assemble(
        b.build(output),
        dict(b.tensors),
        spec_from_space(observation_space),
        spec_from_space(action_space),
        EnvSpec(id=env_id, kwargs=dict(env_kwargs or {})),
        source,
        {
            "framework": "torch",
            "framework_version": _version("torch"),
            "module_class": source["module_class"],
            "python": platform.python_version(),
            "numpy": np.__version__,
            "gymnasium": _version("gymnasium"),
            "platform": f"{platform.system()}-{platform.machine()}",
        },  # fmt: skip
        probes=probes,
        reference=_reference(module, head, observation_space, action_space, normalization),
        what=f"the torch module {type(module).__name__}",
    )
