"""SB2's saved parameters, found by the TF variable names its policies create and checked against them.

An SB2 file keeps its parameters either by TF variable name (``model/pi_fc0/w:0``: newer ``.pkl``
files and every ``.zip``) or as a plain list in ``get_parameter_list()`` order (older ``.pkl``): the
trainable variables of the model's scope in the order the policy created them. A policy builder
states that order as a :class:`Layout` (names relative to the model scope, shapes as TF made
them); :func:`resolve` then reads either form and refuses the first variable that is missing or
of another shape, so a file never silently fits the wrong network.

Example:
    >>> layout = Layout("model/", [("pi/w", (4, 2)), ("pi/b", (2,))])
    >>> resolve({"model/pi/w:0": np.zeros((4, 2)), "model/pi/b:0": np.zeros(2)}, layout, "a2c.pkl")["pi/b"].shape
    (2,)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlport.errors import UnsupportedError, short

__all__ = ["Layout", "resolve", "activation", "ACTIVATIONS"]


@dataclass
class Layout:
    """The variables a policy creates, in creation order.

    Attributes:
        scopes: the scope prefixes the variables may be saved under (``"model/"``, ``"deepq/model/"``),
            tried in order for named parameters.
        variables: ``(name, shape)`` per variable, names relative to the scope, in creation order.
        needed: the names the graph uses (all of ``variables`` when empty).
    """

    scope: str | Sequence[str]
    variables: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    needed: set[str] = field(default_factory=set)

    def add(self, name: str, shape: Sequence[int], needed: bool = True) -> None:
        self.variables.append((name, tuple(int(n) for n in shape)))
        if needed:
            self.needed.add(name)

    @property
    def scopes(self) -> tuple[str, ...]:
        return (self.scope,) if isinstance(self.scope, str) else tuple(self.scope)


def resolve(params: Mapping[str, Any] | Sequence[Any], layout: Layout, what: str) -> dict[str, np.ndarray]:
    """The needed variables of ``layout`` from a file's params, as float32 arrays by relative name.

    Raises:
        UnsupportedError: a needed variable is missing, or a variable (named, or at its list position)
            has another shape than the policy creates.
    """
    if isinstance(params, Mapping):
        return {name: _named(params, layout, name, shape, what) for name, shape in layout.variables
                if name in layout.needed}  # fmt: skip
    last = max((i for i, (name, _) in enumerate(layout.variables) if name in layout.needed), default=-1)
    if len(params) <= last:
        missing = layout.scopes[0] + layout.variables[len(params)][0]
        raise UnsupportedError(
            f"{what}: the file holds {len(params)} parameters, the policy needs at least {last + 1} (the first "
            f"missing is {missing}); the file does not fit its policy class and policy_kwargs"
        )
    found = {}
    for i, ((name, shape), value) in enumerate(zip(layout.variables[: last + 1], params, strict=False)):
        array = _checked(value, shape, f"parameter {i} ({layout.scopes[0]}{name})", what)
        if name in layout.needed:
            found[name] = array
    return found


def _named(params: Mapping[str, Any], layout: Layout, name: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    for scope in layout.scopes:
        for key in (f"{scope}{name}:0", f"{scope}{name}"):
            if key in params:
                return _checked(params[key], shape, f"variable {key}", what)
    raise UnsupportedError(
        f"{what}: the file has no variable {layout.scopes[0]}{name}:0, which the policy needs; the file does not "
        "fit its policy class and policy_kwargs (or was saved by an SB2 version rlport does not know)"
    )


def _checked(value: Any, shape: tuple[int, ...], where: str, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise UnsupportedError(f"{what}: {where} is not a numeric array (dtype {array.dtype})")
    if array.shape != shape:
        raise UnsupportedError(
            f"{what}: {where} has shape {array.shape}, the policy creates it with shape {shape}; the file "
            "does not fit its policy class and policy_kwargs"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


ACTIVATIONS: dict[str, tuple[str, dict[str, float], str | None]] = {
    "tanh": ("tanh", {}, "Tanh"),
    "relu": ("relu", {}, "ReLU"),
    "sigmoid": ("sigmoid", {}, "Sigmoid"),
    "elu": ("elu", {}, "ELU"),
    "selu": ("selu", {}, "SELU"),
    "softplus": ("softplus", {}, "Softplus"),
    "softsign": ("softsign", {}, "Softsign"),
    "relu6": ("relu6", {}, "ReLU6"),
    "leaky_relu": ("leaky_relu", {"negative_slope": 0.2}, None),  # TF's default alpha; torch's LeakyReLU has 0.01
    "swish": ("silu", {}, "SiLU"),
    "identity": ("identity", {}, "Identity"),
}
"""TF activation function name -> (graph op, its attributes, the torch.nn class SB3 would use, if one equals it)."""


def activation(name: Any, default: str) -> tuple[str, dict[str, float], str | None]:
    """The graph op of a saved ``act_fun`` (a TF function's dotted name, never imported).

    Raises:
        UnsupportedError: not a TensorFlow function of :data:`ACTIVATIONS`.
    """
    if name is None:
        return ACTIVATIONS[default]
    text = name if isinstance(name, str) else ""
    module, _, leaf = text.rpartition(".")
    if not (module == "tensorflow" or module.startswith("tensorflow.")) or leaf not in ACTIVATIONS:
        raise UnsupportedError(
            f"act_fun {short(name)} is not supported; supported: the TensorFlow functions "
            f"{', '.join(sorted(ACTIVATIONS))} (tf.nn.relu, tf.tanh ...)"
        )
    return ACTIVATIONS[leaf]
