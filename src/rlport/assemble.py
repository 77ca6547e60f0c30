"""One bundle assembly for every producer: graph, tensors, spaces, env, source and provenance in;
the bundle checked once and its probes recorded.

Each producer (a live SB3 model, an SB3 ``.zip``, an RL Zoo run; later SB2 files, torch modules,
distilled students) builds its graph and describes its source, then calls :func:`assemble`. The
assembly never makes the env: recording verification data (``rlport.verify.record``) is the
caller's explicit choice, after it.

Example:
    >>> bundle = assemble(graph, tensors, obs_spec, act_spec, EnvSpec("CartPole-v1"), source, {})  # doctest: +SKIP
    >>> bundle.save("cartpole.rlp")                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlport._version import __version__
from rlport.backends.numpy import NumpyPolicy
from rlport.backends.parity import check_against_source
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec, ProbeInfo
from rlport.bundle.probes import MIN_PROBES, Predict, probe_count, record_probes
from rlport.bundle.spaces import SpaceSpec, sample_observations
from rlport.errors import GraphError, RlportError, UnsupportedError
from rlport.graph.graph import Graph

__all__ = ["assemble", "Reference", "created", "exporter", "PROBE_SEED"]

PROBE_SEED = 12345
"""Seed of the observations sampled for probes: the same policy gives the same probes (and bytes)."""


@dataclass(frozen=True)
class Reference:
    """The producer's source at hand: its probes are recorded, and the bundle must act as it does.

    Attributes:
        name: the source's name in a refusal (``"stable-baselines3"``).
        predict: ``predict(obs, state, episode_start) -> (action, state)``, deterministic.
        observations: ``observations(count)``, a batch of ``count`` observations (an array or a dict of arrays).
        recurrent: the source carries a state (probes are one stream of steps).
        describe: what made the probes' actions, for the manifest (``"stable-baselines3 2.3 predict(...)"``).
        cannot_express: what the source has that the graph may not follow (overridden methods, custom
            modules), named when the bundle acts otherwise.
    """

    name: str
    predict: Predict
    observations: Callable[[int], Any]
    recurrent: bool
    describe: str
    cannot_express: Sequence[str] = ()


def created() -> str:
    """The creation time in UTC, ``2024-05-01T12:00:00Z``; ``SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch else _dt.datetime.now(_dt.timezone.utc)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def exporter() -> str:
    """``"rlport 0.1.0"``: what wrote the bundle (``rlport._version``, kept equal to pyproject.toml's version by a
    test; the installed distribution's metadata would cost ~20 ms of imports to every import and export)."""
    return f"rlport {__version__}"


def assemble(
    graph: Graph,
    tensors: dict[str, np.ndarray],
    observation_space: SpaceSpec,
    action_space: SpaceSpec,
    env: EnvSpec,
    source: dict[str, Any],
    provenance: dict[str, Any],
    probes: int = 256,
    reference: Reference | None = None,
    runtime_note: str = "rlport numpy runtime at import",
    what: str = "the bundle",
) -> Bundle:
    """Put a producer's parts together into a checked bundle with its probes; the env is never made.

    The bundle is checked once: the graph's structure, shapes, ranges and parameters statically,
    then one numpy policy is built (its dry run) and acts for the probes. With a ``reference``,
    the probes are the source's own actions and the bundle must reproduce them (checked even
    when ``probes`` is 0, on :data:`~rlport.bundle.probes.MIN_PROBES` of them); without one,
    they are the numpy runtime's actions, recorded for later replay by ``rlport verify``.

    Args:
        graph, tensors: the policy graph and every tensor it names (and any extra ones to keep).
        observation_space, action_space: the spaces, as the source file or model states them.
        env, source: the env spec and the producer's source description, recorded as given.
        provenance: where the policy came from; ``created`` and ``exporter`` are added here.
        probes: how many probes to record (lowered for large observations; 0 or less: none).
        reference: the source at hand, when the producer can run it.
        runtime_note: what the manifest says made the probes when there is no ``reference``.
        what: the producer's name for the bundle in messages (the source file's path).

    Returns:
        The bundle, without verification data (see :func:`rlport.verify.record.record_verification`).

    Raises:
        UnsupportedError: the graph does not validate (a producer bug), or the bundle acts otherwise
            than the ``reference`` on the probes.
    """
    bundle = Bundle(
        observation_space=observation_space,
        action_space=action_space,
        graph=graph,
        tensors=tensors,
        env=env,
        provenance={**provenance, "created": created(), "exporter": exporter()},
        source=source,
    )
    policy = _checked_policy(bundle, what)
    count = probe_count(observation_space, probes)
    if reference is not None:
        checked = count or probe_count(observation_space, MIN_PROBES)  # checked even when none are kept
        recorded = record_probes(reference.observations(checked), reference.predict, reference.recurrent)
        check_against_source(bundle, reference.name, list(reference.cannot_express), recorded, policy)
        if count > 0:
            bundle.probes, bundle.probe_info = recorded, ProbeInfo(count, reference.recurrent, reference.describe)
    elif count > 0:
        batch = sample_observations(observation_space, count, np.random.default_rng(PROBE_SEED))
        bundle.probes = record_probes(batch, lambda o, s, e: policy.predict(o, s, e, deterministic=True),
                                      policy.is_recurrent)  # fmt: skip
        bundle.probe_info = ProbeInfo(count, policy.is_recurrent, runtime_note)
    return bundle


def _checked_policy(bundle: Bundle, what: str) -> Any:
    """The checks of ``Bundle.validate``, keeping the numpy policy its dry run builds (for the probes).

    Raises:
        UnsupportedError: any check fails; a producer made a graph it should not have.
    """
    try:
        bundle.validate()  # static
        try:
            return NumpyPolicy(bundle)  # the numpy runtime's dry run
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, ArithmeticError) as exc:
            raise GraphError(f"the graph cannot be prepared for running: {type(exc).__name__}: {exc}") from exc
    except RlportError as exc:
        raise UnsupportedError(f"{what}: the graph made from it does not validate ({exc}); please report this") from exc
