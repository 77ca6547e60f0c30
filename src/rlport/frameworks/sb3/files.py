"""SB3 files from a bundle: the ``.zip`` (and ``NAME.vecnormalize.pkl``) that today's ``ALGO.load`` reads.

Both files are built in memory from the model :func:`rlport.to_sb3` rebuilds, then written all or
nothing; an existing file is replaced only when asked; a missing critic is found from the bundle
alone, before torch and SB3 are imported.

Example:
    >>> export_sb3("walker.rlp", "walker.zip")    # then PPO.load("walker.zip")   # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

from rlport.bundle.bundle import Bundle
from rlport.errors import BundleError, RlportWarning, SpaceError, UnsupportedError, require
from rlport.frameworks.sb3.env import export_env, normalises, spaces_only_env
from rlport.frameworks.sb3.settings import ALGORITHMS

__all__ = ["export_sb3", "check_critic", "vecnormalize_path", "refuse_existing", "sb3_files", "export_model"]


def export_sb3(
    bundle: Bundle | str | os.PathLike,
    path: str | os.PathLike,
    vecnormalize: str | os.PathLike | None = None,
    allow_missing_critic: bool = False,
    *,
    overwrite: bool = False,
    env_module: str | None = None,
) -> list[Path]:
    """Write the bundle as an SB3 ``.zip`` (and its VecNormalize statistics) that today's SB3 loads with ``ALGO.load``.

    The model carries the observation space of the bundle's env as made here (today's bounds, so
    that ``ALGO.load(path, env=gym.make(env_id))`` passes SB3's space check); when that env cannot
    be made, the bundle's recorded spaces, with a warning.

    Args:
        bundle: the bundle or its path.
        path: the ``.zip`` to write.
        vecnormalize: where to write the VecNormalize statistics, for bundles that normalise
            observations (default: ``path`` with ``.vecnormalize.pkl`` for its suffix, so
            ``model.zip`` -> ``model.vecnormalize.pkl``).
        allow_missing_critic: see :func:`to_sb3`.
        overwrite: replace files that exist. Default False: an existing file is never replaced
            silently (a second export into one folder must not swap another run's statistics).
        env_module: the one module a recorded ``module:EnvName`` env id may import.

    Returns:
        The paths written: the model, then the statistics when there are some. Both files appear
        together or neither does (a failure restores what was there).

    Raises:
        BundleError: a file to write exists (without ``overwrite``), or its folder does not.
        UnsupportedError: the critic is missing (without ``allow_missing_critic``), or see :func:`to_sb3`.

    Example:
        >>> export_sb3("walker.rlp", "walker.zip")    # then PPO.load("walker.zip")   # doctest: +SKIP
    """
    from rlport.bundle.container import write_atomic_group

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    check_critic(bundle, allow_missing_critic)
    target = Path(path)
    stats = Path(vecnormalize) if vecnormalize is not None else vecnormalize_path(target)
    if vecnormalize is not None and not normalises(bundle):
        warnings.warn(
            f"{stats}: not written, the bundle does not normalise observations or rewards", RlportWarning, stacklevel=2
        )
    planned = [(target, "the SB3 model")] + ([(stats, "the VecNormalize statistics")] if normalises(bundle) else [])
    refuse_existing(planned, overwrite)  # before the seconds spent importing torch and SB3
    for module in ("gymnasium", "stable_baselines3"):
        require(module, "sb3", "export_sb3")
    model_bytes, stats_bytes = sb3_files(bundle, allow_missing_critic, env_module, where=target)
    outputs = [(target, model_bytes, "the SB3 model")]
    if stats_bytes is not None:
        outputs.append((stats, stats_bytes, "the VecNormalize statistics"))  # VecNormalize.save's format
    refuse_existing([(p, what) for p, _, what in outputs], overwrite)
    write_atomic_group(outputs)  # all or nothing: never a model without its statistics
    return [p for p, _, _ in outputs]


def vecnormalize_path(model_path: str | os.PathLike) -> Path:
    """Where ``export_sb3`` puts the statistics by default: ``model.zip`` -> ``model.vecnormalize.pkl``."""
    return Path(model_path).with_suffix(".vecnormalize.pkl")


def refuse_existing(outputs: list[tuple[Path, str]], overwrite: bool) -> None:
    """Raise :class:`BundleError` for the first ``(path, what)`` that exists, unless ``overwrite``."""
    for target, what in outputs:
        if not overwrite and (Path(target).exists() or Path(target).is_symlink()):
            raise BundleError(
                f"cannot save {what} to {str(target)!r}: the file exists; choose another name, or replace it with "
                "--force (overwrite=True in Python)"
            )


def sb3_files(
    bundle: Bundle, allow_missing_critic: bool, env_module: str | None, where: object = "the export"
) -> tuple[bytes, bytes | None]:
    """The bytes of ``model.save`` and of the pickled VecNormalize (None when the model has none)."""
    model = export_model(bundle, allow_missing_critic, env_module)
    if getattr(getattr(model, "replay_buffer_class", None), "__name__", "") == "HerReplayBuffer":
        warnings.warn(
            f"{where}: a HER model; SB3 loads it only with its env: {type(model).__name__}.load(path, env=goal_env)",
            RlportWarning,
            stacklevel=3,
        )
    buffer = io.BytesIO()
    model.save(buffer)  # SB3 leaves the env out of its files
    wrapper = model.get_vec_normalize_env()
    stats = pickle.dumps(wrapper) if wrapper is not None else None  # VecNormalize.__getstate__ leaves the env out
    if model.get_env() is not None:
        model.get_env().close()
    return buffer.getvalue(), stats


def export_model(bundle: Bundle, allow_missing_critic: bool, env_module: str | None = None) -> Any:
    """The model to save: built with the bundle's env as made here (today's spaces), else with its recorded spaces."""
    env, note = export_env(bundle, env_module)
    if note:
        warnings.warn(note, RlportWarning, stacklevel=4)
    from rlport.frameworks.sb3.to_sb3 import to_sb3  # that module imports this one

    try:
        return to_sb3(bundle, env, device="cpu", allow_missing_critic=allow_missing_critic)
    except SpaceError as exc:
        if note:  # the spaces-only env was refused: nothing else to try
            raise
        env.close()
        warnings.warn(
            f"the env {bundle.env.id!r:.100} made here does not fit the bundle ({exc}); the exported model carries the "
            "bundle's recorded spaces",
            RlportWarning,
            stacklevel=4,
        )
        return to_sb3(bundle, spaces_only_env(bundle), device="cpu", allow_missing_critic=allow_missing_critic)


_NO_CRITIC = frozenset({"DQN", "QRDQN", "ARS"})
"""Algorithms whose bundles hold all a model needs without ``include_critic`` (target networks start as copies)."""


def check_critic(bundle: Bundle, allow_missing_critic: bool, option: str = "pass allow_missing_critic=True") -> None:
    """Refuse, before torch or SB3 is imported, a bundle without the critic its algorithm trains with.

    ``to_sb3`` makes the same refusal once it has built the model (naming the missing modules);
    this check reads only the bundle, so that a command line says so at once.

    Args:
        bundle: the bundle.
        allow_missing_critic: accept the bundle (the critic then starts afresh).
        option: how the caller's user allows it (``"pass --allow-missing-critic"`` on the command line).

    Raises:
        UnsupportedError: the bundle was exported without the critic and ``allow_missing_critic`` is False.

    Example:
        >>> check_critic(Bundle.load("sac.rlp"), allow_missing_critic=False)   # doctest: +SKIP
        UnsupportedError: ... to start them afresh, pass allow_missing_critic=True
    """
    source = bundle.source
    algorithm = source.get("algorithm")
    if allow_missing_critic or source.get("includes_critic") is True or source.get("framework") != "stable-baselines3":
        return
    if algorithm is not None and (not isinstance(algorithm, str) or algorithm not in ALGORITHMS):
        return  # to_sb3 names the unknown algorithm
    if algorithm in _NO_CRITIC:
        return
    name = algorithm or "the model"
    raise UnsupportedError(
        f"this bundle keeps only what acting needs (exported without include_critic=True): {name}'s value/Q "
        "networks (the critic) are not in it. To resume training with them, export again with "
        "rlport.from_sb3(model, include_critic=True) or `rlport import ... --include-critic`; "
        f"to start them afresh, {option}"
    )
