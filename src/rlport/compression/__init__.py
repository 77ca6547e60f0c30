"""Smaller bundles: float16 or int8 weights, optionally int8 activations, and how they compare with the float one.

``compress`` makes the bundle (int8: format 1.1 ``encodings``, docs/FORMAT.md section 5.1; float16:
format 1.0); ``compare`` reports sizes, action agreement and paired returns against the original.
int8 is for size and for integer-only microcontrollers; fp16 for GPUs.

Example:
    >>> from rlport.compression import compare, compress
    >>> small = compress("cartpole.rlp", weights="int8")              # doctest: +SKIP
    >>> compare(rlport.Bundle.load("cartpole.rlp"), small).returns    # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from rlport.compression.calibrate import (
    EnvChoice,
    calibrate_scales,
    open_env,
    probe_steps,
    quantisable_values,
    rollout_steps,
    sampled_steps,
)
from rlport.compression.quantise import WEIGHT_SCHEMES, quantise_weights, weight_bytes, with_value_scales
from rlport.compression.report import CompressionReport, compare
from rlport.errors import UnsupportedError

if TYPE_CHECKING:
    from rlport.bundle.bundle import Bundle

__all__ = ["compress", "compare", "CompressionReport", "EnvChoice", "WEIGHT_SCHEMES", "ACTIVATION_SCHEMES",
           "weight_bytes"]  # fmt: skip

ACTIVATION_SCHEMES = ("int8",)
"""What ``rlport compress --activations`` takes."""
DEFAULT_CALIBRATION_STEPS = 1000
"""Observations calibrated on by default (``--calibrate N``)."""


def compress(
    bundle_or_path: Bundle | str | os.PathLike,
    weights: str = "int8",
    activations: str | None = None,
    calibrate: int = DEFAULT_CALIBRATION_STEPS,
    seed: int = 0,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    env_module: str | None = None,
) -> Bundle:
    """A smaller copy of a bundle: its network weights in float16 or int8, optionally int8 activations.

    Args:
        bundle_or_path: the float bundle, or its path.
        weights: ``"int8"`` (one scale per output channel of each linear/conv2d weight; format 1.1)
            or ``"fp16"`` (the network's float32 tensors as float16; format 1.0).
        activations: ``"int8"`` to fake-quantise what each linear/conv2d reads, with scales
            calibrated on ``calibrate`` observations (env rollouts of the float policy; the probes,
            then observations drawn from the space, when the env cannot be made); ``None``: float.
        calibrate: observations to calibrate the activations on.
        seed: calibration episode ``i`` resets the env with ``seed + i``.
        env_id: the env to calibrate in (default: the one the bundle records).
        env_kwargs: its kwargs (default: the recorded ones).
        env_module: the one module a recorded ``module:EnvName`` id may import.

    Returns:
        The compressed bundle (not saved). Its probes hold its own actions (for ``rlport verify``),
        its provenance says how it was made; verification records made for the float bundle are dropped.

    Raises:
        UnsupportedError: an unknown scheme, a bundle already int8, nothing to quantise.

    Example:
        >>> small = rlport.compress("cartpole.rlp", weights="int8")   # doctest: +SKIP
        >>> small.save("cartpole-int8.rlp")                            # doctest: +SKIP
    """
    from rlport.bundle.bundle import Bundle

    original = bundle_or_path if isinstance(bundle_or_path, Bundle) else Bundle.load(bundle_or_path)
    if activations not in (None, *ACTIVATION_SCHEMES):
        raise UnsupportedError(f"unknown activation format {activations!r}; use int8 or leave it out")
    compressed = quantise_weights(original, weights)
    note: dict[str, Any] = {"weights": weights, "activations": activations}
    if activations is not None:
        steps = _calibration_steps(original, calibrate, seed, EnvChoice(env_id, env_kwargs, env_module))
        names = quantisable_values(original)
        if not names:
            raise UnsupportedError("no float32 value is read by a linear or conv2d node: nothing to quantise")
        compressed = with_value_scales(compressed, calibrate_scales(original, steps, names))
        note["calibration"] = {"source": steps.source, "observations": len(steps), "seed": seed}
    compressed = replace(compressed, provenance={**original.provenance, "compressed": note}, verification=None)
    compressed.validate()
    return _with_own_probes(compressed)


def _calibration_steps(original: Bundle, count: int, seed: int, choice: EnvChoice):
    from rlport.backends.numpy import NumpyPolicy

    if count < 1:
        raise UnsupportedError(f"--calibrate must be at least 1, found {count}")
    made, _ = open_env(original, choice)
    if made is not None:
        return rollout_steps(NumpyPolicy(original), made, count, seed)
    return probe_steps(original) or sampled_steps(original, count, seed)


def _with_own_probes(bundle: Bundle) -> Bundle:
    """The bundle with its probes' actions replaced by its own (so that ``rlport verify`` checks it, not its source)."""
    from rlport.backends.numpy import NumpyPolicy
    from rlport.bundle.manifest import ProbeInfo

    if not bundle.probes or "action" not in bundle.probes:
        return bundle
    probes = dict(bundle.probes)
    steps = probe_steps(bundle)
    policy, state, actions = NumpyPolicy(bundle), None, []
    for obs, start in zip(steps.observations, steps.starts, strict=True):
        action, state = policy.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
        actions.append(np.asarray(action))
    probes["action"] = np.stack(actions).astype(bundle.probes["action"].dtype)
    sequential = bundle.probe_info.sequential if bundle.probe_info else bool(bundle.graph.inputs_with_role("state"))
    info = ProbeInfo(len(actions), sequential, "rlport compress: the compressed bundle's numpy runtime")
    return replace(bundle, probes=probes, probe_info=info)
