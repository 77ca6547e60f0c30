"""Graph passes: the live nodes every backend runs (graph/passes.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rlport.graph import passes, schema
from rlport.graph.graph import Graph, GraphInput, Node
from rlport.graph.passes import graph_results, live_nodes


def gaussian_graph() -> Graph:
    """mean and log_std from two heads; an unused node; an identity before the output."""
    return Graph(
        inputs=(GraphInput("obs", "observation"),),
        policy=(
            Node("linear", ("obs",), ("mean",), params={"weight": "wm"}),
            Node("linear", ("obs",), ("log_std",), params={"weight": "ws"}),
            Node("tanh", ("obs",), ("unused",)),
            Node("gaussian", ("mean", "log_std"), ("raw",)),
        ),
        postprocess=(Node("identity", ("raw",), ("action",)),),
        output="action",
    )


def _plan(graph: Graph, deterministic: bool, needed=None) -> list[tuple[int, str, int | None]]:
    return [(s.index, s.node.op, s.passthrough) for s in live_nodes(graph, deterministic, needed)]


def test_acting_deterministically_skips_the_log_std_branch_and_dead_nodes():
    assert _plan(gaussian_graph(), True) == [(0, "linear", None), (3, "gaussian", 0), (4, "identity", 0)]


def test_sampling_computes_the_log_std_branch():
    assert _plan(gaussian_graph(), False) == [
        (0, "linear", None),
        (1, "linear", None),
        (3, "gaussian", None),
        (4, "identity", 0),
    ]


def test_needed_values_choose_the_nodes():
    assert _plan(gaussian_graph(), False, needed=["log_std"]) == [(1, "linear", None)]
    assert _plan(gaussian_graph(), True, needed=["unused", "mean"]) == [(0, "linear", None), (2, "tanh", None)]


def test_state_outputs_are_results_and_keep_their_nodes_alive():
    graph = Graph(
        inputs=(GraphInput("obs", "observation"), GraphInput("h", "state", shape=(2,), output="h2")),
        policy=(Node("tanh", ("h",), ("h2",)), Node("relu", ("obs",), ("action",))),
        output="action",
    )
    assert graph_results(graph) == ["action", "h2"]
    assert _plan(graph, True) == [(0, "tanh", None), (1, "relu", None)]


def test_pass_through_comes_from_the_schema_not_the_op_name(monkeypatch):
    relu = replace(schema.OPS["relu"], passthrough=0)
    monkeypatch.setitem(schema.OPS, "relu", relu)
    graph = replace(gaussian_graph(), postprocess=(Node("relu", ("raw",), ("action",)),))
    assert _plan(graph, True)[-1] == (4, "relu", 0)
    monkeypatch.setitem(schema.OPS, "identity", replace(schema.OPS["identity"], passthrough=None))
    assert _plan(gaussian_graph(), True)[-1] == (4, "identity", None)


@pytest.mark.parametrize(
    "module",
    ["rlport.backends.numpy", "rlport.backends.onnx.export", "rlport.backends.torch.module"],
)
def test_every_backend_prunes_with_the_one_pass(module):
    if module.endswith("torch_graph_module"):
        pytest.importorskip("torch")
    if module.endswith("onnx_export"):
        pytest.importorskip("onnx")
    imported = __import__(module, fromlist=["live_nodes"])
    assert imported.live_nodes is passes.live_nodes
    assert not hasattr(imported, "_live_steps") and not hasattr(imported, "_live_nodes")
