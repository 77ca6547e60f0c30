"""rlport: portable, pickle-free bundles for trained reinforcement-learning policies.

Example:
    >>> import rlport
    >>> bundle = rlport.from_sb3(model, env_id="CartPole-v1")     # doctest: +SKIP
    >>> bundle.save("cartpole.rlp")                               # doctest: +SKIP
    >>> policy = rlport.load("cartpole.rlp")                      # doctest: +SKIP
    >>> action, state = policy.predict(obs, deterministic=True)   # doctest: +SKIP

Loading and running a bundle needs numpy only; ``from_sb3`` imports torch and
stable-baselines3 when it is called.
"""

from __future__ import annotations

import os
from typing import Any

from rlport._version import __version__
from rlport.backends import registry as _registry
from rlport.bundle.bundle import Bundle
from rlport.errors import (
    ActionError,
    BundleError,
    EnvError,
    FormatVersionError,
    GraphError,
    IntegrityError,
    MissingDependencyError,
    ObservationError,
    RlportError,
    RlportWarning,
    SpaceError,
    UnsafeFileError,
    UnsupportedError,
)

__all__ = [
    "Bundle",
    "load",
    "from_sb3",
    "from_torch",
    "import_sb3",
    "import_zoo",
    "import_state_dict",
    "import_sb2",
    "distill",
    "card",
    "evaluate",
    "to_sb3",
    "export_sb3",
    "export_zoo",
    "export_c",
    "compress",
    "compression_report",
    "RlportError",
    "BundleError",
    "FormatVersionError",
    "IntegrityError",
    "GraphError",
    "UnsupportedError",
    "SpaceError",
    "ObservationError",
    "MissingDependencyError",
    "EnvError",
    "UnsafeFileError",
    "ActionError",
    "RlportWarning",
    "__version__",
]


BACKENDS = _registry.backend_names()
"""The backends :func:`load` takes (read from :data:`rlport.backends.registry.BACKENDS`)."""


def load(path: str | os.PathLike | Bundle, backend: str = "numpy", seed: int | None = None, device: str = "cpu"):
    """Load a bundle; return a policy with SB3's ``predict(obs, state, episode_start, deterministic)``.

    Args:
        path: the ``.rlp`` file, or a :class:`Bundle` already in memory (``rlport.from_sb3(...)``).
        backend: a name of :data:`BACKENDS` (the table is :mod:`rlport.backends.registry`):
            ``"numpy"`` (numpy only), ``"torch"`` (``.module`` is a plain ``torch.nn.Module``)
            or ``"onnx"`` (onnxruntime; sampling draws with numpy, as the numpy backend does).
        seed: seed for ``deterministic=False`` sampling.
        device: the torch device for the torch backend (``"cuda"`` where present).

    Raises:
        UnsupportedError: an unknown backend (the message lists the known ones), a device for a
            backend that runs on the CPU, or a graph op the backend does not implement.
        MissingDependencyError: the backend's packages are not installed (the message names the extra).

    Example:
        >>> policy = rlport.load("cartpole.rlp")                     # doctest: +SKIP
        >>> action, _ = policy.predict(obs, deterministic=True)      # doctest: +SKIP
        >>> policy = rlport.load(rlport.from_sb3(model))              # doctest: +SKIP
    """
    entry = _registry.resolve(backend, device)
    if isinstance(path, Bundle):
        bundle = path
    elif isinstance(path, (str, os.PathLike)):
        bundle = Bundle.load(path)
    else:
        raise BundleError(f"load() takes a bundle's path or a Bundle, not {type(path).__name__}")
    return _registry.make_policy(entry, bundle, seed=seed, device=device)


def from_sb3(model: Any, vec_normalize: Any = None, env_id: str | None = None, **kwargs: Any) -> Bundle:
    """Export a live Stable-Baselines3 / sb3-contrib model to a :class:`Bundle`.

    See :func:`rlport.frameworks.sb3.live.from_sb3` for the arguments.
    """
    from rlport.frameworks.sb3.live import from_sb3 as _from_sb3

    return _from_sb3(model, vec_normalize=vec_normalize, env_id=env_id, **kwargs)


def import_sb3(path: str | os.PathLike, vecnormalize: str | os.PathLike | None = None, **kwargs: Any) -> Bundle:
    """Import an SB3 ``.zip`` (SB3 1.0 to 2.x, sb3-contrib) without torch and without running pickle.

    See :func:`rlport.frameworks.sb3.importer.import_sb3` for the arguments.

    Example:
        >>> bundle = rlport.import_sb3("model.zip", vecnormalize="vecnormalize.pkl")   # doctest: +SKIP
    """
    from rlport.frameworks.sb3.importer import import_sb3 as _import_sb3

    return _import_sb3(path, vecnormalize=vecnormalize, **kwargs)


def import_zoo(folder: str | os.PathLike, **kwargs: Any) -> Bundle:
    """Import an RL Zoo run folder (``ALGO/ENV_1/``): model, VecNormalize, wrappers, published returns.

    See :func:`rlport.frameworks.zoo.run.import_zoo` for the arguments.

    Example:
        >>> bundle = rlport.import_zoo("rl-trained-agents/ppo/Walker2d-v3_1")   # doctest: +SKIP
    """
    from rlport.frameworks.zoo.run import import_zoo as _import_zoo

    return _import_zoo(folder, **kwargs)


def import_state_dict(path: str | os.PathLike, **kwargs: Any) -> Bundle:
    """Import bare SB3 weights (``torch.save(model.policy.state_dict(), path)``, or a ``policy.pth``).

    The policy is rebuilt from the tensor names with SB3's construction rules; what the tensors
    cannot tell (the activation ...) is assumed, warned about and recorded in ``source["assumed"]``.
    See :func:`rlport.frameworks.sb3.state_dict.import_state_dict` for the arguments.

    Example:
        >>> bundle = rlport.import_state_dict("weights.pth", algorithm="A2C", env="CartPole-v1")   # doctest: +SKIP
    """
    from rlport.frameworks.sb3.state_dict import import_state_dict as _import_state_dict

    return _import_state_dict(path, **kwargs)


def import_sb2(path: str | os.PathLike, **kwargs: Any) -> Bundle:
    """Import a Stable Baselines 2 (TensorFlow) model, ``.pkl`` or ``.zip``, without TensorFlow or pickle.

    A model inside an SB2 zoo folder (``ALGO/ENV.pkl`` beside ``ALGO/ENV/``) brings its statistics and
    wrappers. See :func:`rlport.frameworks.sb2.importer.import_sb2` for the arguments.

    Example:
        >>> bundle = rlport.import_sb2("trained_agents/a2c/CartPole-v1.pkl")   # doctest: +SKIP
    """
    from rlport.frameworks.sb2.importer import import_sb2 as _import_sb2

    return _import_sb2(path, **kwargs)


def distill(teacher: str | os.PathLike | Bundle, **kwargs: Any) -> tuple[Bundle, dict[str, Any]]:
    """Distil a policy into a small MLP student (DAgger-style); returns the student and its report.

    See :func:`rlport.distillation.api.distill` for the arguments.

    Example:
        >>> student, report = rlport.distill("teacher.rlp", hidden=(64, 64))   # doctest: +SKIP
    """
    from rlport.distillation.api import distill as _distill

    return _distill(teacher, **kwargs)


def from_torch(module: Any, observation_space: Any, action_space: Any, head: str, **kwargs: Any) -> Bundle:
    """Capture a torch policy network (``torch.export``) as a :class:`Bundle`, checked against the module.

    See :func:`rlport.frameworks.torch.export.from_torch` for the heads and arguments.

    Example:
        >>> bundle = rlport.from_torch(actor, obs_space, act_space, head="gaussian")  # doctest: +SKIP
    """
    from rlport.frameworks.torch.export import from_torch as _from_torch

    return _from_torch(module, observation_space, action_space, head, **kwargs)


def compress(
    bundle_or_path: Bundle | str | os.PathLike,
    weights: str = "int8",
    activations: str | None = None,
    calibrate: int = 1000,
    seed: int = 0,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    env_module: str | None = None,
) -> Bundle:
    """A smaller copy of a bundle: float16 or int8 weights, optionally int8 activations (see :mod:`rlport.compression`).

    Example:
        >>> small = rlport.compress("cartpole.rlp", weights="int8")   # doctest: +SKIP
        >>> small.save("cartpole-int8.rlp")                            # doctest: +SKIP
    """
    from rlport.compression import compress as _compress

    return _compress(bundle_or_path, weights, activations, calibrate, seed, env_id, env_kwargs, env_module)


def compression_report(
    original: Bundle | str | os.PathLike, compressed: Bundle | str | os.PathLike, episodes: int = 10, **kwargs: Any
):
    """How a compressed bundle compares with its float original: sizes, action agreement, paired returns.

    See :func:`rlport.compression.compare` (``seed``, ``env_id``, ``env_kwargs``, ``env_module``, ``on_episode``).

    Example:
        >>> report = rlport.compression_report("cartpole.rlp", "cartpole-int8.rlp", episodes=20)   # doctest: +SKIP
        >>> report.returns["difference"], report.returns["ci95"], report.warnings                  # doctest: +SKIP
    """
    from rlport.compression import compare

    original = original if isinstance(original, Bundle) else Bundle.load(original)
    compressed = compressed if isinstance(compressed, Bundle) else Bundle.load(compressed)
    return compare(original, compressed, episodes, **kwargs)


def export_c(bundle: Bundle | str | os.PathLike, folder: str | os.PathLike) -> Any:
    """Write a bundle's whole policy as C99: rlport_policy.h, rlport_policy.c and a README in ``folder``.

    See :func:`rlport.backends.c.export.export_c`.

    Example:
        >>> rlport.export_c("cartpole.rlp", "cartpole_c")   # doctest: +SKIP
    """
    from rlport.backends.c.export import export_c as _export_c

    return _export_c(bundle if isinstance(bundle, Bundle) else Bundle.load(bundle), folder)


def card(path: str | os.PathLike | Bundle, output: str | os.PathLike, **kwargs: Any) -> Any:
    """Write a report page (index.html), a Hugging Face model card (README.md) and results.json for a bundle.

    See :func:`rlport.report.card.card` for the arguments.

    Example:
        >>> rlport.card("model.rlp", "card/")   # doctest: +SKIP
    """
    from rlport.report.card import card as _card

    return _card(path, output, **kwargs)


def evaluate(bundles: Any, **kwargs: Any) -> Any:
    """Evaluate bundles x envs x seeds on local processes or a Ray cluster: results and a summary table.

    See :func:`rlport.fleet.run.evaluate` for the arguments.

    Example:
        >>> rlport.evaluate(["bundles/"], seeds=3)   # doctest: +SKIP
    """
    from rlport.fleet.run import evaluate as _evaluate

    return _evaluate(list(bundles), **kwargs)


def to_sb3(bundle: Bundle | str | os.PathLike, env: Any = None, **kwargs: Any) -> Any:
    """Rebuild the SB3 / sb3-contrib model of a bundle, weights loaded, ready to ``.learn()``.

    See :func:`rlport.frameworks.sb3.to_sb3.to_sb3` for the arguments.

    Example:
        >>> model = rlport.to_sb3("model.rlp")                          # doctest: +SKIP
        >>> model.learn(10_000, reset_num_timesteps=False)              # doctest: +SKIP
    """
    from rlport.frameworks.sb3.to_sb3 import to_sb3 as _to_sb3

    return _to_sb3(bundle, env=env, **kwargs)


def export_sb3(bundle: Bundle | str | os.PathLike, path: str | os.PathLike, **kwargs: Any) -> list:
    """Write a bundle as an SB3 ``.zip`` (and ``NAME.vecnormalize.pkl``) that ``ALGO.load`` reads.

    See :func:`rlport.frameworks.sb3.to_sb3.export_sb3` for the arguments.

    Example:
        >>> rlport.export_sb3("walker.rlp", "walker.zip")               # doctest: +SKIP
    """
    from rlport.frameworks.sb3.to_sb3 import export_sb3 as _export_sb3

    return _export_sb3(bundle, path, **kwargs)


def export_zoo(bundle: Bundle | str | os.PathLike, folder: str | os.PathLike, **kwargs: Any) -> Any:
    """Write a bundle as an RL Zoo run folder that the zoo's ``enjoy`` plays as it was trained.

    See :func:`rlport.frameworks.zoo.export.export_zoo` for the arguments.

    Example:
        >>> rlport.export_zoo("walker.rlp", "logs/ppo/Walker2d-v4_1")   # doctest: +SKIP
    """
    from rlport.frameworks.zoo.export import export_zoo as _export_zoo

    return _export_zoo(bundle, folder, **kwargs)
