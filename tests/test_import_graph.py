"""The import graph between rlport's units: layered, without a cycle (docs/ARCHITECTURE.md).

Every ``from rlport... import`` and ``import rlport...`` in src/rlport is read (module level and inside
functions alike). A unit is a subpackage (``backends``) or a top-level module (``envs``). Each unit
has a layer; a unit may import only units of lower layers, so no cycle can form, and the core
(``errors``, ``graph``, ``bundle``) imports nothing above it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rlport"
LAYERS = {
    "errors": 0,
    "_version": 0,
    "graph": 1,
    "bundle": 2,
    "deploy_pins": 1,
    "backends": 3,
    "readers": 3,
    "assemble": 4,
    "envs": 4,
    "deploy": 4,
    "verify": 5,
    "compression": 5,
    "frameworks": 6,
    "distillation": 6,
    "report": 6,
    "fleet": 6,
    "(root)": 7,
    "cli": 8,
    "__main__": 9,
}
"""The layers of docs/ARCHITECTURE.md: a unit imports only units of a lower layer."""


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


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every unit that can reach itself, with one path back to it (depth-first search)."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            unit, path = stack.pop()
            for nxt in sorted(graph.get(unit, ())):
                if nxt == start:
                    found.append(path + [start])
                    stack = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_every_unit_has_a_layer():
    units = {_unit(path) for path in PACKAGE.rglob("*.py")}
    assert units <= set(LAYERS), f"add these units to LAYERS and docs/ARCHITECTURE.md: {sorted(units - set(LAYERS))}"


def test_imports_point_down():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in edges().items()
        for target in targets
        if LAYERS.get(target, 99) >= LAYERS.get(source, -1)
    )
    assert upward == [], upward


def test_the_core_imports_nothing_above_it():
    graph = edges()
    assert graph.get("errors", set()) == set()
    assert graph.get("graph", set()) <= {"errors"}
    assert graph.get("bundle", set()) <= {"errors", "graph"}, graph.get("bundle")


def test_no_cycle_between_units():
    assert cycles(edges()) == []


def test_the_reader_of_the_import_graph_sees_imports(tmp_path, monkeypatch):
    """The checks can fail: a module of ``graph`` importing ``bundle`` is seen, and so is the cycle it makes."""
    fake = tmp_path / "rlport"
    (fake / "graph").mkdir(parents=True)
    (fake / "bundle").mkdir()
    (fake / "graph" / "x.py").write_text("def f():\n    from rlport.bundle.bundle import Bundle\n")
    (fake / "bundle" / "y.py").write_text("import rlport.graph.graph\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert edges() == {"graph": {"bundle"}, "bundle": {"graph"}}
    assert cycles(edges()) == [["bundle", "graph", "bundle"], ["graph", "bundle", "graph"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0] == ["a", "b", "c", "a"]
