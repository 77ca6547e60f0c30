"""The one table of backends (what runs a bundle) and of export formats (what a bundle is written as).

``rlport.load(backend=)``, ``rlport run --backend``, ``rlport export --format``, ``rlport
requirements/pack --backend`` and every "unknown backend" message read these tables. Each entry
names its code by a dotted path written here (never one taken from user input) and imports it
only when used, so reading the table costs nothing and needs numpy alone.

Backends and export formats are two sibling tables, not one: a backend returns a policy with
``predict`` and an export format writes files. They overlap in one name only (``onnx``: the onnx
backend runs what the ONNX export writes), and neither numpy nor torch writes a file, nor can
``sb3`` or ``zoo`` act. One table would need flags that hold for half of its rows.

Adding a backend (a TFLite one, say) is one new module with a policy class taking ``(bundle, seed=)``
(and ``device=`` when it has devices) plus one :class:`Backend` row in :data:`BACKENDS`.

Example:
    >>> [backend.name for backend in BACKENDS.values()]
    ['numpy', 'torch', 'onnx', 'c']
    >>> backend("numpy").extra is None
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from rlport.errors import UnsupportedError, require

__all__ = [
    "Backend",
    "ExportFormat",
    "BACKENDS",
    "EXPORT_FORMATS",
    "backend",
    "backend_names",
    "export_format",
    "export_format_names",
    "packable_backends",
    "check_ops",
    "supported_ops",
    "load_object",
    "resolve",
    "make_policy",
]


@dataclass(frozen=True)
class Backend:
    """One way to run a bundle.

    Attributes:
        name: what ``backend=`` and ``--backend`` take.
        loader: ``"module:Class"``, the policy class, called as ``Class(bundle, seed=...)`` (and ``device=...``).
        extra: the smallest ``rlport[EXTRA]`` that installs what it needs (None: numpy alone).
        description: one line for help texts.
        ops: ``"module:TABLE"``, the backend's op table (op name -> implementation).
        also_runs: ops the backend runs without a table entry (the onnx backend writes ``identity``
            as an alias and a Gaussian as its mean, and draws samples with numpy).
        needs: the modules it imports, checked before loading so a missing one names :attr:`extra`.
        has_devices: whether it takes ``device=`` (others run on the CPU).
        packable: whether ``rlport pack`` can target it (its requirements are what ``requirements`` lists).
        export_format: the :data:`EXPORT_FORMATS` name of the file it runs, if any.
    """

    name: str
    loader: str
    extra: str | None
    description: str
    ops: str
    also_runs: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    has_devices: bool = False
    packable: bool = False
    export_format: str | None = None


@dataclass(frozen=True)
class ExportFormat:
    """One file format a bundle is exported to.

    Attributes:
        name: what ``--format`` takes.
        writer: ``"module:function"``, called as ``function(bundle, output, ...)``.
        extra: the smallest ``rlport[EXTRA]`` that installs what it needs (None: numpy alone).
        description: one line for help texts.
    """

    name: str
    writer: str
    extra: str | None
    description: str


BACKENDS: dict[str, Backend] = {
    entry.name: entry
    for entry in (
        Backend(
            "numpy", "rlport.backends.numpy:NumpyPolicy", None, "the reference runtime, numpy only",
            ops="rlport.graph.reference:IMPLEMENTATIONS", packable=True,
        ),
        Backend(
            "torch", "rlport.backends.torch.runtime:TorchPolicy", "torch",
            "a torch.nn.Module (CPU, CUDA, MPS); torch.export and torch.compile work on it",
            ops="rlport.backends.torch.ops:IMPLEMENTATIONS", needs=("torch",), has_devices=True,
        ),
        Backend(
            "onnx", "rlport.backends.onnx.runtime:OnnxPolicy", "onnx",
            "onnxruntime over the ONNX export; sampling draws with numpy",
            ops="rlport.backends.onnx.ops:EMITTERS", also_runs=("identity", "gaussian", "gsde"),
            needs=("onnx", "onnxruntime"), export_format="onnx",
        ),
        Backend(
            "c", "rlport.backends.c.runtime:CPolicy", None,
            "the C99 export compiled with the system C compiler (cc, gcc, clang or $CC), called with ctypes",
            ops="rlport.backends.c.ops:EMITTERS", export_format="c",
        ),
    )
}  # fmt: skip
"""Every backend, in the order help texts and error messages list them (numpy first: the default)."""

EXPORT_FORMATS: dict[str, ExportFormat] = {
    entry.name: entry
    for entry in (
        ExportFormat("onnx", "rlport.backends.onnx.export:export_onnx", "onnx", "one .onnx file"),
        ExportFormat("sb3", "rlport.frameworks.sb3.to_sb3:export_sb3", "sb3", "a .zip for ALGO.load (+ VecNormalize)"),
        ExportFormat("zoo", "rlport.frameworks.zoo.export:export_zoo", "sb3", "an RL Zoo run folder for rl_zoo3.enjoy"),
        ExportFormat("c", "rlport.backends.c.export:export_c", None, "C99 source: rlport_policy.h, .c and a README"),
    )
}
"""Every export format, in the order ``rlport export --help`` lists them (onnx first: the default)."""


def backend_names() -> tuple[str, ...]:
    """The names of :data:`BACKENDS`, in order."""
    return tuple(BACKENDS)


def export_format_names() -> tuple[str, ...]:
    """The names of :data:`EXPORT_FORMATS`, in order."""
    return tuple(EXPORT_FORMATS)


def packable_backends() -> tuple[str, ...]:
    """The backends ``rlport pack`` and ``rlport requirements`` can target."""
    return tuple(name for name, entry in BACKENDS.items() if entry.packable)


def backend(name: object) -> Backend:
    """The backend called ``name``.

    Raises:
        UnsupportedError: no backend has that name; the message lists those that do.
    """
    if not isinstance(name, str) or name not in BACKENDS:
        raise UnsupportedError(f"backend {name!r:.100} is not available; supported: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def export_format(name: object) -> ExportFormat:
    """The export format called ``name``.

    Raises:
        UnsupportedError: no format has that name; the message lists those that do.
    """
    if not isinstance(name, str) or name not in EXPORT_FORMATS:
        raise UnsupportedError(f"export format {name!r:.100} is not available; supported: {', '.join(EXPORT_FORMATS)}")
    return EXPORT_FORMATS[name]


def load_object(path: str) -> Any:
    """The object a ``"module:attribute"`` path of these tables names, its module imported now."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def supported_ops(entry: Backend) -> frozenset[str]:
    """The ops ``entry`` runs: its op table's names and :attr:`Backend.also_runs`."""
    table: Collection[str] = load_object(entry.ops)
    return frozenset(table) | frozenset(entry.also_runs)


def check_ops(entry: Backend, graph: Any) -> None:
    """Refuse a graph that uses an op ``entry`` does not implement, naming the op and the backend.

    Raises:
        UnsupportedError: the first such op (in graph order), the backends that run the graph, and what to do.
    """
    known = supported_ops(entry)
    lacking = [node.op for node in graph.nodes() if node.op not in known]
    if not lacking:
        return
    others = [name for name, other in BACKENDS.items() if other is not entry and not _lacks(other, graph)]
    hint = f"use backend={others[0]!r} instead" if others else "no registered backend runs this graph"
    raise UnsupportedError(f"op {lacking[0]!r:.100} is not implemented by the {entry.name} backend; {hint}")


def _lacks(entry: Backend, graph: Any) -> bool:
    """Whether ``entry`` lacks an op of ``graph`` (False when its op table cannot even be imported: unknown)."""
    try:
        known = supported_ops(entry)
    except ImportError:
        return True
    return any(node.op not in known for node in graph.nodes())


def resolve(name: object, device: object = "cpu") -> Backend:
    """The backend called ``name``, checked to run on ``device`` (before any file is read).

    Raises:
        UnsupportedError: an unknown backend, or a ``device`` other than the CPU for a backend without devices.
    """
    entry = backend(name)
    if not entry.has_devices and str(device) != "cpu":
        with_devices = " and ".join(other.name for other in BACKENDS.values() if other.has_devices) or "no"
        raise UnsupportedError(
            f"device={device!r:.100} applies to the {with_devices} backend; the {entry.name} backend runs on the CPU"
        )
    return entry


def make_policy(entry: Backend, bundle: Any, seed: int | None = None, device: str = "cpu") -> Any:
    """A policy of backend ``entry`` acting with ``bundle`` (what ``rlport.load`` returns).

    Raises:
        MissingDependencyError: a package the backend needs is not installed (the message names its extra).
        UnsupportedError: the graph uses an op the backend does not implement.
    """
    for module in entry.needs:
        require(module, entry.extra or "all", f"the {entry.name} backend")
    check_ops(entry, bundle.graph)
    policy_class: Callable[..., Any] = load_object(entry.loader)
    if entry.has_devices:
        return policy_class(bundle, seed=seed, device=device)
    return policy_class(bundle, seed=seed)
