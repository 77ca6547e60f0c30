"""``import_sb2``: an SB2 (Stable Baselines 2, TensorFlow 1) model file, and the RL Zoo folder beside it, to a
bundle, without TensorFlow and without running any of its pickles.

Example:
    >>> bundle = import_sb2("rl-baselines-zoo/trained_agents/ppo2/CartPole-v1.pkl")   # doctest: +SKIP
    >>> bundle.save("cartpole.rlp")                                                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from rlport.assemble import assemble
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec
from rlport.envs import check_env_id
from rlport.errors import RlportWarning
from rlport.frameworks.sb2.files import read_sb2, sniff_format
from rlport.frameworks.sb2.model import SB2Model
from rlport.frameworks.sb2.zoo import SB2Zoo, env_note, read_zoo_folder
from rlport.frameworks.sb3.importer import trusted_module
from rlport.frameworks.zoo.run import migrate_env
from rlport.verify.record import record_or_warn

__all__ = ["import_sb2", "is_sb2_file", "SB2_ENV_IDS"]

SB2_ENV_IDS: dict[str, tuple[str, ...]] = {
    f"Fetch{task}-v1": (f"Fetch{task}-v4", f"Fetch{task}-v2") for task in ("Reach", "Push", "PickAndPlace", "Slide")
}
"""SB2-era ids that :data:`rlport.frameworks.zoo.run.ENV_MIGRATIONS` does not list -> today's candidates
(gymnasium-robotics), tried in order when registered here; the rest go through that table."""


def is_sb2_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like an SB2 model: a binary pickle, or a .zip with ``parameters`` and
    ``parameter_list`` members (an SB3 .zip has ``policy.pth``). Reads a few bytes and a zip's directory.

    Example:
        >>> is_sb2_file("a2c/CartPole-v1.pkl")   # doctest: +SKIP
        True
    """
    return sniff_format(path) is not None


def _env_spec(env: str | EnvSpec | None, zoo: SB2Zoo, env_module: str | None, what: str) -> EnvSpec:
    """The caller's env (theirs, trusted), else the zoo's id (the file's name, checked) with its wrappers."""
    if isinstance(env, EnvSpec):
        return env
    if env is not None:
        return EnvSpec(env, {}, zoo.wrappers)
    return EnvSpec(check_env_id(zoo.env_id, env_module, f"{what} (its file name)"), {}, zoo.wrappers)


def _today(env_id: str, bundle: Bundle, env_module: str | None) -> tuple[str, dict[str, Any], str | None]:
    """Today's id for an SB2-era ``env_id`` (spaces checked where the env can be made), kwargs and a note."""
    try:
        import gymnasium
    except ImportError:
        return env_id, {}, "gymnasium is not installed: the env id was not checked"
    for candidate in SB2_ENV_IDS.get(env_id, ()):
        if candidate in gymnasium.envs.registry:
            new_id, kwargs, note = migrate_env(candidate, bundle, env_module)
            if note is None:
                return new_id, kwargs, f"{env_id} is now {new_id} (observation and action spaces checked: they match)"
    return migrate_env(env_id, bundle, env_module)


def _map_env(bundle: Bundle, zoo: SB2Zoo, env_module: str | None, what: str) -> None:
    """Today's env id in the bundle (warned about when renamed); what the env needs when it cannot be made."""
    recorded = bundle.env.id
    new_id, kwargs, note = _today(recorded, bundle, env_module)
    if new_id != recorded or kwargs:
        warnings.warn(f"{what}: {note}", RlportWarning, stacklevel=3)
        bundle.env = EnvSpec(new_id, {**kwargs, **bundle.env.kwargs}, bundle.env.wrappers)
    if note:
        bundle.provenance["env_id_note"] = note
    needs = env_note(recorded)
    if needs and new_id == recorded and note and "cannot be created here" in note:
        bundle.provenance["env_needs"] = needs
        warnings.warn(f"{what}: {needs}", RlportWarning, stacklevel=3)


def _provenance(model: SB2Model, zoo: SB2Zoo, path: Path) -> dict[str, Any]:
    """Where the policy came from; ``assemble`` adds when and by what."""
    provenance = {
        "framework": "stable-baselines",
        "framework_version": model.version,
        "algorithm": model.algorithm,
        "policy_class": model.data.get("_policy_saved_as", model.policy),
        "file_format": sniff_format(path),
        "imported_from": path.name,
        "gym": "< 0.26 (SB2 era; the file does not record the version)",
        **zoo.published,
    }
    if zoo.folder is not None:
        provenance.update(zoo_model=f"{path.parent.name}/{path.name}", zoo_env_id=zoo.env_id)
    return provenance


def _source(source: dict[str, Any], zoo: SB2Zoo, cannot_express: list[str]) -> dict[str, Any]:
    """The graph builder's source, with the zoo's VecNormalize counts and what the graph leaves out."""
    source = dict(source)
    if isinstance(source.get("vec_normalize"), dict) and zoo.vec_normalize is not None:
        source["vec_normalize"] = {**source["vec_normalize"], **zoo.vec_normalize}
    if cannot_express and isinstance(source.get("sb2"), dict):
        source["sb2"] = {**source["sb2"], "cannot_express": list(cannot_express)}
    return source


def import_sb2(
    path: str | os.PathLike,
    *,
    env: str | EnvSpec | None = None,
    env_module: str | None = None,
    algorithm: str | None = None,
    probes: int = 256,
    fingerprint: bool = True,
    evaluate: int = 0,
) -> Bundle:
    """Import an SB2 ``.pkl`` or ``.zip`` (stable-baselines 2.x), with its RL Zoo folder when it sits in one.

    In the zoo layout (``ALGO/ENV.pkl`` beside ``ALGO/ENV/``) the env id is the file's name (mapped to
    today's gymnasium id when renamed, spaces checked), the folder's ``config.yml``/``obs_rms.pkl`` decide the
    normalisation and env wrappers, and the zoo's published return (its ``benchmark.md``) is recorded for
    ``rlport verify``. The import never fails because of the env: one that cannot be made here, or whose
    spaces differ, gives an ``RlportWarning`` saying what it needs.

    Args:
        path: the SB2 model file.
        env: the env id (or full env spec) to record instead of the file's name; the caller's own, trusted.
        env_module: the one module a ``module:EnvName`` env id may make gymnasium import.
        algorithm: the SB2 algorithm (``"ppo2"``...), when neither the file nor its folder tells.
        probes: how many probes to record (actions of rlport's numpy runtime; TensorFlow is not run).
        fingerprint: record the env's dynamics fingerprint for ``rlport verify`` when the env can be made.
        evaluate: record the returns of this many deterministic episodes (0: none).

    Raises:
        BundleError: a file is missing, malformed, over its size limit or inconsistent.
        UnsafeFileError: a file asks to run code, or an env id from a file would import a module.
        UnsupportedError: a policy, space or setting rlport cannot express (named in the message).
    """
    from rlport.frameworks.sb2.policies import build_sb2_graph

    path = Path(path)
    what = str(path)
    env_module = trusted_module(env if isinstance(env, str) else None, env_module)
    model = read_sb2(path, algorithm)
    zoo = read_zoo_folder(path, model)
    sb2 = build_sb2_graph(model, zoo.normalisation)
    bundle = assemble(
        sb2.graph,
        sb2.tensors,
        model.observation_space,
        model.action_space,
        _env_spec(env, zoo, env_module, what),
        _source(sb2.source, zoo, sb2.cannot_express),
        _provenance(model, zoo, path),
        probes=probes,
        runtime_note="rlport numpy runtime at import (SB2 and TensorFlow were not run)",
        what=what,
    )
    if env is None:
        _map_env(bundle, zoo, env_module, what)
    record_or_warn(bundle, what, fingerprint=fingerprint, evaluate=evaluate, env_module=env_module)
    return bundle
