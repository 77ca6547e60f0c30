"""Rebuild the shape of an SB3 policy from a saved ``state_dict``, without torch or SB3.

The result is a tree of small stand-in objects (a *skeleton*) whose class names and attributes
are those of the torch modules and SB3 policies they stand for. The same wiring that exports a
live model (:mod:`rlport.frameworks.sb3.policies`) then turns it into a graph, so saved files and
live models go through one code path.

The structure comes from the tensor names (``mlp_extractor.policy_net.2.weight``), the decoded
``policy_kwargs`` (activation, gSDE options) and SB3's fixed construction rules: in every MLP
SB3 builds, a Linear layer is followed by its activation except for the output layer; NatureCNN
is three convolutions (8/4, 4/2, 3/1) and a Linear layer, each followed by ReLU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.errors import UnsupportedError

__all__ = ["Skeleton", "module", "build_policy", "ACTIVATION_DEFAULTS"]

_CLASSES: dict[str, type] = {}


class Skeleton:
    """A stand-in for a torch module or SB3 object: a class name, attributes, ordered children."""

    def __init__(self, **attrs: Any) -> None:
        self._children: dict[str, Any] = {}
        for key, value in attrs.items():
            setattr(self, key, value)

    def add(self, name: str, child: Any) -> Skeleton:
        self._children[name] = child
        return self

    def named_children(self):
        return iter(self._children.items())

    def items(self):
        return self._children.items()

    def __repr__(self) -> str:
        return f"<skeleton {type(self).__name__}>"


def module(class_name: str, **attrs: Any) -> Skeleton:
    """A skeleton whose ``type(...).__name__`` is ``class_name``."""
    cls = _CLASSES.get(class_name)
    if cls is None:
        cls = _CLASSES[class_name] = type(class_name, (Skeleton,), {})
    return cls(**attrs)


ACTIVATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "LeakyReLU": {"negative_slope": 0.01},
    "ELU": {"alpha": 1.0},
    "CELU": {"alpha": 1.0},
    "GELU": {"approximate": "none"},
    "Hardtanh": {"min_val": -1.0, "max_val": 1.0},
    "Softplus": {"beta": 1.0, "threshold": 20.0},
    "Softmax": {"dim": None},
    "LogSoftmax": {"dim": None},
    "Hardshrink": {"lambd": 0.5},
    "Softshrink": {"lambd": 0.5},
    "RReLU": {"lower": 1.0 / 8.0, "upper": 1.0 / 3.0},
}
"""Constructor defaults of torch activations, which SB3 instantiates without arguments."""


def activation(name: str) -> Skeleton:
    return module(name, **ACTIVATION_DEFAULTS.get(name, {}))


# ---- layers from tensors -----------------------------------------------------------------


class Tensors:
    """The state_dict, with lookups that say what is missing."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state = state

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix + ".") or k == prefix for k in self.state)

    def get(self, name: str) -> np.ndarray:
        if name not in self.state:
            raise UnsupportedError(f"policy.pth lacks the tensor {name!r} that this policy class needs")
        return self.state[name]

    def indices(self, prefix: str) -> list[int]:
        found = set()
        for key in self.state:
            if key.startswith(prefix + "."):
                head = key[len(prefix) + 1 :].split(".")[0]
                if head.isdigit():
                    found.add(int(head))
        return sorted(found)


# Batch-norm layers by the name of their running mean: class, var name, scale name, default eps.
_NORMS = {
    "ra_mean": ("BatchRenorm1d", "ra_var", "scale", 0.001),  # sb3-contrib (CrossQ)
    "running_mean": ("BatchNorm1d", "running_var", "weight", 1e-5),
}


def _layer(t: Tensors, prefix: str) -> Skeleton:
    """The parameter-bearing layer stored under ``prefix``: a batch norm or a Linear layer."""
    for mean, (class_name, var, scale, eps) in _NORMS.items():
        if f"{prefix}.{mean}" in t.state:
            attrs = {
                mean: t.get(f"{prefix}.{mean}"),
                var: t.get(f"{prefix}.{var}"),
                scale: t.state.get(f"{prefix}.{scale}"),
            }
            return module(class_name, **attrs, bias=t.state.get(f"{prefix}.bias"),
                          affine=f"{prefix}.{scale}" in t.state, eps=eps)  # fmt: skip
    weight = t.get(f"{prefix}.weight")
    if weight.ndim == 2:
        return module("Linear", weight=weight, bias=t.state.get(f"{prefix}.bias"))
    raise UnsupportedError(f"tensor {prefix}.weight of shape {weight.shape} is not a layer rlport knows")


def mlp(t: Tensors, prefix: str, act: str, after_last: str | None, eps: float | None = None) -> Skeleton:
    """An ``nn.Sequential`` that SB3 built with ``create_mlp`` (or MlpExtractor).

    Args:
        t: the tensors.
        prefix: the Sequential's state_dict prefix.
        act: the activation class name between layers.
        after_last: the module after the last Linear layer when the Sequential ends with one
            (``act`` for latent networks, ``"Tanh"`` for squashed outputs, None for outputs).
        eps: BatchRenorm epsilon, when the Sequential has BatchRenorm layers.
    """
    seq = module("Sequential")
    indices = t.indices(prefix)
    previous = None
    for position in range(indices[-1] + 1 if indices else 0):
        after_linear = previous is not None and type(previous).__name__ == "Linear"
        if position in indices and after_linear and act == "PReLU":  # the one activation with a parameter
            previous = module("PReLU", weight=t.get(f"{prefix}.{position}.weight"))
        elif position in indices:
            previous = _layer(t, f"{prefix}.{position}")
            if eps is not None and type(previous).__name__ == "BatchRenorm1d":
                previous.eps = eps
        elif after_linear:
            previous = activation(act)
        else:
            raise UnsupportedError(
                f"{prefix}: a parameter-free layer at position {position} that is not an activation after a "
                "Linear layer; this network was not built by SB3's create_mlp"
            )
        seq.add(str(position), previous)
    if previous is not None and type(previous).__name__ == "Linear" and after_last:
        seq.add(str(len(seq._children)), activation(after_last))
    return seq


def features_extractor(t: Tensors, prefix: str, observation_space: Any) -> Skeleton:
    """FlattenExtractor, NatureCNN or CombinedExtractor, recognised from the tensor names."""
    if type(observation_space).__name__ == "Dict":
        combined = module("CombinedExtractor", extractors=module("ModuleDict"))
        for key in observation_space.spaces:
            sub = f"{prefix}.extractors.{key}"
            combined.extractors.add(
                key, nature_cnn(t, sub) if t.has_prefix(f"{sub}.cnn") else module("Flatten", start_dim=1, end_dim=-1)
            )
        return combined
    if t.has_prefix(f"{prefix}.cnn"):
        return nature_cnn(t, prefix)
    if t.has_prefix(prefix):
        raise UnsupportedError(
            f"{prefix} holds tensors of a custom features extractor; supported: FlattenExtractor, NatureCNN, "
            "CombinedExtractor"
        )
    return module("FlattenExtractor")


def nature_cnn(t: Tensors, prefix: str) -> Skeleton:
    cnn = module("Sequential")
    for position, stride in ((0, 4), (2, 2), (4, 1)):
        name = f"{prefix}.cnn.{position}"
        cnn.add(str(position), module(
            "Conv2d", weight=t.get(f"{name}.weight"), bias=t.state.get(f"{name}.bias"), stride=(stride, stride),
            padding=(0, 0), dilation=(1, 1), groups=1, padding_mode="zeros",
        ))  # fmt: skip
        cnn.add(str(position + 1), activation("ReLU"))
    cnn.add("6", module("Flatten", start_dim=1, end_dim=-1))
    linear = module("Sequential").add("0", _layer(t, f"{prefix}.linear.0")).add("1", activation("ReLU"))
    return module("NatureCNN", cnn=cnn, linear=linear)


# ---- policies ----------------------------------------------------------------------------


def build_policy(policy_class: str, state: dict[str, np.ndarray], observation_space: Any, action_space: Any,
                 kwargs: dict[str, Any]) -> Skeleton:  # fmt: skip
    """The skeleton of an SB3 / sb3-contrib policy of class ``policy_class`` ("module.Name")."""
    from rlport.frameworks.sb3.families import build

    return build(policy_class, Tensors(state), observation_space, action_space, kwargs)
