"""docs/FORMAT.md's per-op table is generated from graph/schema.py (tools/format_table.py) and kept equal."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from rlport.graph import graph as graph_module
from rlport.graph import schema
from rlport.graph.schema import ATTR_TYPES, OPS

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("format_table", ROOT / "tools" / "format_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table_in_format_md(tool) -> str:
    text = (ROOT / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    assert text.count(tool.BEGIN) == 1 and text.count(tool.END) == 1, "the table markers in docs/FORMAT.md"
    return text[text.index(tool.BEGIN) : text.index(tool.END) + len(tool.END)]


def test_format_md_holds_exactly_the_generated_table():
    tool = _tool()
    assert _table_in_format_md(tool) == tool.render(), "run: python tools/format_table.py --write"


def test_a_schema_change_shows_in_the_table(monkeypatch):
    tool = _tool()
    monkeypatch.setitem(OPS, "divide", replace(OPS["divide"], attr_types={"divisor": "integer"}))
    assert _table_in_format_md(tool) != tool.render()


def test_the_table_has_one_row_per_op_with_each_attribute():
    table = _tool().render()
    for name, op in OPS.items():
        (row,) = [line for line in table.splitlines() if line.startswith(f"| `{name}` |")]
        assert all(f"`{attr}`: {op.attr_type(attr)}, " in row for attr in op.attrs), name


def test_every_attribute_has_a_type_the_graph_checks():
    assert set(ATTR_TYPES) == set(graph_module._TYPE_CHECKS)
    for name, op in OPS.items():
        assert set(op.attr_types) <= set(op.attrs), name
        for attr in op.attrs:
            assert op.attr_type(attr) in ATTR_TYPES, (name, attr)
        for attr, default in op.attrs.items():
            if default is not schema.REQUIRED:
                ok, _ = graph_module._TYPE_CHECKS[op.attr_type(attr)]
                assert ok(default), f"{name}.{attr}: its default does not have its own type"


def test_a_required_attribute_without_a_declared_type_cannot_be_rendered():
    broken = replace(OPS["divide"], attr_types={})
    with pytest.raises(TypeError, match="declare it in attr_types"):
        broken.attr_type("divisor")
