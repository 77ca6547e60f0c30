"""The :class:`Bundle`: one portable, pickle-free policy file (docs/FORMAT.md).

Example:
    >>> bundle = Bundle.load("cartpole.rlp")          # doctest: +SKIP
    >>> bundle.save("copy.rlp")                       # doctest: +SKIP
    >>> action, _ = NumpyPolicy(bundle).predict(obs)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlport.bundle import safetensors
from rlport.bundle.container import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    READ_MINOR,
    container_bytes,
    read_container,
    sha256,
    write_container,
)
from rlport.bundle.manifest import EnvSpec, ProbeInfo, canonical_json, check_fields_known, parse_json
from rlport.bundle.spaces import SpaceSpec, leaves, space_from_json
from rlport.bundle.static import check_statically, observation_values
from rlport.errors import BundleError, FormatVersionError, GraphError, IntegrityError, RlportError
from rlport.graph.graph import Graph
from rlport.graph.infer import Value, infer
from rlport.graph.passes import Encodings, check_encodings, decode_tensors, dequantise

__all__ = ["Bundle", "WEIGHTS", "PROBES", "FINGERPRINT"]

WEIGHTS = "weights.safetensors"
PROBES = "probes.safetensors"
FINGERPRINT = "fingerprint.safetensors"


@dataclass
class Bundle:
    """Everything needed to act with a trained policy.

    Attributes:
        observation_space: what the policy observes (before pre-processing).
        action_space: the final action's space.
        graph: the policy graph (pre-processing, network, post-processing).
        tensors: every tensor the graph names (and, optionally, the rest of the source model).
        env: the environment spec.
        provenance: where and how the policy was made.
        source: importer data to rebuild the source model (never read by runtimes).
        probes: parity probes (observations and the source's actions), or ``None``.
        probe_info: summary of ``probes``.
        encodings: how tensors are stored (format 1.1: int8 with per-channel scales) and which values
            are fake-quantised; empty for format 1.0.
        encoded: the stored form (int8) of each tensor named in ``encodings.tensors``; ``tensors``
            holds its decoded float32 form (what the ops take), so every reader of ``tensors`` gets
            floats.
    """

    observation_space: SpaceSpec
    action_space: SpaceSpec
    graph: Graph
    tensors: dict[str, np.ndarray]
    env: EnvSpec = field(default_factory=EnvSpec)
    provenance: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, np.ndarray] | None = None
    probe_info: ProbeInfo | None = None
    verification: dict[str, Any] | None = None
    fingerprint: dict[str, np.ndarray] | None = None
    encodings: Encodings = field(default_factory=Encodings)
    encoded: dict[str, np.ndarray] = field(default_factory=dict)
    _values: tuple[tuple[int, ...], dict[str, Value]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # ---- writing ------------------------------------------------------------------------

    @property
    def format_version(self) -> tuple[int, int]:
        """``(1, 1)`` for a bundle with encodings, else ``(1, 0)`` (so a 1.0 bundle stays byte for byte 1.0)."""
        return (FORMAT_MAJOR, READ_MINOR) if self.encodings else (FORMAT_MAJOR, FORMAT_MINOR)

    def stored_tensors(self) -> dict[str, np.ndarray]:
        """The tensors as ``weights.safetensors`` stores them: ``tensors``, the encoded ones in their stored form."""
        return {**self.tensors, **self.encoded}

    def _members(self) -> dict[str, bytes]:
        members = {WEIGHTS: safetensors.dumps(self.stored_tensors())}
        if self.probes is not None:
            members[PROBES] = safetensors.dumps(self.probes)
        if self.fingerprint is not None:
            members[FINGERPRINT] = safetensors.dumps(self.fingerprint)
        return members

    def manifest(self, members: dict[str, bytes] | None = None) -> dict[str, Any]:
        """The manifest as a JSON-able dict."""
        members = self._members() if members is None else members
        manifest = {
            "format": "rlport-bundle",
            "format_version": "{}.{}".format(*self.format_version),
            "observation_space": self.observation_space.to_json(),
            "action_space": self.action_space.to_json(),
            "graph": self.graph.to_json(),
            "env": self.env.to_json(),
            "provenance": dict(self.provenance),
            "probes": self.probe_info.to_json() if self.probe_info else None,
            "source": dict(self.source),
            "members": {name: {"sha256": sha256(data), "size": len(data)} for name, data in members.items()},
        }
        if self.verification is not None:
            manifest["verification"] = dict(self.verification)
        if self.encodings:
            manifest["encodings"] = self.encodings.to_json()
        return manifest

    def save(self, path: str | os.PathLike) -> Path:
        """Validate, then write the bundle to ``path`` atomically; the same bundle gives the same bytes."""
        self.validate()
        members = self._members()
        write_container(path, canonical_json(self.manifest(members)), members, self.format_version)
        return Path(path)

    def to_bytes(self) -> bytes:
        """The bytes :meth:`save` writes (validated first)."""
        self.validate()
        members = self._members()
        return container_bytes(canonical_json(self.manifest(members)), members, self.format_version)

    # ---- reading ------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> Bundle:
        """Read and fully validate a bundle; raise a subclass of :class:`RlportError` on any fault."""
        what = str(path)
        manifest_bytes, members, version = read_container(path)
        manifest = parse_json(manifest_bytes, f"{what}: manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != "rlport-bundle":
            raise BundleError(f"{what}: manifest.json does not describe an rlport bundle")
        _check_version(manifest.get("format_version"), version, what)
        _check_members(manifest.get("members"), members, what)
        check_fields_known(manifest, version, (FORMAT_MAJOR, READ_MINOR), what)
        try:
            bundle = cls._from_manifest(manifest, members, what)
            bundle.validate()
        except RlportError as exc:
            if str(exc).startswith(f"{what}: "):
                raise
            raise type(exc)(f"{what}: {exc}") from exc
        return bundle

    @classmethod
    def _from_manifest(cls, manifest: dict, members: dict[str, bytes], what: str) -> Bundle:
        for key in ("observation_space", "action_space", "graph", "env"):
            if key not in manifest:
                raise BundleError(f"{what}: manifest.json lacks the required field {key!r}")
        if WEIGHTS not in members:
            raise BundleError(f"{what}: the bundle has no {WEIGHTS} member")
        stored, _ = safetensors.loads(members[WEIGHTS], what=f"{what}: {WEIGHTS}")
        graph = Graph.from_json(manifest["graph"])
        encodings = Encodings.from_json(manifest["encodings"]) if "encodings" in manifest else Encodings()
        check_encodings(graph, stored, encodings)
        probes = None
        if PROBES in members:
            probes, _ = safetensors.loads(members[PROBES], what=f"{what}: {PROBES}")
        probe_info = ProbeInfo.from_json(manifest["probes"]) if manifest.get("probes") is not None else None
        fingerprint = None
        if FINGERPRINT in members:
            fingerprint, _ = safetensors.loads(members[FINGERPRINT], what=f"{what}: {FINGERPRINT}")
        verification = manifest.get("verification")
        if verification is not None and not isinstance(verification, dict):
            raise BundleError(f"{what}: manifest field 'verification' must be an object")
        for key in ("provenance", "source"):
            if not isinstance(manifest.get(key, {}), dict):
                raise BundleError(f"{what}: manifest field {key!r} must be an object")
        return cls(
            observation_space=space_from_json(manifest["observation_space"]),
            action_space=space_from_json(manifest["action_space"]),
            graph=graph,
            tensors=decode_tensors(stored, encodings, widen_float16=False),
            env=EnvSpec.from_json(manifest["env"]),
            provenance=manifest.get("provenance", {}),
            source=manifest.get("source", {}),
            probes=probes,
            probe_info=probe_info,
            verification=verification,
            fingerprint=fingerprint,
            encodings=encodings,
            encoded={name: stored[name] for name in encodings.tensors},
        )

    # ---- use ----------------------------------------------------------------------------

    def validate(self) -> None:
        """Check the graph against the tensors and spaces, statically: nothing is run, no runtime is built.

        The graph's shapes, dtypes and ranges are inferred (``rlport.graph.infer``): every node
        must fit its inputs and parameters, every value stay within the size limits, every
        parameter be finite, and the action lie in the action space for any observation. (Each
        runtime also runs the graph once on a dummy batch when it is built.)

        Raises:
            GraphError: the graph is inconsistent, over the limits, has non-finite parameters or
                can act outside its action space.
        """
        self.graph.validate({name: np.ndim(array) for name, array in self.tensors.items()})
        self._check_encoded()
        self._check_observation_inputs()
        values = check_statically(self.graph, self.tensors, self.observation_space, self.action_space)
        for name in self.encodings.values:
            if values[name].dtype != np.float32:
                raise BundleError(
                    f"encoded value {name!r} is {values[name].dtype}; only float32 values can be fake-quantised"
                )
        self._values = (id(self.graph), id(self.tensors), id(self.observation_space)), values

    def values(self) -> dict[str, Value]:
        """Every graph value's static shape, dtype and bounds (:func:`rlport.graph.infer.infer`), computed once.

        Raises:
            GraphError: the graph does not fit its spaces or limits (as :meth:`validate` says).
        """
        key = (id(self.graph), id(self.tensors), id(self.observation_space))
        if self._values is None or self._values[0] != key:
            self._values = key, infer(self.graph, self.tensors, observation_values(self.observation_space))
        return self._values[1]

    def _check_encoded(self) -> None:
        """Encodings fit the stored tensors; each encoded tensor decodes exactly to its float form in ``tensors``."""
        if set(self.encoded) != set(self.encodings.tensors):
            raise BundleError(
                f"the encoded tensors {sorted(self.encoded)} differ from those the encodings name "
                f"{sorted(self.encodings.tensors)}; make the bundle with rlport.compress"
            )
        check_encodings(self.graph, self.stored_tensors(), self.encodings)
        for name, enc in self.encodings.tensors.items():
            decoded = dequantise(self.encoded[name], self.tensors[enc.scale], enc.axis)
            if name not in self.tensors or not np.array_equal(self.tensors[name], decoded):
                raise BundleError(
                    f"tensor {name!r} differs from its int8 encoding (changed after it was quantised); "
                    "quantise the bundle again with rlport.compress, or drop the encoding"
                )

    def _check_observation_inputs(self) -> None:
        """One ``observation`` input per leaf of the observation space, keyed by its path."""
        expected = sorted(key for key, _ in leaves(self.observation_space))
        found = sorted(tuple(i.key or ()) for i in self.graph.inputs_with_role("observation"))
        if found != expected:
            show = [list(k) if k else None for k in found]
            raise GraphError(
                f"the graph's observation inputs have keys {show} but the observation space has "
                f"leaves {[list(k) if k else None for k in expected]}; there must be one input per leaf"
            )

    def summary(self) -> dict[str, Any]:
        """A short JSON-able description (what ``rlport inspect`` shows)."""
        counts: dict[str, int] = {}
        for node in self.graph.nodes():
            counts[node.op] = counts.get(node.op, 0) + 1
        graph_names = {name for node in self.graph.nodes() for name in node.params.values()}
        summary = {
            "format_version": "{}.{}".format(*self.format_version),
            "observation_space": self.observation_space.to_json(),
            "action_space": self.action_space.to_json(),
            "env": self.env.to_json(),
            "provenance": dict(self.provenance),
            "graph": {
                stage: [node.op for node in getattr(self.graph, stage)]
                for stage in ("preprocess", "policy", "postprocess")
            },
            "ops": counts,
            "parameters": int(sum(self.tensors[n].size for n in graph_names)),
            "tensors": len(self.tensors),
            "includes_critic": bool(self.source.get("includes_critic", False)),
            "probes": self.probe_info.to_json() if self.probe_info else None,
            "recurrent": bool(self.graph.inputs_with_role("state")),
        }
        if self.encodings:
            summary["encodings"] = {
                "int8_tensors": len(self.encodings.tensors),
                "int8_values": len(self.encodings.values),
            }
        return summary


def _check_version(declared: Any, from_comment: tuple[int, int], what: str) -> None:
    match = re.fullmatch(r"([0-9]{1,6})\.([0-9]{1,6})", declared) if isinstance(declared, str) else None
    if match is None:  # int() alone would take "+1.0", " 1.0" and "1_0.0"
        raise BundleError(f"{what}: format_version must be 'major.minor', found {declared!r:.100} (digits only)")
    major, minor = int(match[1]), int(match[2])
    if major > FORMAT_MAJOR:
        raise FormatVersionError(
            f"{what}: written in bundle format {declared}; this rlport reads {FORMAT_MAJOR}.x. "
            "Upgrade rlport (pip install -U rlport)"
        )
    if (major, minor) != from_comment:
        raise BundleError(
            f"{what}: manifest says format {declared} but the archive comment says "
            f"{from_comment[0]}.{from_comment[1]}; the bundle is corrupt"
        )


def _check_members(listed: Any, members: dict[str, bytes], what: str) -> None:
    if not isinstance(listed, dict):
        raise BundleError(f"{what}: manifest.json lacks a 'members' object")
    if set(listed) != set(members):
        raise BundleError(
            f"{what}: members listed in the manifest {sorted(listed)} differ from those in the "
            f"archive {sorted(members)}"
        )
    for name, data in members.items():
        entry = listed[name]
        if not isinstance(entry, dict) or "sha256" not in entry or "size" not in entry:
            raise BundleError(f"{what}: manifest entry for {name!r} needs 'sha256' and 'size'")
        if entry["size"] != len(data) or entry["sha256"] != sha256(data):
            raise IntegrityError(
                f"{what}: member {name!r} does not match its recorded digest; the bundle was "
                "modified or damaged after it was written. Re-export it or copy it again"
            )
