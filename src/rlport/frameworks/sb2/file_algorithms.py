"""Which SB2 algorithm and policy class a model file holds, from what it saved (never by importing anything).

Each SB2 algorithm's ``save()`` writes its own constructor settings (stable_baselines/*/*.py,
``data = {...}``): PPO2 ``nminibatches``/``noptepochs``/``cliprange``, ACKTR ``kfac_clip``, ACER
``q_coef``/``replay_ratio``... :data:`SIGNATURES` lists the keys only one algorithm saves; a HER model
saves its wrapped ``model_class`` and ``her_obs_space``; GAIL is TRPO with ``using_gail`` true.

Example:
    >>> algorithm_from_keys({"nminibatches": 4, "noptepochs": 4, "cliprange": "<function>"})
    'ppo2'
"""

from __future__ import annotations

from typing import Any

from rlport.errors import BundleError, UnsupportedError
from rlport.frameworks.sb2.file_pickle import ALGORITHM_CLASSES, POLICY_MODULES, ZOO_POLICIES
from rlport.frameworks.sb2.model import ALGORITHMS
from rlport.readers import safe_pickle
from rlport.readers.untrusted import echo

__all__ = ["SIGNATURES", "POLICY_FAMILIES", "algorithm_from_keys", "choose_algorithm", "resolve_policy", "is_her"]

SIGNATURES: dict[str, frozenset[str]] = {
    "a2c": frozenset({"alpha", "epsilon", "lr_schedule", "vf_coef"}),
    "acer": frozenset({"q_coef", "rprop_alpha", "replay_ratio"}),
    "acktr": frozenset({"kfac_clip", "vf_fisher_coef"}),
    "ppo1": frozenset({"timesteps_per_actorbatch", "clip_param", "optim_epochs"}),
    "ppo2": frozenset({"nminibatches", "noptepochs", "cliprange"}),
    "trpo": frozenset({"timesteps_per_batch", "max_kl", "cg_iters"}),
    "dqn": frozenset({"exploration_fraction", "target_network_update_freq", "prioritized_replay"}),
    "ddpg": frozenset({"nb_rollout_steps", "normalize_observations", "actor_lr", "critic_lr"}),
    "sac": frozenset({"ent_coef", "target_entropy", "buffer_size", "tau"}),
    "td3": frozenset({"policy_delay", "target_policy_noise", "target_noise_clip"}),
}
"""Keys of ``data`` that one SB2 algorithm's ``save()`` writes and no other's (all of them, every version)."""
POLICY_FAMILIES: dict[str, tuple[str, ...]] = {
    "stable_baselines.common.policies": ("a2c", "acer", "acktr", "ppo1", "ppo2", "trpo", "gail"),
    "stable_baselines.deepq.policies": ("dqn",),
    "stable_baselines.sac.policies": ("sac",),
    "stable_baselines.td3.policies": ("td3",),
    "stable_baselines.ddpg.policies": ("ddpg",),
}
"""The module of a policy class -> the algorithms that take it."""
_HER_KEYS = ("model_class", "her_obs_space")


def is_her(data: dict[str, Any]) -> bool:
    """Whether ``data`` is a HER model's (SB2's ``HER.save`` adds the wrapped model class and the goal space)."""
    return all(key in data for key in _HER_KEYS)


def algorithm_from_keys(data: dict[str, Any]) -> str | None:
    """The one algorithm whose signature keys ``data`` holds; None when none or several match."""
    found = [name for name, keys in SIGNATURES.items() if keys <= data.keys()]
    if len(found) > 1 and "a2c" in found:
        found.remove("a2c")  # A2C's keys are common words: another algorithm's own keys decide
    if len(found) != 1:
        return None
    return "gail" if found == ["trpo"] and data.get("using_gail") is True else found[0]


def _her_algorithm(data: dict[str, Any], what: str) -> str:
    name = safe_pickle.global_name(data["model_class"]) or ""
    algorithm = ALGORITHM_CLASSES.get(name)
    if algorithm not in ("sac", "td3", "ddpg", "dqn"):
        raise UnsupportedError(f"{what}: a HER model wrapping {echo(name or data['model_class'], 80)}; SB2's HER "
                               "wraps SAC, TD3, DDPG or DQN")  # fmt: skip
    return algorithm


def choose_algorithm(data: dict[str, Any], folder: str | None, explicit: str | None, what: str) -> str:
    """The algorithm of a model: ``explicit`` (the caller's), else what ``data`` saved, else the zoo folder name.

    A HER model is its wrapped algorithm. When the file's settings name one algorithm and the folder
    another, the import stops: a wrong guess would build the wrong network.

    Raises:
        BundleError: the file and its folder disagree, or neither tells.
        UnsupportedError: ``explicit`` is not an SB2 algorithm.
    """
    if explicit is not None and explicit.lower() not in ALGORITHMS:
        raise UnsupportedError(f"algorithm {echo(explicit, 60)} is not an SB2 algorithm ({', '.join(ALGORITHMS)})")
    if is_her(data):
        return _her_algorithm(data, what)
    if explicit is not None and explicit.lower() != "her":
        return explicit.lower()
    saved = algorithm_from_keys(data)
    folder = folder if folder in ALGORITHMS and folder != "her" else None
    if saved and folder and saved != folder and {saved, folder} != {"trpo", "gail"}:
        raise BundleError(f"{what}: its saved settings are {saved.upper()}'s but it sits in a folder named {folder}; "
                          f"pass algorithm={saved!r} or algorithm={folder!r} (--algorithm) to say which")  # fmt: skip
    chosen = saved or folder
    if chosen is None:
        raise BundleError(f"{what}: cannot tell which SB2 algorithm saved it (its settings match "
                          f"{'none' if explicit is None else 'not ' + explicit} of {', '.join(SIGNATURES)}); pass "
                          "algorithm= (--algorithm), or keep it in the RL Zoo layout ALGO/ENV.pkl")  # fmt: skip
    return chosen


def resolve_policy(value: Any, algorithm: str, what: str) -> tuple[str, str, dict[str, Any], str]:
    """``(class name, module, fixed kwargs, name as saved)`` of the saved policy class, through SB2's table.

    A RL Zoo custom class is the built-in class it equals, with the arguments it fixes.

    Raises:
        UnsupportedError: a policy class outside the table (a custom class, pickled by name or by value).
        BundleError: a policy class of another algorithm family.
    """
    saved = safe_pickle.global_name(value) if isinstance(value, safe_pickle.GlobalRef) else None
    if saved is None:
        raise UnsupportedError(f"{what}: the policy is {echo(safe_pickle.global_name(value) or value, 80)}, not one of "
                               "SB2's policy classes by name (a custom class pickled by value cannot be read "
                               "without running it)")  # fmt: skip
    module, name = saved.rsplit(".", 1)
    fixed: dict[str, Any] = {}
    if module in ("utils", "utils.utils") and name in ZOO_POLICIES:
        module, name, fixed = ZOO_POLICIES[name]
    if module not in POLICY_MODULES:
        raise UnsupportedError(f"{what}: policy class {saved} is not one rlport reads")
    if algorithm not in POLICY_FAMILIES[module]:
        raise BundleError(f"{what}: policy {saved} belongs to {'/'.join(POLICY_FAMILIES[module])}, not to "
                          f"{algorithm}; the file is inconsistent")  # fmt: skip
    return name, module, dict(fixed), saved
