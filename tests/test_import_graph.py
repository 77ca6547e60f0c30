"""The import graph between rlport's subpackages: the core stays the core, and no new cycle appears.

Every ``from rlport... import`` and ``import rlport...`` in src/rlport is read (module level and inside
functions alike). ``graph`` imports only ``errors``; ``errors`` imports nothing of rlport; ``bundle``
imports only ``graph`` and ``errors`` (and ``runtimes`` for ``Bundle.policy()``, a known exception).
The cycles that remain are listed in docs/ARCHITECTURE.md and here; the graph-core issue removes them,
and this test fails on any new one.
"""

from __future__ import annotations

import ast
import sys
from itertools import permutations
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rlport"
KNOWN_CYCLES = {
    frozenset({"bundle", "runtimes"}),  # Bundle.policy() builds a numpy policy
    frozenset({"runtimes", "exporters"}),  # the onnx backend runs the ONNX exporter
    frozenset({"envs", "importers"}),  # gym spaces, renamed env ids
    frozenset({"importers", "verify"}),  # recording verification data at import
    frozenset({"cli", "demo"}),  # the progress bar
    frozenset({"cli", "packed"}),  # the packed runner's warnings
}


def _unit(path: Path) -> str:
    """The subpackage (``bundle``) or top-level module (``envs``) a file belongs to; ``(root)`` for __init__."""
    relative = path.relative_to(PACKAGE)
    if len(relative.parts) > 1:
        return relative.parts[0]
    return "(root)" if relative.stem == "__init__" else relative.stem


def _target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "rlport":
        return None
    return parts[1] if len(parts) > 1 else "(root)"


def edges() -> dict[str, set[str]]:
    """Which unit imports which (units: subpackages and top-level modules of rlport)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _unit(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                target = _target(name)
                if target is not None and target != source:
                    found.setdefault(source, set()).add(target)
    return found


def test_the_core_imports_nothing_above_it():
    graph = edges()
    assert graph.get("errors", set()) == set()
    assert graph.get("graph", set()) <= {"errors"}
    assert graph.get("bundle", set()) <= {"errors", "graph", "runtimes"}, graph.get("bundle")


def test_no_cycle_between_subpackages_but_the_known_ones():
    graph = edges()
    cycles = {frozenset({a, b}) for a, b in permutations(graph, 2) if b in graph[a] and a in graph.get(b, set())}
    assert cycles <= KNOWN_CYCLES, f"new import cycles: {sorted(map(sorted, cycles - KNOWN_CYCLES))}"


def test_the_reader_of_the_import_graph_sees_imports(tmp_path, monkeypatch):
    """The check can fail: a module of ``graph`` importing ``bundle`` is seen."""
    fake = tmp_path / "rlport"
    (fake / "graph").mkdir(parents=True)
    (fake / "graph" / "x.py").write_text("def f():\n    from rlport.bundle.bundle import Bundle\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert edges() == {"graph": {"bundle"}}
