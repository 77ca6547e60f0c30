"""The weights side of ``rlport.to_sb3``: the bundle's tensors into a freshly built SB3 policy."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from rlport.bundle.bundle import Bundle
from rlport.errors import RlportWarning, UnsupportedError
from rlport.frameworks.sb3.policies import VARIABLE_NAME, VARIABLES

__all__ = ["weights_of", "load_weights", "load_variables"]

_SHARED = re.compile(r"mlp_extractor\.shared_net\.(\d+)\.(.+)")
_BRANCH = re.compile(r"mlp_extractor\.(policy_net|value_net)\.(\d+)\.(.+)")


def weights_of(bundle: Bundle) -> tuple[dict[str, np.ndarray], dict[str, list[int]] | None]:
    """The bundle's SB3 ``state_dict`` tensors by name, in today's SB3 layout, and the ``net_arch`` that layout needs.

    SB3 < 1.8 could share the first layers of the actor and the critic (``mlp_extractor.shared_net``);
    SB3 >= 1.8 cannot. Such layers are copied into both branches (``net_arch=dict(pi=shared + pi,
    vf=shared + vf)``): every action and value is the same; training then updates the copies apart.
    ``None`` for ``net_arch`` when nothing was shared.
    """
    names = bundle.source.get("state_dict") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UnsupportedError(
            f"the bundle's source.state_dict must list tensor names, found {_shown(names)}; "
            "export the model again with rlport.from_sb3"
        )
    tensors = {n: bundle.tensors[n] for n in names if n in bundle.tensors}
    shared = {int(m.group(1)): m for n in tensors if (m := _SHARED.fullmatch(n))}
    if not shared:
        return tensors, None
    depth = max(shared) + 2  # Linear, activation per shared layer
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if m := _SHARED.fullmatch(name):
            for branch in ("policy_net", "value_net"):
                out[f"mlp_extractor.{branch}.{m.group(1)}.{m.group(2)}"] = value
        elif m := _BRANCH.fullmatch(name):
            out[f"mlp_extractor.{m.group(1)}.{int(m.group(2)) + depth}.{m.group(3)}"] = value
        else:
            out[name] = value

    def widths(branch: str) -> list[int]:
        layers = sorted(int(m.group(2)) for n in out if (m := _BRANCH.fullmatch(n)) and m.group(1) == branch)
        weights = [out.get(f"mlp_extractor.{branch}.{i}.weight") for i in dict.fromkeys(layers)]
        if any(w is None or np.ndim(w) != 2 for w in weights):
            raise UnsupportedError(
                f"the bundle's mlp_extractor.{branch} layers lack a 2-d weight each; export the model again"
            )
        return [int(w.shape[0]) for w in weights]

    return out, {"pi": widths("policy_net"), "vf": widths("value_net")}


def load_weights(model: Any, tensors: dict[str, np.ndarray], includes_critic: bool, allow_missing_critic: bool) -> None:
    """``tensors`` into the fresh policy; names SB3 aliases and target networks filled in.

    Raises:
        UnsupportedError: a tensor the policy does not have or of another shape; a policy tensor
            missing (the critic of a bundle exported without it, unless ``allow_missing_critic``).
    """
    import torch

    target = model.policy.state_dict(keep_vars=True)
    _check_fit(model, tensors, target)
    given = {n: torch.as_tensor(np.asarray(v)).to(target[n].dtype) for n, v in tensors.items()}
    missing = []
    for name, value in target.items():
        if name in given:
            continue
        twin = next((n for n, v in target.items() if v is value and n in given), None)  # one module, two names
        online = name.split(".", 1)[0].removesuffix("_target") + "." + name.split(".", 1)[-1]
        if twin is not None:
            given[name] = given[twin]
        elif name.split(".", 1)[0].endswith("_target") and online in given:
            given[name] = given[online]  # a target network starts as a copy, as SB3 builds it
        else:
            missing.append(name)
    if missing:
        _missing(model, includes_critic, missing, allow_missing_critic)
    with torch.no_grad():
        model.policy.load_state_dict(given, strict=False)


def _check_fit(model: Any, tensors: dict[str, np.ndarray], target: dict[str, Any]) -> None:
    unexpected = [n for n in tensors if n not in target]
    shapes = [
        f"{_shown(n)} {v.shape} vs {tuple(target[n].shape)}"
        for n, v in tensors.items()
        if n in target and tuple(v.shape) != tuple(target[n].shape)
    ]
    if unexpected or shapes:
        found = (f"names it does not have: {', '.join(_shown(n) for n in unexpected[:5])}" if unexpected else "") + (
            f"{'; ' if unexpected else ''}other shapes: {', '.join(shapes[:5])}" if shapes else ""
        )
        raise UnsupportedError(f"the bundle's weights do not fit {_described(model)}: {found}")


_COUNTERS = "'s BatchRenorm step counters"


def _part(name: str) -> str:
    """The module a missing tensor belongs to, as a user knows it."""
    if name.endswith(".steps"):  # sb3-contrib's BatchRenorm warm-up counter: training state, not weights
        return name.split(".")[0] + _COUNTERS
    return ".".join(name.split(".")[:2]) if name.startswith("mlp_extractor.") else name.split(".")[0]


def _missing(model: Any, includes_critic: bool, missing: list[str], allow: bool) -> None:
    parts = {_part(name) for name in missing}
    parts = sorted(parts - {p for p in parts if p.removesuffix(_COUNTERS) in parts - {p}})  # "critic" says it all
    if includes_critic:
        raise UnsupportedError(
            f"the bundle's weights do not fit {_described(model)}: it has no {', '.join(parts)} "
            f"({len(missing)} tensors, first {missing[0]})"
        )
    if not allow:
        raise UnsupportedError(
            f"this bundle keeps only what acting needs (exported without include_critic=True): "
            f"{type(model).__name__}'s {', '.join(parts)} are not in it. To resume training with them, export again "
            "with rlport.from_sb3(model, include_critic=True) or `rlport import ... --include-critic`; "
            "to start them afresh, pass allow_missing_critic=True"
        )
    warnings.warn(
        f"{', '.join(parts)} start from a fresh initialisation (the bundle does not keep them)",
        RlportWarning,
        stacklevel=5,
    )


def _described(model: Any) -> str:
    try:
        from importlib.metadata import version

        sb3 = f"stable-baselines3 {version('stable-baselines3')}"
    except ImportError:
        sb3 = "this stable-baselines3"
    return f"the {type(model).__name__} that {sb3} builds with the recorded policy_kwargs"


def load_variables(model: Any, bundle: Bundle) -> list[str]:
    """Put the learned torch variables the bundle keeps (SAC's ``log_ent_coef``) back into ``model``.

    Only variables the model learns are set (``requires_grad``, updated in place so that their
    optimizer keeps them); a fixed one such as ``ent_coef_tensor`` follows the hyperparameters,
    and a variable the model does not have (another ``ent_coef=`` was passed) is left alone.

    Returns:
        The names of the variables set.

    Raises:
        UnsupportedError: a kept variable has another shape than the model's.
    """
    import torch

    names = bundle.source.get("variables") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and VARIABLE_NAME.fullmatch(n) for n in names):
        raise UnsupportedError(
            f"the bundle's source.variables must list attribute names such as 'log_ent_coef', found {_shown(names)}; "
            "export the model again with rlport.from_sb3"
        )
    restored = []
    for name in names:
        value, target = bundle.tensors.get(VARIABLES + name), getattr(model, name, None)
        if value is None or not isinstance(target, torch.Tensor) or not target.requires_grad:
            continue
        if tuple(target.shape) != tuple(value.shape):
            raise UnsupportedError(
                f"the bundle's {name} has shape {tuple(value.shape)}, {_described(model)} has {tuple(target.shape)}"
            )
        with torch.no_grad():
            target.copy_(torch.as_tensor(np.asarray(value)))
        restored.append(name)
    return restored


def _shown(value: Any, limit: int = 100) -> str:
    """A name (as is) or other value (its repr) from the bundle, cut to about ``limit`` characters for a message."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
