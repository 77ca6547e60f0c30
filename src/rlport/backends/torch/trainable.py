"""A bundle's policy as a trainable torch module: distributions, log-probabilities, fine-tuned weights back.

:class:`TrainablePolicy` runs the bundle's graph in torch with gradients flowing into the
policy's weights (the tensors of the policy stage up to the action op; pre- and post-processing
and the constants rlport made from a module's literals, ``source["constants"]``, stay fixed). Actions given to
:meth:`~TrainablePolicy.evaluate_actions` are the distribution's own samples, before the
post-processing to the action space: class indices, the Gaussian's raw sample (as SB3's PPO
stores it), or for a tanh-squashed Gaussian the squashed value in [-1, 1] (as SB3's SAC stores
it). :meth:`~TrainablePolicy.postprocess` maps them to the env's action.
This module imports torch: import it lazily.

Example:
    >>> policy = TrainablePolicy(Bundle.load("ppo-cartpole.rlp"))               # doctest: +SKIP
    >>> optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)               # doctest: +SKIP
    >>> log_prob, entropy, _ = policy.evaluate_actions(obs, actions)            # doctest: +SKIP
    >>> (-(log_prob * advantages).mean()).backward(); optimizer.step()          # doctest: +SKIP
    >>> policy.to_bundle().save("fine-tuned.rlp")                               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from rlport.backends.torch.module import GraphModule
from rlport.errors import ObservationError, UnsupportedError

__all__ = ["TrainablePolicy", "make_distribution", "ACTION_OPS"]

_FIXED_OPS = ("normalize", "rescale_to_bounds", "clip_to_bounds")
_SQUASH_EPS = 1e-6  # added inside the log of tanh's derivative, as SB3 does
ACTION_OPS = ("categorical", "multi_categorical", "bernoulli", "gaussian", "gsde", "greedy")
"""The graph's action ops; each but ``greedy`` has a distribution."""


class MultiCategorical(torch.distributions.Distribution):
    """Independent categoricals over consecutive slices of the logits (MultiDiscrete; actions ``(batch, k)``)."""

    arg_constraints: dict = {}

    def __init__(self, logits: torch.Tensor, sizes: list[int]) -> None:
        self.parts = [torch.distributions.Categorical(logits=p) for p in torch.split(logits, sizes, dim=-1)]
        super().__init__(logits.shape[:-1], validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.stack([d.log_prob(value[..., k]) for k, d in enumerate(self.parts)], dim=-1).sum(-1)

    def entropy(self) -> torch.Tensor:
        return torch.stack([d.entropy() for d in self.parts], dim=-1).sum(-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return torch.stack([d.sample(sample_shape) for d in self.parts], dim=-1)

    @property
    def mode(self) -> torch.Tensor:
        return torch.stack([d.probs.argmax(-1) for d in self.parts], dim=-1)


class SquashedNormal(torch.distributions.Distribution):
    """tanh of a diagonal Gaussian (SB3's ``SquashedDiagGaussianDistribution``): actions in (-1, 1)."""

    arg_constraints: dict = {}

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.base = torch.distributions.Normal(mean, std, validate_args=False)
        super().__init__(mean.shape[:-1], validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(value.dtype).eps  # SB3's TanhBijector.inverse keeps atanh finite so
        gaussian = torch.atanh(value.clamp(-1.0 + eps, 1.0 - eps))
        return (self.base.log_prob(gaussian) - torch.log(1.0 - value**2 + _SQUASH_EPS)).sum(-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return torch.tanh(self.base.sample(sample_shape))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return torch.tanh(self.base.rsample(sample_shape))

    @property
    def mode(self) -> torch.Tensor:
        return torch.tanh(self.base.mean)


def _gsde_std(log_std: torch.Tensor, use_expln: bool, full_std: bool, latent: torch.Tensor, width: int):
    """SB3's ``StateDependentNoiseDistribution.get_std``."""
    if use_expln:
        below = torch.exp(log_std) * (log_std <= 0)
        safe = log_std * (log_std > 0) + 1e-6
        std = below + (torch.log1p(safe) + 1.0) * (log_std > 0)
    else:
        std = torch.exp(log_std)
    if full_std:
        return std
    return torch.ones((latent.shape[1], width), dtype=std.dtype, device=std.device) * std


def make_distribution(op: str, inputs: list, params: dict, attrs: dict, squashed: bool) -> Any:
    """The torch distribution of an action op from its inputs (and parameters).

    Raises:
        UnsupportedError: ``greedy`` (Q-values), which has no distribution.
    """
    normal = torch.distributions.Normal
    independent = torch.distributions.Independent
    if op == "categorical":
        logits, mask = inputs[0], inputs[1] if len(inputs) > 1 else None
        if mask is not None:
            logits = torch.where(mask.to(torch.bool).reshape(logits.shape), logits, torch.full_like(logits, -1e8))
        return torch.distributions.Categorical(logits=logits, validate_args=False)
    if op == "multi_categorical":
        logits, mask = inputs[0], inputs[1] if len(inputs) > 1 else None
        if mask is not None:
            logits = torch.where(mask.to(torch.bool).reshape(logits.shape), logits, torch.full_like(logits, -1e8))
        return MultiCategorical(logits, [int(s) for s in attrs["sizes"]])
    if op == "bernoulli":
        return independent(torch.distributions.Bernoulli(logits=inputs[0], validate_args=False), 1)
    if op == "gaussian":
        mean = inputs[0]
        log_std = inputs[1] if len(inputs) > 1 and inputs[1] is not None else params["log_std"]
        std = torch.ones_like(mean) * torch.exp(log_std)
        return SquashedNormal(mean, std) if squashed else independent(normal(mean, std, validate_args=False), 1)
    if op == "gsde":
        mean, latent = inputs
        std = _gsde_std(params["log_std"], bool(attrs["use_expln"]), bool(attrs["full_std"]), latent, mean.shape[1])
        variance = torch.mm(latent**2, std**2)
        scale = torch.sqrt(variance + float(attrs["epsilon"]))
        return SquashedNormal(mean, scale) if squashed else independent(normal(mean, scale, validate_args=False), 1)
    raise UnsupportedError(
        f"the action op {op!r} has no action distribution (Q-values choose by argmax); use "
        "TrainablePolicy.head_inputs(obs) for the Q-values"
    )


class TrainablePolicy(nn.Module):
    """A bundle's graph as a trainable ``nn.Module``.

    Args:
        bundle: a loaded :class:`~rlport.bundle.bundle.Bundle` (feed-forward: recurrent graphs are refused).
        device: where the weights live.

    Attributes:
        graph_module: the :class:`~rlport.backends.torch.module.GraphModule` holding the weights.
        action_op: the graph's action op (``categorical``, ``gaussian`` ...).
        trainable: bundle tensor name -> whether training changes it.

    Raises:
        UnsupportedError: a recurrent graph, or a graph without an action op.
    """

    def __init__(self, bundle: Any, device: str | torch.device = "cpu") -> None:
        super().__init__()
        graph = bundle.graph
        if any(i.role == "state" for i in graph.inputs):
            raise UnsupportedError("recurrent policies (an lstm op) are not trainable in TrainablePolicy yet; "
                                   "fine-tune them with SB3 (rlport.to_sb3)")  # fmt: skip
        self.bundle = bundle
        self.graph_module = GraphModule(graph, bundle.tensors, device=device)
        self._nodes = list(graph.nodes())
        found = [k for k, node in enumerate(self._nodes) if node.op in ACTION_OPS]
        if not found:
            raise UnsupportedError(f"the graph has no action op ({', '.join(ACTION_OPS)}): nothing to train")
        self._action = found[0]
        self.action_op = self._nodes[self._action].op
        self._needed = self._ancestors(self._action)
        action_value = self._nodes[self._action].outputs[0]
        squash = [k for k in range(self._action + 1, len(self._nodes))
                  if self._nodes[k].op == "tanh" and self._nodes[k].inputs[0] == action_value]  # fmt: skip
        self._squashed = bool(squash)
        self._sampled = squash[0] if squash else self._action  # the node whose output the distribution samples
        self.trainable = self._mark_trainable(bundle)

    def _ancestors(self, index: int) -> list[int]:
        """The nodes before ``index`` that its inputs depend on, in order."""
        wanted = set(self._nodes[index].inputs)
        needed = []
        for k in range(index - 1, -1, -1):
            if wanted & set(self._nodes[k].outputs):
                needed.append(k)
                wanted |= set(self._nodes[k].inputs)
        return needed[::-1]

    def _mark_trainable(self, bundle: Any) -> dict[str, bool]:
        fixed = set(bundle.source.get("constants", []) if isinstance(bundle.source, dict) else [])
        policy = set()
        for k in [*self._needed, self._action]:
            node = self._nodes[k]
            if node.op not in _FIXED_OPS:
                policy |= set(node.params.values())
        attributes = {v: k for k, v in self.graph_module.tensor_names.items()}
        marks = {}
        for name, attribute in attributes.items():
            tensor = getattr(self.graph_module, attribute)
            marks[name] = name in policy and name not in fixed and isinstance(tensor, nn.Parameter)
            if marks[name]:
                tensor.requires_grad_(True)
        return marks

    # ---- inputs ---------------------------------------------------------------------------

    def _inputs(self, obs: Any, action_mask: Any = None) -> dict[str, torch.Tensor | None]:
        """The graph's inputs by name from an observation batch (a tensor, array, or dict by key)."""
        device = self._device()
        values: dict[str, Any] = {}
        for graph_input in self.graph_module.policy_graph.inputs:
            if graph_input.role == "observation":
                leaf = obs if graph_input.key is None else _lookup(obs, graph_input.key)
                values[graph_input.name] = torch.as_tensor(leaf, device=device)
            elif graph_input.role == "action_mask":
                values[graph_input.name] = None if action_mask is None else torch.as_tensor(action_mask, device=device)
            else:
                values[graph_input.name] = None
        return values

    def _device(self) -> torch.device:
        return next(iter(self.graph_module.state_dict().values()), torch.empty(0)).device

    def _run(self, values: dict[str, Any], indices: list[int]) -> dict[str, Any]:
        ctx = self.graph_module._ctxs[True]  # noqa: SLF001 - the module's own deterministic context
        for k in indices:
            node = self._nodes[k]
            result = self.graph_module._run(k, node, [values.get(n) for n in node.inputs], ctx)  # noqa: SLF001
            values.update(zip(node.outputs, (result,) if len(node.outputs) == 1 else result, strict=True))
        return values

    def head_inputs(self, obs: Any, action_mask: Any = None) -> list[torch.Tensor | None]:
        """The action op's inputs (logits, Q-values, mean and log_std ...) for a batch, with gradients."""
        values = self._run(self._inputs(obs, action_mask), self._needed)
        return [values.get(name) for name in self._nodes[self._action].inputs]

    # ---- distributions ----------------------------------------------------------------------

    def distribution(self, obs: Any, action_mask: Any = None) -> torch.distributions.Distribution:
        """The action distribution for a batch of observations (see the module doc for its actions).

        Raises:
            UnsupportedError: the action op is ``greedy`` (Q-values have no distribution: use :meth:`head_inputs`).
        """
        node = self._nodes[self._action]
        params = {role: getattr(self.graph_module, self.graph_module_attr(name)) for role, name in node.params.items()}
        return make_distribution(node.op, self.head_inputs(obs, action_mask), params, node.resolved_attrs(),
                                 self._squashed)  # fmt: skip

    def graph_module_attr(self, name: str) -> str:
        """The attribute of :attr:`graph_module` holding the bundle tensor ``name``."""
        return {v: k for k, v in self.graph_module.tensor_names.items()}[name]

    def evaluate_actions(self, obs: Any, actions: Any, action_mask: Any = None) -> tuple[Any, Any, None]:
        """``(log_prob, entropy, value)`` of ``actions`` (the distribution's own samples) for a batch.

        ``entropy`` is ``None`` for a tanh-squashed Gaussian (no closed form, as in SB3); ``value``
        is ``None``: a bundle holds the acting graph only (train a critic beside it).
        """
        dist = self.distribution(obs, action_mask)
        actions = torch.as_tensor(actions, device=self._device())
        log_prob = dist.log_prob(actions)
        try:
            entropy = dist.entropy()
        except NotImplementedError:
            entropy = None
        return log_prob, entropy, None

    def postprocess(self, actions: torch.Tensor) -> torch.Tensor:
        """The env's actions for the distribution's samples: the graph's ops after the action op."""
        values = {self._nodes[self._sampled].outputs[0]: actions}
        values = self._run(values, list(range(self._sampled + 1, len(self._nodes))))
        return values[self.graph_module.policy_graph.output]

    def forward(self, obs: Any, deterministic: bool = True, action_mask: Any = None) -> torch.Tensor:
        """The env's action for a batch: the mode (``deterministic``) or a sample, post-processed."""
        if deterministic:
            return self.postprocess(self._mode(obs, action_mask))
        with torch.no_grad():
            return self.postprocess(self.distribution(obs, action_mask).sample())

    def _mode(self, obs: Any, action_mask: Any) -> torch.Tensor:
        values = self._run(self._inputs(obs, action_mask), [*self._needed, *range(self._action, self._sampled + 1)])
        return values[self._nodes[self._sampled].outputs[0]]

    # ---- writing back ---------------------------------------------------------------------

    def to_bundle(self, probes: int = 256) -> Any:
        """A new bundle with the current weights and the same graph, spaces, env and pre/post-processing.

        Its probes are re-recorded (the torch runtime's deterministic actions on the old probes'
        observations) and checked on the numpy runtime; verification data recorded for the old
        weights (returns, fingerprint) is dropped, and int8 encodings too (the weights are float32).

        Raises:
            UnsupportedError: a weight is no longer finite, or the numpy runtime acts otherwise.
        """
        from rlport.backends.numpy import NumpyPolicy
        from rlport.backends.parity import check_against_source
        from rlport.backends.torch.runtime import TorchPolicy
        from rlport.bundle.manifest import ProbeInfo
        from rlport.bundle.probes import record_probes
        from rlport.bundle.spaces import sample_observations
        from rlport.graph.passes import Encodings

        tensors = dict(self.bundle.tensors)
        for name, attribute in {v: k for k, v in self.graph_module.tensor_names.items()}.items():
            if self.trainable.get(name):
                value = getattr(self.graph_module, attribute).detach().cpu().numpy()
                if not np.all(np.isfinite(value)):
                    raise UnsupportedError(f"weight {name!r} is no longer finite after training; not written")
                tensors[name] = value.astype(np.asarray(tensors[name]).dtype)
        provenance = {**self.bundle.provenance, "fine_tuned": "rlport TrainablePolicy"}
        bundle = dataclasses.replace(self.bundle, tensors=tensors, provenance=provenance, probes=None,
                                     probe_info=None, verification=None, fingerprint=None,
                                     encodings=Encodings(), encoded={})  # fmt: skip
        bundle.validate()
        numpy_policy = NumpyPolicy(bundle)
        old = self.bundle.probes
        if old is not None and "obs" in old:
            batch = old["obs"]
        elif old is not None:
            batch = {k[4:]: v for k, v in old.items() if k.startswith("obs.")}
        else:
            batch = sample_observations(bundle.observation_space, max(probes, 16), np.random.default_rng(12345))
        torch_policy = TorchPolicy(bundle)
        recorded = record_probes(batch, lambda o, s, e: torch_policy.predict(o, s, e, deterministic=True), False)
        check_against_source(bundle, "fine-tuned torch module", [], recorded, numpy_policy)
        if probes > 0:
            bundle.probes = recorded
            bundle.probe_info = ProbeInfo(len(recorded["action"]), False, "rlport torch runtime after fine-tuning")
        return bundle


def _lookup(obs: Any, key: tuple[str, ...]) -> Any:
    for part in key:
        if not isinstance(obs, dict) or part not in obs:
            raise ObservationError(f"the observation has no key {part!r}; the policy needs keys {list(key)}")
        obs = obs[part]
    return obs
