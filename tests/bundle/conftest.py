"""Shared fixtures for the bundle tests: hand-made bundles (numpy only) and a raw ZIP writer.

The bundles are built from :class:`Graph` nodes and random weights, never from SB3 or torch,
so that the format tests depend only on what they test. The ZIP writer uses ``zipfile`` and
``hashlib`` directly, so that a test can craft a malformed file without the code under test.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rlport.backends.numpy import NumpyPolicy
from rlport.bundle.bundle import Bundle
from rlport.bundle.manifest import EnvSpec, ProbeInfo
from rlport.bundle.spaces import BoxSpec, DictSpec, DiscreteSpec
from rlport.graph.graph import Graph, GraphInput, Node

EPOCH = (1980, 1, 1, 0, 0, 0)


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _linear(rng, tensors, name, n_in, n_out, x, y, bias=True) -> Node:
    tensors[f"{name}.weight"] = _rand(rng, n_out, n_in)
    params = {"weight": f"{name}.weight"}
    if bias:
        tensors[f"{name}.bias"] = _rand(rng, n_out)
        params["bias"] = f"{name}.bias"
    return Node("linear", (x,), (y,), params=params)


def discrete_mlp(seed: int = 0) -> Bundle:
    """Box(4) -> linear/tanh/linear -> categorical over 3 actions."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        policy=(
            _linear(rng, tensors, "pi.0", 4, 8, "obs", "h0"),
            Node("tanh", ("h0",), ("h1",)),
            _linear(rng, tensors, "pi.2", 8, 3, "h1", "logits"),
            Node("categorical", ("logits",), ("action",)),
        ),
        output="action",
    )
    return Bundle(
        observation_space=BoxSpec.create(-10.0, 10.0, (4,)),
        action_space=DiscreteSpec(3),
        graph=graph,
        tensors=tensors,
        env=EnvSpec(id="CartPole-v1", max_episode_steps=500),
        provenance={"framework": "hand-made", "num_timesteps": 0},
        source={"framework": "tests"},
    )


def box_squashed(seed: int = 0) -> Bundle:
    """Box(3) -> linear -> gaussian -> tanh -> rescale_to_bounds to a Box(2) with uneven bounds."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {
        "log_std": np.full(2, -0.5, np.float32),
        "space.action.low": np.array([-2.0, 0.0], np.float32),
        "space.action.high": np.array([2.0, 1.0], np.float32),
    }
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        policy=(
            _linear(rng, tensors, "mu", 3, 2, "obs", "mean"),
            Node("gaussian", ("mean",), ("raw",), params={"log_std": "log_std"}),
        ),
        postprocess=(
            Node("tanh", ("raw",), ("squashed",)),
            Node(
                "rescale_to_bounds",
                ("squashed",),
                ("action",),
                params={"low": "space.action.low", "high": "space.action.high"},
            ),
        ),
        output="action",
    )
    return Bundle(
        observation_space=BoxSpec.create([-1.0, -np.inf, 0.0], [1.0, np.inf, 5.0], (3,)),
        action_space=BoxSpec.create([-2.0, 0.0], [2.0, 1.0], (2,)),
        graph=graph,
        tensors=tensors,
    )


def dict_concat(seed: int = 0) -> Bundle:
    """Dict(pos: Box(2), mode: Discrete(3)) -> one_hot + concat -> linear/relu/linear -> categorical."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    graph = Graph(
        inputs=(
            GraphInput("obs.pos", "observation", key=("pos",)),
            GraphInput("obs.mode", "observation", key=("mode",)),
        ),
        preprocess=(
            Node("one_hot", ("obs.mode",), ("mode_1h",), attrs={"n": 3}),
            Node("concat", ("obs.pos", "mode_1h"), ("features",)),
        ),
        policy=(
            _linear(rng, tensors, "pi.0", 5, 4, "features", "h0"),
            Node("relu", ("h0",), ("h1",)),
            _linear(rng, tensors, "pi.2", 4, 2, "h1", "logits"),
            Node("categorical", ("logits",), ("action",)),
        ),
        output="action",
    )
    space = DictSpec((("pos", BoxSpec.create(-1.0, 1.0, (2,))), ("mode", DiscreteSpec(3))))
    return Bundle(observation_space=space, action_space=DiscreteSpec(2), graph=graph, tensors=tensors)


def recurrent_lstm(seed: int = 0) -> Bundle:
    """Box(3) -> one-layer LSTM (hidden 4) with state inputs and episode_start -> categorical."""
    rng = np.random.default_rng(seed)
    hidden = 4
    tensors = {
        "lstm.weight_ih_l0": _rand(rng, 4 * hidden, 3),
        "lstm.weight_hh_l0": _rand(rng, 4 * hidden, hidden),
        "lstm.bias_ih_l0": _rand(rng, 4 * hidden),
        "lstm.bias_hh_l0": _rand(rng, 4 * hidden),
    }
    state = {"shape": (1, hidden), "batch_axis": 1}
    graph = Graph(
        inputs=(
            GraphInput("obs", "observation"),
            GraphInput("lstm_h", "state", output="lstm_h_out", **state),
            GraphInput("lstm_c", "state", output="lstm_c_out", **state),
            GraphInput("episode_start", "episode_start"),
        ),
        policy=(
            Node(
                "lstm",
                ("obs", "lstm_h", "lstm_c", "episode_start"),
                ("latent", "lstm_h_out", "lstm_c_out"),
                params={
                    "weight_ih.0": "lstm.weight_ih_l0",
                    "weight_hh.0": "lstm.weight_hh_l0",
                    "bias_ih.0": "lstm.bias_ih_l0",
                    "bias_hh.0": "lstm.bias_hh_l0",
                },
                attrs={"layers": 1, "hidden_size": hidden},
            ),
            _linear(rng, tensors, "pi", hidden, 2, "latent", "logits"),
            Node("categorical", ("logits",), ("action",)),
        ),
        output="action",
    )
    return Bundle(
        observation_space=BoxSpec.create(-1.0, 1.0, (3,)),
        action_space=DiscreteSpec(2),
        graph=graph,
        tensors=tensors,
    )


def image_cnn(seed: int = 0) -> Bundle:
    """uint8 image (3, 8, 8) -> divide -> conv2d -> relu -> flatten -> linear -> categorical."""
    rng = np.random.default_rng(seed)
    tensors = {"cnn.0.weight": _rand(rng, 2, 3, 3, 3), "cnn.0.bias": _rand(rng, 2)}
    graph = Graph(
        inputs=(GraphInput("obs", "observation"),),
        preprocess=(Node("divide", ("obs",), ("scaled",), attrs={"divisor": 255.0}),),
        policy=(
            Node(
                "conv2d",
                ("scaled",),
                ("c0",),
                params={"weight": "cnn.0.weight", "bias": "cnn.0.bias"},
                attrs={"stride": [2, 2], "padding": [1, 1]},
            ),
            Node("relu", ("c0",), ("c1",)),
            Node("flatten", ("c1",), ("flat",)),
            _linear(rng, tensors, "pi", 2 * 4 * 4, 4, "flat", "logits"),
            Node("categorical", ("logits",), ("action",)),
        ),
        output="action",
    )
    return Bundle(
        observation_space=BoxSpec.create(0, 255, (3, 8, 8), dtype="uint8"),
        action_space=DiscreteSpec(4),
        graph=graph,
        tensors=tensors,
    )


def with_probes(seed: int = 0) -> Bundle:
    """The discrete MLP with five parity probes recorded from its own deterministic actions."""
    bundle = discrete_mlp(seed)
    obs = np.random.default_rng(seed + 1).uniform(-1, 1, (5, 4)).astype(np.float32)
    action, _ = NumpyPolicy(bundle).predict(obs, deterministic=True)
    bundle.probes = {"obs": obs, "action": np.asarray(action, np.int64)}
    bundle.probe_info = ProbeInfo(5, False, "tests predict(deterministic=True)")
    return bundle


FACTORIES: dict[str, Callable[[int], Bundle]] = {
    "discrete-mlp": discrete_mlp,
    "box-squashed": box_squashed,
    "dict-concat": dict_concat,
    "recurrent-lstm": recurrent_lstm,
    "image-cnn": image_cnn,
    "with-probes": with_probes,
}


@pytest.fixture(params=list(FACTORIES), ids=list(FACTORIES))
def any_bundle(request) -> Bundle:
    """Each representative bundle in turn."""
    return FACTORIES[request.param]()


@pytest.fixture
def make_bundle() -> Callable[..., Bundle]:
    """``make_bundle(kind="discrete-mlp", seed=0)``: a fresh hand-made bundle."""

    def make(kind: str = "discrete-mlp", seed: int = 0) -> Bundle:
        return FACTORIES[kind](seed)

    return make


# ---- raw ZIP crafting -------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(
    members: list[tuple[str, bytes]],
    comment: bytes | None = None,
    compression: int = zipfile.ZIP_STORED,
) -> bytes:
    """A ZIP of ``members`` in order. ``comment=None`` writes a valid rlport comment for member 0."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.compress_type = compression
            archive.writestr(info, data)
        if comment is None:
            comment = b"rlport-bundle 1.0 sha256:" + sha256(members[0][1]).encode()
        archive.comment = comment
    return buffer.getvalue()


def canonical(data: object) -> bytes:
    """Canonical manifest bytes, built independently of rlport's own writer."""
    return (json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """A minimal safetensors writer (sorted names, contiguous offsets), independent of rlport."""
    header: dict[str, object] = {}
    chunks, offset = [], 0
    codes = {"float32": "F32", "float64": "F64", "int64": "I64"}
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": codes[tensors[name].dtype.name],
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


class Crafter:
    """Writes bundles by hand from a manifest dict and member bytes, recomputing what is asked."""

    zip_bytes = staticmethod(zip_bytes)
    canonical = staticmethod(canonical)
    sha256 = staticmethod(sha256)
    safetensors_bytes = staticmethod(safetensors_bytes)

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    def file(self, data: bytes, name: str | None = None) -> Path:
        """Write raw bytes to a fresh file."""
        path = self.directory / (name or f"raw-{self.count}.rlp")
        self.count += 1
        path.write_bytes(data)
        return path

    def members_of(self, bundle: Bundle) -> tuple[dict, dict[str, bytes]]:
        """A bundle's manifest dict and members, taken apart (via a normal save)."""
        path = self.directory / f"source-{self.count}.rlp"
        self.count += 1
        bundle.save(path)
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        manifest = json.loads(members.pop("manifest.json"))
        return manifest, members

    def write(
        self,
        manifest: dict | bytes,
        members: dict[str, bytes],
        *,
        fix_digests: bool = True,
        comment: bytes | None = None,
        extra: list[tuple[str, bytes]] = (),
    ) -> Path:
        """Write a bundle file; ``fix_digests`` recomputes the manifest's member digests."""
        if isinstance(manifest, dict):
            manifest = json.loads(json.dumps(manifest))
            if fix_digests:
                manifest["members"] = {n: {"sha256": sha256(d), "size": len(d)} for n, d in members.items()}
            manifest = canonical(manifest)
        return self.file(zip_bytes([("manifest.json", manifest), *members.items(), *extra], comment=comment))


@pytest.fixture
def crafter(tmp_path: Path) -> Crafter:
    return Crafter(tmp_path)
