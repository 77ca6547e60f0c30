"""The pickles inside SB2 files, read through rlport's allow-list reader with SB2's own names added.

SB2 files name, besides the gym spaces and numpy reconstruction that
:mod:`rlport.readers.safe_pickle` already allows: the policy class (``stable_baselines.common.policies.MlpPolicy``,
``utils.CustomDQNPolicy`` of the RL Zoo), the algorithm class of a HER model, action noise and DDPG's
memory class, HER's goal strategy, ``RunningMeanStd`` (``obs_rms.pkl``), TensorFlow activation functions
in ``policy_kwargs`` and cloudpickle's function records (learning-rate schedules). Each is listed here by
its exact name (:data:`SB2_GLOBALS`) and resolves to an inert stand-in: nothing is imported, no function
is rebuilt or called. Every other name is refused as by the reader itself.

Example:
    >>> value = loads(raw, what="model.pkl")                     # doctest: +SKIP
    >>> inert(value)["learning_rate"]                            # doctest: +SKIP
    '<function>'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rlport.errors import UnsafeFileError
from rlport.frameworks.sb2.model import FUNCTION
from rlport.readers import safe_pickle
from rlport.readers.safe_pickle import GlobalRef, Instance, ref
from rlport.readers.untrusted import echo

__all__ = ["loads", "inert", "SB2_GLOBALS", "POLICY_MODULES", "ALGORITHM_CLASSES", "is_function"]

_SB = "stable_baselines"
_POLICY_NAMES = {
    f"{_SB}.common.policies": ("MlpPolicy", "MlpLstmPolicy", "MlpLnLstmPolicy", "CnnPolicy", "CnnLstmPolicy",
                               "CnnLnLstmPolicy"),
    **{f"{_SB}.{algo}.policies": ("MlpPolicy", "LnMlpPolicy", "CnnPolicy", "LnCnnPolicy")
       for algo in ("deepq", "sac", "td3", "ddpg")},
}  # fmt: skip
POLICY_MODULES = tuple(_POLICY_NAMES)
"""The modules of SB2's built-in policy classes."""
ZOO_POLICIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "CustomDQNPolicy": (f"{_SB}.deepq.policies", "LnMlpPolicy", {"layers": [64]}),
    "CustomMlpPolicy": (f"{_SB}.common.policies", "MlpPolicy", {"layers": [16]}),
    "CustomSACPolicy": (f"{_SB}.sac.policies", "MlpPolicy", {"layers": [256, 256]}),
}
"""The SB2 RL Zoo's own policy classes (its ``utils/utils.py``): the built-in class each equals and the
arguments it fixes (``CustomDQNPolicy`` is a deepq FeedForwardPolicy with ``layers=[64], layer_norm=True``)."""
ALGORITHM_CLASSES = {
    f"{_SB}.a2c.a2c.A2C": "a2c", f"{_SB}.acer.acer_simple.ACER": "acer", f"{_SB}.acktr.acktr.ACKTR": "acktr",
    f"{_SB}.ppo1.pposgd_simple.PPO1": "ppo1", f"{_SB}.ppo2.ppo2.PPO2": "ppo2", f"{_SB}.trpo_mpi.trpo_mpi.TRPO": "trpo",
    f"{_SB}.gail.model.GAIL": "gail", f"{_SB}.deepq.dqn.DQN": "dqn", f"{_SB}.ddpg.ddpg.DDPG": "ddpg",
    f"{_SB}.sac.sac.SAC": "sac", f"{_SB}.td3.td3.TD3": "td3",
}  # fmt: skip
"""SB2's algorithm classes (a HER model saves the one it wraps as ``model_class``) -> the algorithm."""
_OTHER_CLASSES = (
    *(f"{_SB}.{where}.noise.{name}" for where in ("ddpg", "common")
      for name in ("OrnsteinUhlenbeckActionNoise", "NormalActionNoise", "AdaptiveParamNoiseSpec")),
    f"{_SB}.ddpg.memory.Memory",
    f"{_SB}.her.replay_buffer.GoalSelectionStrategy",
    f"{_SB}.common.running_mean_std.RunningMeanStd",
    f"{_SB}.common.vec_env.vec_normalize.VecNormalize",
    f"{_SB}.common.policies.nature_cnn",
)  # fmt: skip
_TF_ACTIVATIONS = tuple(
    f"tensorflow.python.ops.{module}.{name}"
    for module in ("gen_nn_ops", "nn_ops", "math_ops", "gen_math_ops", "nn_impl")
    for name in ("relu", "relu6", "elu", "selu", "tanh", "sigmoid", "softplus", "softsign", "leaky_relu", "swish")
)
"""TensorFlow 1 activations as ``policy_kwargs['act_fun']`` pickles them (by module and name, never imported)."""
_CLOUDPICKLE = tuple(
    f"cloudpickle.{module}.{name}"
    for module in ("cloudpickle", "cloudpickle_fast")
    for name in ("_fill_function", "_make_skel_func", "_make_function", "_function_setstate", "_make_empty_cell",
                 "_make_cell", "cell_set", "subimport", "dynamic_subimport", "_get_cell_contents")
)  # fmt: skip
"""cloudpickle's records of a function pickled by value (its code, globals, closure): kept as inert records."""
_BUILTIN_TYPES = ("CodeType", "FunctionType", "LambdaType", "CellType", "MethodType")
"""The types cloudpickle's ``_builtin_type(name)`` may name in a function record."""


def _builtin_type(what: str) -> Callable[[Any], GlobalRef]:
    """``cloudpickle._builtin_type``: an inert stand-in for the ``types`` class it names (never the class)."""

    def builtin_type(name: Any) -> GlobalRef:
        if name not in _BUILTIN_TYPES:
            raise UnsafeFileError(f"{what}: refused cloudpickle._builtin_type({echo(name, 60)}); SB2 files only "
                                  f"use it for {', '.join(_BUILTIN_TYPES)}")  # fmt: skip
        return ref(f"types.{name}")

    return builtin_type


def _policy_names() -> list[str]:
    names = [f"{module}.{name}" for module, names in _POLICY_NAMES.items() for name in names]
    return names + [f"{module}.{name}" for name in ZOO_POLICIES for module in ("utils", "utils.utils")]


SB2_GLOBALS: tuple[str, ...] = (
    *_policy_names(), *ALGORITHM_CLASSES, *_OTHER_CLASSES, *_TF_ACTIVATIONS, *_CLOUDPICKLE,
)  # fmt: skip
"""Every name an SB2 pickle may use beyond the reader's own allow-list; each an inert stand-in."""
_REFS = {name: ref(name) for name in SB2_GLOBALS}


def loads(raw: bytes, *, what: str) -> Any:
    """One SB2 pickle (a ``.pkl`` model, a ``.zip``'s serialized entry, ``obs_rms.pkl``); nothing of it runs.

    Raises:
        UnsafeFileError: it names a global outside the reader's allow-list and :data:`SB2_GLOBALS`.
        BundleError: truncated or corrupt.
    """
    builtin_type = _builtin_type(what)
    extra = {**_REFS, **{f"cloudpickle.{m}._builtin_type": builtin_type for m in ("cloudpickle", "cloudpickle_fast")}}
    return safe_pickle.loads(raw, what=what, extra_globals=extra)


def is_function(value: Any) -> bool:
    """Whether ``value`` is cloudpickle's record of a function (a schedule, a custom extractor)."""
    name = safe_pickle.global_name(value) or ""
    return isinstance(value, Instance) and name.startswith(("cloudpickle.", "types."))


def _key(key: Any) -> Any:
    value = inert(key)
    return value if isinstance(value, (str, int, float, bool)) or value is None else echo(value, 60)


def inert(value: Any) -> Any:
    """``value`` with every record made plain data: a class is its dotted name, a function :data:`FUNCTION`,
    another object ``{"class": name, "args": [...], "state": ...}``; numpy scalars become Python numbers.

    The value was read by :func:`loads`, which bounds its nesting and size.
    """
    if isinstance(value, GlobalRef):
        return value.global_name
    if isinstance(value, Instance):
        if is_function(value):
            return FUNCTION
        return {"class": value.global_name, "args": [inert(a) for a in value.args], "state": inert(value.state)}
    if isinstance(value, dict):
        return {_key(k): inert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [inert(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, (str, int, float, bool, np.ndarray)):
        return value
    return echo(value, 60)  # complex, slice, a dtype: their text
