"""``rlport.import_state_dict``: bare SB3 weights (``torch.save(model.policy.state_dict(), path)``) to a bundle.

Guides on moving SB3 policies between machines save only the weights and rebuild the model on the
target. Such a file (or a ``policy.pth`` taken out of an SB3 ``.zip``: the same format) holds
tensors and nothing else. The algorithm comes from the user; the spaces from the env (made here) or
from JSON space specs; everything else from the tensor names and shapes with SB3's construction
rules (:mod:`rlport.frameworks.sb3.state_dict_facts`). What the tensors cannot tell (a
parameter-free activation, ``normalize_images``...) is SB3's default for the algorithm unless
``policy_kwargs`` says otherwise, and is *assumed*: an ``RlportWarning`` and the bundle's
``source["assumed"]`` say so. From there the file goes the way of an SB3 ``.zip``: the same inert
skeleton, the same graph. When stable-baselines3 is installed, it rebuilds the policy from the same
facts, takes the tensors (strictly) and its actions are the probes the bundle must reproduce.

The file is read pickle-free (:func:`rlport.readers.torch_pth.read_torch_file`): torch need not be installed.

Example:
    >>> bundle = rlport.import_state_dict("weights.pth", algorithm="A2C", env="CartPole-v1")   # doctest: +SKIP
    >>> bundle.save("cartpole.rlp")                                                           # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np

from rlport.assemble import assemble
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.bundle.spaces import BoxSpec, DictSpec, SpaceSpec, is_image, space_from_json
from rlport.errors import RlportWarning, SpaceError, UnsupportedError
from rlport.frameworks.sb3.classes import check_recorded_classes
from rlport.frameworks.sb3.importer import trusted_module
from rlport.frameworks.sb3.live import jsonable
from rlport.frameworks.sb3.policies import build_graph
from rlport.frameworks.sb3.skeleton import build_policy, module
from rlport.frameworks.sb3.state_dict_facts import FAMILIES, Facts, infer_facts
from rlport.frameworks.sb3.state_dict_reference import describe_facts, sb3_reference
from rlport.frameworks.sb3.vecnormalize import MAX_VECNORMALIZE_SIZE, read_vecnormalize, vec_normalize_settings
from rlport.readers.gym_spaces import spec_from_space
from rlport.readers.torch_pth import read_torch_file
from rlport.readers.untrusted import read_regular
from rlport.verify.record import record_or_warn

__all__ = ["import_state_dict", "policy_observation_space", "MAX_STATE_DICT_SIZE"]

MAX_STATE_DICT_SIZE = 1 << 30
"""The largest state_dict file read (1 GiB, the largest ``policy.pth`` an SB3 ``.zip`` may hold)."""

_CRITIC = {
    "actor_critic": ("mlp_extractor.value_net.", "value_net.", "vf_features_extractor.", "features_extractor.",
                     "lstm_critic.", "critic."),
    "q": ("q_net_target.",),
    "quantile": ("quantile_net_target.",),
    "squashed": ("critic.", "critic_target."),
    "deterministic": ("critic.", "critic_target.", "actor_target."),
    "ars": (),
}  # fmt: skip
"""Tensors acting does not use, by kind: the value / Q networks and target copies (kept with ``include_critic``)."""
_REQUIRED = {
    "actor_critic": ("action_net.weight", "value_net."),
    "q": ("q_net.q_net.", "q_net_target."),
    "quantile": ("quantile_net.quantile_net.", "quantile_net_target."),
    "squashed": ("actor.log_std", "critic.qf0."),
    "deterministic": ("actor.mu.0.", "actor_target.", "critic.qf0."),
    "ars": ("action_net.0.",),
}
"""Tensors every policy of the kind has (some no other kind has): absent, the file is not that policy's state_dict."""
_BUFFERS = (".steps", ".num_batches_tracked")
"""Batch-norm counters: training bookkeeping, unused when acting."""


def _space_spec(value: SpaceSpec | dict | None, name: str) -> SpaceSpec | None:
    if value is None or not isinstance(value, dict) and hasattr(value, "to_json"):
        return value  # a space spec
    if not isinstance(value, dict):
        raise SpaceError(f"{name} should be a space spec or its JSON object ({{\"type\": \"box\", ...}}), "
                         f"found {type(value).__name__}")  # fmt: skip
    return space_from_json(value)


def _spaces(env: str | None, env_kwargs: dict | None, observation_space: Any, action_space: Any
            ) -> tuple[SpaceSpec, SpaceSpec]:  # fmt: skip
    """The spaces: the JSON specs given, else the env's (an id the user typed is theirs to make)."""
    obs = _space_spec(observation_space, "observation_space")
    act = _space_spec(action_space, "action_space")
    if obs is not None and act is not None:
        return obs, act
    if env is None:
        raise SpaceError("a bare state_dict does not hold its spaces: pass the env it was trained in (--env ID) "
                         "or both --observation-space and --action-space as JSON space specs")  # fmt: skip
    from rlport.envs import make_env

    made = make_env(EnvSpec(id=env), env_id=env, env_kwargs=env_kwargs or {})
    try:
        return obs or spec_from_space(made.observation_space), act or spec_from_space(made.action_space)
    finally:
        made.close()


def policy_observation_space(space: SpaceSpec) -> SpaceSpec:
    """The observation space SB3 builds a policy with: channel-last images transposed (its ``VecTransposeImage``).

    SB3 takes the channel axis to be the smallest one; an image whose first axis is not is channel-last.
    """
    if isinstance(space, DictSpec):
        return DictSpec(tuple((key, policy_observation_space(sub)) for key, sub in space.spaces))
    if not is_image(space) or int(np.argmin(space.shape)) == 0:
        return space
    height, width, channels = space.shape
    return BoxSpec.create(0, 255, (channels, height, width), "uint8")


def _skeleton_space(spec: SpaceSpec) -> Any:
    """A space as the skeleton builder takes it (class name and attributes, as read from an SB3 ``.zip``)."""
    kind = type(spec).__name__.removesuffix("Spec")
    if isinstance(spec, DictSpec):
        return module("Dict", spaces={key: _skeleton_space(sub) for key, sub in spec.spaces})
    if isinstance(spec, BoxSpec):
        return module("Box", shape=spec.shape, dtype=np.dtype(spec.dtype), low=spec.low, high=spec.high)
    if kind == "Discrete":
        return module("Discrete", n=spec.n, start=spec.start, shape=())
    if kind == "MultiDiscrete":
        nvec = np.array(spec.nvec).reshape(spec.shape)
        return module("MultiDiscrete", nvec=nvec, start=np.array(spec.start).reshape(spec.shape), shape=spec.shape,
                      dtype=np.dtype(spec.dtype))  # fmt: skip
    return module("MultiBinary", n=list(spec.shape) if len(spec.shape) > 1 else spec.shape[0], shape=spec.shape)


def _given(policy_kwargs: dict | None, what: str) -> dict[str, Any]:
    """The user's ``policy_kwargs``, classes by dotted name (a class object or a name)."""
    if policy_kwargs is None:
        return {}
    if not isinstance(policy_kwargs, dict) or not all(isinstance(k, str) for k in policy_kwargs):
        raise UnsupportedError(f"{what}: policy_kwargs should be a dict of argument names, found "
                               f"{type(policy_kwargs).__name__}")  # fmt: skip
    return jsonable(policy_kwargs)


def _skeleton_kwargs(facts: Facts) -> dict[str, Any]:
    """The facts as the skeleton builder reads them (classes by short name, as in an SB3 ``.zip``)."""
    kwargs = dict(facts.policy_kwargs)
    for key in ("activation_fn", "features_extractor_class"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = kwargs[key].rsplit(".", 1)[-1]
    return kwargs


def _check_kind(state: dict[str, np.ndarray], algorithm: str, what: str) -> None:
    """The tensors every policy of the algorithm has are there (before anything is inferred from them)."""
    family = FAMILIES.get(algorithm)
    for required in _REQUIRED[family.kind] if family else ():
        if not any(name.startswith(required) for name in state):
            raise UnsupportedError(
                f"{what}: no {required}* tensor, which every {algorithm} policy has; it is not a whole "
                f"model.policy.state_dict() of {algorithm} (was the file edited, or saved from another algorithm?)"
            )


def _check_tensors(state: dict[str, np.ndarray], used: set[str], kind: str, facts: Facts, what: str) -> None:
    """Every tensor is one the graph uses or one of the critic's (torch-free; SB3's strict load is stricter)."""
    spare = [name for name in state if name not in used and not name.endswith(_BUFFERS)]
    extra = [name for name in spare if not name.startswith(_CRITIC[kind])]
    if extra:
        raise UnsupportedError(
            f"{what}: {len(extra)} tensor(s) that a {facts.alias} built from {describe_facts(facts)} does not have: "
            f"{', '.join(extra[:5])}; was the file edited, or saved from another algorithm or policy?"
        )


def _warn_assumed(facts: Facts, algorithm: str, what: str) -> None:
    if facts.assumed:
        values = ", ".join(
            f"{k}={facts.alias if k == 'policy_class' else str(facts.policy_kwargs[k]).rsplit('.', 1)[-1]}"
            for k in facts.assumed
        )
        warnings.warn(
            f"{what}: the tensors do not tell {', '.join(facts.assumed)}; assumed {values} (SB3's defaults for "
            f"{algorithm}). If the model was built otherwise, its actions differ: pass them in policy_kwargs "
            "(--policy-kwargs JSON)",
            RlportWarning,
            stacklevel=3,
        )


def _source(facts: Facts, algorithm: str, state: dict, tensors: dict, include_critic: bool, stats: Any) -> dict:
    source = {
        "framework": "stable-baselines3",
        "algorithm": algorithm,
        "policy_class": facts.policy_class,
        "policy_kwargs": dict(facts.policy_kwargs),
        "state_dict": [name for name in state if name in tensors],
        "includes_critic": bool(include_critic),
        "squash_output": False,
        "use_sde": bool(facts.policy_kwargs.get("use_sde", False)),
        "hyperparameters": {},
        "imported": True,
        "imported_from": "state_dict",
        "assumed": list(facts.assumed),
    }
    if stats is not None:
        source["vec_normalize"] = vec_normalize_settings(stats)
    return source


def import_state_dict(
    path: str | os.PathLike,
    *,
    algorithm: str,
    env: str | None = None,
    env_module: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    observation_space: SpaceSpec | dict | None = None,
    action_space: SpaceSpec | dict | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    policy: str | None = None,
    vecnormalize: str | os.PathLike | None = None,
    probes: int = 256,
    include_critic: bool = False,
    fingerprint: bool = True,
    evaluate: int = 0,
) -> Bundle:
    """Import an SB3 / sb3-contrib policy's bare ``state_dict`` (``.pth``), rebuilding the policy by SB3's rules.

    Args:
        path: what ``torch.save(model.policy.state_dict(), path)`` wrote, or a ``policy.pth`` out of an SB3 ``.zip``.
        algorithm: the algorithm that trained it (``"A2C"``... a key of ``state_dict_facts.FAMILIES``).
        env: the gymnasium env id it acts in: its spaces are the policy's, and it is recorded.
        env_module: the one module an env id of the form ``module:EnvName`` may import (by default the id's own).
        env_kwargs: kwargs for ``gymnasium.make``.
        observation_space, action_space: space specs (or their JSON objects) instead of the env's.
        policy_kwargs: the ``policy_kwargs`` the model was built with; needed for what the tensors cannot
            tell (``activation_fn``...), checked against them for the rest (``net_arch``...).
        policy: the policy alias (``"MlpPolicy"``, ``"LinearPolicy"``), when the tensors do not tell (ARS).
        vecnormalize: the model's ``vecnormalize.pkl``, whose observation statistics become pre-processing.
        probes: how many probes to record (SB3's actions when it is installed, else rlport's).
        include_critic: also keep the tensors acting does not use (value / Q networks).
        fingerprint, evaluate: what to record for ``rlport verify`` (see ``rlport.import_sb3``).

    Raises:
        BundleError, UnsafeFileError: not a torch state_dict, or a pickle asking for more than tensors.
        SpaceError: no spaces (neither ``env`` nor both specs).
        UnsupportedError: an unknown algorithm; a fact given that the tensors contradict; tensors too
            many or missing; or, with stable-baselines3 installed, a policy it cannot build from the facts,
            that does not take the tensors, or that acts otherwise than the bundle.
    """
    what = str(path)
    state = read_torch_file(read_regular(path, MAX_STATE_DICT_SIZE, what), what=what)
    stats = None
    if vecnormalize is not None:
        stats = read_vecnormalize(read_regular(vecnormalize, MAX_VECNORMALIZE_SIZE, str(vecnormalize)),
                                  what=str(vecnormalize))  # fmt: skip
    _check_kind(state, algorithm, what)
    obs, act = _spaces(env, env_kwargs, observation_space, action_space)
    obs = policy_observation_space(obs)
    facts = infer_facts(algorithm, state, obs, act, _given(policy_kwargs, what), policy, what)
    check_recorded_classes(facts.policy_kwargs, {}, facts.policy_class, what)
    _warn_assumed(facts, algorithm, what)
    reference = sb3_reference(facts, state, obs, act, stats, what)
    skeleton = build_policy(facts.policy_class, state, _skeleton_space(obs), _skeleton_space(act),
                            _skeleton_kwargs(facts))  # fmt: skip
    builder = build_graph(SimpleNamespace(policy=skeleton, exploration_rate=0.0), stats)
    tensors = dict(builder.tensors)
    _check_tensors(state, set(tensors), FAMILIES[algorithm].kind, facts, what)
    if include_critic:
        for name, value in state.items():
            tensors.setdefault(name, value)
    source = _source(facts, algorithm, state, tensors, include_critic, stats)
    source["squash_output"] = bool(skeleton.squash_output)
    provenance = {"framework": "stable-baselines3", "algorithm": algorithm, "policy_class": facts.alias,
                  "imported_from": os.path.basename(what)}  # fmt: skip
    env_spec = EnvSpec(id=env, kwargs=dict(env_kwargs or {}))
    try:
        bundle = assemble(
            builder.build(builder.output),
            tensors,
            obs,
            act,
            env_spec,
            source,
            provenance,
            probes=probes,
            reference=reference,
            what=what,
            runtime_note="rlport numpy runtime at import (SB3 not run)",
        )
    except UnsupportedError as exc:
        raise UnsupportedError(f"{exc} (the policy was rebuilt from {describe_facts(facts)})") from exc
    record_or_warn(bundle, what, fingerprint=fingerprint, evaluate=evaluate, env_module=trusted_module(env, env_module))
    return bundle
