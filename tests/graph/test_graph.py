"""The policy graph: JSON round trip, every validation failure, and the op set against the spec."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from rlport.errors import GraphError
from rlport.graph.graph import MAX_STATE_ELEMENTS, Graph, GraphInput, Node
from rlport.graph.reference import IMPLEMENTATIONS
from rlport.graph.schema import MAX_LSTM_LAYERS, OPS, REQUIRED, op_schema

FORMAT_MD = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"


def linear(x: str, y: str, weight: str = "w", bias: str | None = "b") -> Node:
    return Node("linear", (x,), (y,), params={"weight": weight} | ({"bias": bias} if bias else {}))


def mlp() -> Graph:
    return Graph(
        inputs=(GraphInput("obs", "observation"),),
        preprocess=(Node("cast", ("obs",), ("x",), attrs={"dtype": "float32"}),),
        policy=(linear("x", "h"), Node("tanh", ("h",), ("t",)), linear("t", "logits", "w2", None)),
        postprocess=(Node("categorical", ("logits",), ("action",)),),
        output="action",
    )


MLP_RANKS = {"w": 2, "b": 1, "w2": 2}


def recurrent() -> Graph:
    lstm_params = {
        "weight_ih.0": "wih0",
        "weight_hh.0": "whh0",
        "bias_ih.0": "bih0",
        "bias_hh.0": "bhh0",
        "weight_ih.1": "wih1",
        "weight_hh.1": "whh1",
        "bias_ih.1": "bih1",
        "bias_hh.1": "bhh1",
    }
    return Graph(
        inputs=(
            GraphInput("obs.image", "observation", key=("image",)),
            GraphInput("obs.goal", "observation", key=("nested", "goal")),
            GraphInput("h", "state", shape=(2, 8), batch_axis=1, output="h_out"),
            GraphInput("c", "state", shape=(2, 8), batch_axis=1, output="c_out", dtype="float64"),
            GraphInput("start", "episode_start"),
            GraphInput("mask", "action_mask", size=3),
        ),
        preprocess=(
            Node("divide", ("obs.image",), ("img",), attrs={"divisor": 255.0}),
            Node("flatten", ("img",), ("flat",)),
            Node("concat", ("flat", "obs.goal"), ("x",)),
        ),
        policy=(
            Node(
                "lstm",
                ("x", "h", "c", "start"),
                ("y", "h_out", "c_out"),
                params=lstm_params,
                attrs={"layers": 2, "hidden_size": 8},
            ),
            linear("y", "logits"),
            Node("categorical", ("logits", "mask"), ("action",)),
        ),
        output="action",
    )


RECURRENT_RANKS = {"w": 2, "b": 1} | {f"{kind}{k}": 2 for kind in ("wih", "whh") for k in (0, 1)}
RECURRENT_RANKS |= {f"{kind}{k}": 1 for kind in ("bih", "bhh") for k in (0, 1)}

GRAPHS = {"mlp": (mlp, MLP_RANKS), "recurrent-dict-masked": (recurrent, RECURRENT_RANKS)}


# ---- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "ranks"), GRAPHS.values(), ids=GRAPHS.keys())
def test_json_round_trip(make, ranks):
    graph = make()
    graph.validate(ranks)
    text = json.dumps(graph.to_json(), sort_keys=True)
    again = Graph.from_json(json.loads(text))
    assert again == graph
    assert json.dumps(again.to_json(), sort_keys=True) == text
    again.validate(ranks)


def test_json_layout_follows_the_spec():
    data = recurrent().to_json()
    assert set(data) == {"inputs", "preprocess", "policy", "postprocess", "output"}
    assert data["inputs"][0] == {"name": "obs.image", "role": "observation", "key": ["image"]}
    assert data["inputs"][2] == {
        "name": "h",
        "role": "state",
        "output": "h_out",
        "shape": [2, 8],
        "batch_axis": 1,
        "dtype": "float32",
    }
    assert data["inputs"][4] == {"name": "start", "role": "episode_start"}
    assert data["inputs"][5] == {"name": "mask", "role": "action_mask", "size": 3}
    assert mlp().to_json()["inputs"][0] == {"name": "obs", "role": "observation", "key": None}
    # params and attrs are left out when empty
    assert data["preprocess"][1] == {"op": "flatten", "inputs": ["img"], "outputs": ["flat"]}
    assert data["preprocess"][0]["attrs"] == {"divisor": 255.0}


def test_nodes_runs_the_stages_in_order():
    assert [node.op for node in mlp().nodes()] == ["cast", "linear", "tanh", "linear", "categorical"]


def test_resolved_attrs_fill_in_defaults():
    assert Node("softplus", ("x",), ("y",), attrs={"beta": 2.0}).resolved_attrs() == {"beta": 2.0, "threshold": 20.0}
    assert Node("conv2d", ("x",), ("y",)).resolved_attrs()["groups"] == 1


# ---- validation failures ---------------------------------------------------------------------------


def _with_node(index: int, **changes) -> Graph:
    graph = mlp()
    nodes = list(graph.nodes())
    nodes[index] = replace(nodes[index], **changes)
    return Graph(
        graph.inputs, graph.output, preprocess=tuple(nodes[:1]), policy=tuple(nodes[1:4]), postprocess=(nodes[4],)
    )


def _with_inputs(*inputs: GraphInput) -> Graph:
    return replace(mlp(), inputs=(GraphInput("obs", "observation"), *inputs))


STATE = {"shape": (1, 4), "batch_axis": 1}
INVALID = {
    "value-used-before-defined": (_with_node(2, inputs=("nope",)), r"node 2 \(tanh\): input 'nope' is used before"),
    "value-used-before-its-node": (_with_node(1, inputs=("t",)), "input 't' is used before it is defined"),
    "value-redefined": (_with_node(2, outputs=("x",)), "value 'x' is defined twice"),
    "input-redefined": (_with_inputs(GraphInput("obs", "episode_start")), "graph input 'obs' is defined twice"),
    "output-never-computed": (replace(mlp(), output="ghost"), "output 'ghost' is never computed"),
    "state-output-never-computed": (
        _with_inputs(GraphInput("hidden", "state", output="h_out", **STATE)),
        "state 'hidden': its output 'h_out' is never computed",
    ),
    "unknown-op": (_with_node(2, op="swish"), r"unknown op 'swish'; format 1.0 supports: .*linear.*tanh"),
    "unknown-attr": (_with_node(2, attrs={"alpha": 1.0}), r"node 2 \(tanh\).*no attribute\(s\) \['alpha'\]"),
    "missing-required-attr": (_with_node(0, attrs={}), r"op 'cast' needs attribute\(s\) \['dtype'\]"),
    "missing-param": (_with_node(1, params={"bias": "b"}), "missing parameter 'weight'"),
    "unknown-param": (
        _with_node(1, params={"weight": "w", "scale": "b"}),
        r"unknown parameter role\(s\) \['scale'\]; takes \['bias', 'weight'\]",
    ),
    "missing-tensor": (_with_node(1, params={"weight": "nope"}), "names tensor 'nope', which the bundle lacks"),
    "wrong-rank": (_with_node(1, params={"weight": "b"}), r"parameter 'weight' \('b'\) must have rank 2, found 1"),
    "too-many-inputs": (_with_node(2, inputs=("x", "h")), r"takes 1..1 inputs, found 2"),
    "no-inputs": (_with_node(2, inputs=()), r"takes 1..1 inputs, found 0"),
    "too-many-outputs": (_with_node(2, outputs=("t", "u")), "gives 1 outputs, found 2"),
    "no-observation": (replace(mlp(), inputs=(GraphInput("start", "episode_start"),)), "no observation input"),
    "two-episode-starts": (
        _with_inputs(GraphInput("s1", "episode_start"), GraphInput("s2", "episode_start")),
        "more than one 'episode_start'",
    ),
    "two-masks": (
        _with_inputs(GraphInput("m1", "action_mask", size=2), GraphInput("m2", "action_mask", size=2)),
        "more than one 'action_mask'",
    ),
    "unknown-role": (_with_inputs(GraphInput("goal", "goal")), "unknown role 'goal'"),
    "state-bad-dtype": (
        _with_inputs(GraphInput("hidden", "state", output="t", dtype="int8", **STATE)),
        "dtype must be float16, float32 or float64",
    ),
    "state-bad-batch-axis": (
        _with_inputs(GraphInput("hidden", "state", output="t", shape=(4,), batch_axis=2)),
        r"batch_axis must be an integer in 0..1, found 2",
    ),
    "mask-without-size": (_with_inputs(GraphInput("m", "action_mask")), "positive integer 'size'"),
    "input-without-name": (_with_inputs(GraphInput("", "episode_start")), "needs a non-empty name, found ''"),
    "observation-key-not-names": (
        replace(mlp(), inputs=(GraphInput("obs", "observation", key=("",)),)),
        "key: expected a list of non-empty names",
    ),
    "attr-wrong-type": (_with_node(2, op="softmax", attrs={"axis": "last"}), "'axis' must be an integer"),
    "attr-bool-for-number": (_with_node(2, op="elu", attrs={"alpha": True}), "'alpha' must be a number"),
    "attr-not-a-choice": (_with_node(2, op="gelu", attrs={"approximate": "exact"}), r"one of \['none', 'tanh'\]"),
    "lstm-layers-not-int": (
        _with_node(
            2, op="lstm", inputs=("h", "h", "h", "h"), outputs=("a", "b", "c"), attrs={"layers": "2", "hidden_size": 4}
        ),
        "'layers' must be a positive integer",
    ),
    "output-not-a-name": (replace(mlp(), output=None), "output must be a value name"),
    "lstm-too-many-layers": (
        _with_node(
            2, op="lstm", inputs=("h", "h", "h", "h"), outputs=("a", "b", "c"), attrs={"layers": 1025, "hidden_size": 4}
        ),
        r"'layers' must be a positive integer \(at most 1024\), found 1025",
    ),
}


@pytest.mark.parametrize(("graph", "message"), INVALID.values(), ids=INVALID.keys())
def test_validate_rejects(graph, message):
    with pytest.raises(GraphError, match=message):
        graph.validate(MLP_RANKS)


def test_validate_accepts_an_absent_optional_param_and_optional_mask():
    graph = _with_node(1, params={"weight": "w"})
    graph.validate(MLP_RANKS)
    mlp().validate(MLP_RANKS)


def test_lstm_param_roles_depend_on_layers():
    node = recurrent().policy[0]
    graph = recurrent()
    ranks = dict(RECURRENT_RANKS)
    del ranks["bhh1"]
    with pytest.raises(GraphError, match=r"node 3 \(lstm\): parameter 'bias_hh.1'"):
        graph.validate(ranks)
    assert set(op_schema("lstm").param_roles(node.attrs)) == set(node.params)


# ---- from_json failures -----------------------------------------------------------------------------


def _json(**changes) -> dict:
    data = mlp().to_json()
    data.update(changes)
    return data


def _node_json(**changes) -> dict:
    return _json(policy=[{"op": "tanh", "inputs": ["x"], "outputs": ["t"]} | changes])


BAD_JSON = {
    "not-an-object": ([], "must be a JSON object, found list"),
    "no-inputs": (_json(inputs=[]), "non-empty 'inputs' list"),
    "inputs-not-a-list": (_json(inputs={"obs": {}}), "non-empty 'inputs' list"),
    "no-output": (_json(output=None), "needs an 'output' value name"),
    "stage-not-a-list": (_json(policy={}), "graph 'policy' must be a list"),
    "node-not-an-object": (_json(policy=["tanh"]), "must be an object with an 'op' name"),
    "node-without-op": (_node_json(op=None), "must be an object with an 'op' name"),
    "node-inputs-not-names": (_node_json(inputs="x"), "node 'tanh' inputs: expected a list of non-empty names"),
    "node-empty-output-name": (_node_json(outputs=[""]), "node 'tanh' outputs: expected a list of non-empty names"),
    "node-params-not-names": (_node_json(params={"weight": 3}), "'params' must map roles to tensor names"),
    "node-attrs-not-object": (_node_json(attrs=[1]), "'attrs' must be an object"),
    "input-without-name": (_json(inputs=[{"role": "observation"}]), "graph input must be an object with a 'name'"),
    "input-unknown-role": (_json(inputs=[{"name": "obs", "role": "reward"}]), "unknown role 'reward'"),
    "input-bad-key": (_json(inputs=[{"name": "obs", "role": "observation", "key": "image"}]), "key: expected a list"),
    "state-bad-shape": (
        _json(inputs=[{"name": "h", "role": "state", "shape": [0, 4], "output": "h2"}]),
        "shape must be a list of positive integers",
    ),
    "state-shape-not-a-list": (
        _json(inputs=[{"name": "h", "role": "state", "shape": 4, "output": "h2"}]),
        "shape must be a list of positive integers",
    ),
    "state-without-output": (_json(inputs=[{"name": "h", "role": "state", "shape": [4]}]), "must name its 'output'"),
    "state-bool-batch-axis": (
        _json(inputs=[{"name": "h", "role": "state", "shape": [4], "output": "h2", "batch_axis": True}]),
        "batch_axis must be an integer",
    ),
    "mask-bad-size": (_json(inputs=[{"name": "m", "role": "action_mask", "size": 0}]), "positive integer 'size'"),
    "graph-unknown-field": (_json(loop=True), r"the graph has field\(s\) \['loop'\] that this rlport does not know"),
    "node-unknown-field": (_node_json(when="episode_start"), r"node 'tanh' has field\(s\) \['when'\]"),
    "input-unknown-field": (
        _json(inputs=[{"name": "obs", "role": "observation", "key": None, "scale": 2}]),
        r"graph input 'obs' has field\(s\) \['scale'\].*pip install -U rlport",
    ),
}


@pytest.mark.parametrize(("data", "message"), BAD_JSON.values(), ids=BAD_JSON.keys())
def test_from_json_rejects(data, message):
    with pytest.raises(GraphError, match=message):
        Graph.from_json(data)


# ---- the op set: schema, numpy runtime and spec agree ----------------------------------------------


def test_every_op_has_a_numpy_implementation_and_vice_versa():
    assert set(OPS) - set(IMPLEMENTATIONS) == set(), "ops without a numpy implementation"
    assert set(IMPLEMENTATIONS) - set(OPS) == set(), "numpy implementations of ops the format lacks"


def test_schema_entries_are_consistent():
    for name, schema in OPS.items():
        assert schema.name == name
        assert set(schema.optional_params) <= set(schema.params), name
        assert schema.inputs[0] <= schema.inputs[1], name
        assert all(0 <= i < schema.inputs[1] for i in schema.optional_inputs), name


def _spec_ops() -> dict[str, dict]:
    """Section 4.1 of docs/FORMAT.md: op -> {"table", "params", "attrs"} from its hand-written tables and prose.

    The generated op table (between its markers) is left out: it is checked against the schema by
    tests/graph/test_format_table.py, and counting it here would let it stand in for the semantics.
    """
    section = FORMAT_MD.read_text(encoding="utf-8").split("### 4.1", 1)[1].split("\n## 5", 1)[0]
    before, generated = section.split("<!-- op table: generated by", 1)
    assert "<!-- end of the generated op table -->" in generated, "the end marker of the generated op table"
    section = before + generated.split("<!-- end of the generated op table -->", 1)[1]
    ops: dict[str, dict] = {}
    title, header = "", None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            if line.endswith(":"):
                title = line[:-1]
            if line.startswith("Activations and their attrs:"):
                title = "Activations"
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(line) <= set("|-"):
            continue
        row = dict(zip(header, cells, strict=True))
        names = re.findall(r"^`([a-z_0-9]+)`$", row["op"])
        if names:
            ops[names[0]] = {
                "table": title,
                "params": set(re.findall(r"`([a-z_.]+)`", row["params"])),
                "attrs": set(re.findall(r"`([a-z_]+)`", row.get("attrs", ""))),
            }
    prose = section.split("Activations and their attrs:", 1)[1].split("\n\n", 1)[0]
    # `name` optionally followed by its attrs in parentheses (consumed, so attr names are skipped).
    for match in re.finditer(r"`([a-z_0-9]+)`(?:\s*\(([^)]*)\))?", prose):
        ops[match.group(1)] = {
            "table": "Activations",
            "params": {"weight"} if match.group(1) == "prelu" else set(),
            "attrs": set(re.findall(r"`([a-z_]+)`", match.group(2) or "")),
        }
    return ops


def test_spec_op_tables_list_exactly_the_schema_ops():
    spec = _spec_ops()
    assert len(spec) > 40, "the FORMAT.md parser found too few ops"
    assert set(spec) - set(OPS) == set(), "ops in FORMAT.md 4.1 that the schema lacks"
    assert set(OPS) - set(spec) == set(), "schema ops that FORMAT.md 4.1 does not document"


@pytest.mark.parametrize("op", sorted(OPS))
def test_spec_documents_each_ops_attrs_and_params(op):
    entry = _spec_ops()[op]
    assert entry["attrs"] == set(OPS[op].attrs), f"attrs of {op!r}: FORMAT.md vs schema"
    roles = OPS[op].param_roles({"layers": 1} if op == "lstm" else {})
    assert {role.replace(".k", ".0") for role in entry["params"]} == set(roles), f"params of {op!r}"


def test_spec_action_selection_ops_are_the_stochastic_ones():
    spec = _spec_ops()
    assert {op for op, entry in spec.items() if entry["table"] == "Action selection (*stochastic*)"} == {
        op for op, schema in OPS.items() if schema.stochastic
    }


def test_unknown_op_message_lists_every_supported_op():
    with pytest.raises(GraphError) as info:
        op_schema("conv3d")
    assert all(op in str(info.value) for op in OPS)
    assert "pip install -U rlport" in str(info.value)


def test_limits_are_the_ones_in_the_spec():
    text = " ".join(FORMAT_MD.read_text(encoding="utf-8").split())
    assert MAX_STATE_ELEMENTS == 2**24 and MAX_LSTM_LAYERS == 1024
    assert "2^24 (16,777,216) elements in a space (all leaves of a `dict` space together) and in a `state`" in text
    assert "at most 1024 `lstm` layers" in text


def test_graph_limits_are_the_ones_in_the_spec():
    from rlport.bundle import spaces
    from rlport.graph import infer

    text = " ".join(FORMAT_MD.read_text(encoding="utf-8").split())
    assert (infer.MAX_VALUE_ELEMENTS, infer.MAX_GRAPH_ELEMENTS, infer.MAX_GRAPH_FLOPS) == (2**24, 2**26, 2**34)
    assert "more than 2^24 elements per batch row or more than 8 axes, all values together more than 2^26" in text
    assert "more than 2^34 multiply-adds per batch row" in text and infer.MAX_RANK == 8
    assert (spaces.MAX_ELEMENTS, spaces.MAX_LEAVES, spaces.MAX_DEPTH, spaces.MAX_DISCRETE) == (2**24, 1024, 16, 2**31)
    assert "at most 1024 leaves and 16 nested levels in a `dict` space" in text
    assert " ".join(sorted(infer.CAST_DTYPES)) == " ".join(
        sorted("bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64".split())
    )


def test_required_attrs_are_marked():
    assert OPS["threshold"].attrs == {"threshold": REQUIRED, "value": REQUIRED}


# ---- attribute types and input fields (FORMAT.md 4.1, issue 12) ------------------------------------

WRONG_TYPES = {
    "divisor-string": (Node("divide", ("x",), ("y",), attrs={"divisor": "255"}), "'divisor' must be a number"),
    "n-float": (Node("one_hot", ("x",), ("y",), attrs={"n": 16.0}), "'n' must be an integer, found 16.0"),
    "n-bool": (Node("greedy", ("x",), ("y",), attrs={"n": True}), "'n' must be an integer"),
    "stride-triple": (Node("conv2d", ("x",), ("y",), attrs={"stride": [4, 4, 4]}), "must be a list of 2 integers"),
    "sizes-not-a-list": (Node("multi_one_hot", ("x",), ("y",), attrs={"sizes": 3}), "must be a list of integers"),
    "shape-of-floats": (Node("reshape", ("x",), ("y",), attrs={"shape": [2.0, -1]}), "must be a list of integers"),
    "dtype-not-a-string": (Node("cast", ("x",), ("y",), attrs={"dtype": 32}), "must be a dtype name"),
    "clip-min-string": (Node("clip", ("x",), ("y",), attrs={"min": "0", "max": 1}), "'min' must be a number"),
    "flag-as-integer": (Node("gsde", ("x", "z"), ("y",), attrs={"use_expln": 1}), "'use_expln' must be a boolean"),
    "layers-zero": (Node("lstm", ("x",) * 4, ("y",) * 3, attrs={"layers": 0, "hidden_size": 2}), "positive integer"),
}


@pytest.mark.parametrize(("node", "message"), WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_attributes_of_the_wrong_json_type_are_rejected(node, message):
    with pytest.raises(GraphError, match=rf"^op '{node.op}': attribute .*{re.escape(message)}"):
        node.resolved_attrs()


def test_attribute_messages_name_the_node_when_validating():
    graph = _with_node(0, attrs={"dtype": 4})
    with pytest.raises(GraphError, match=r"^node 0 \(cast\): attribute 'dtype' must be a dtype name"):
        graph.validate(MLP_RANKS)


def test_numbers_accept_integers_and_types_accept_their_defaults():
    assert Node("divide", ("x",), ("y",), attrs={"divisor": 255}).resolved_attrs() == {"divisor": 255}
    assert Node("conv2d", ("x",), ("y",), attrs={"stride": (2, 2)}).resolved_attrs()["stride"] == (2, 2)


FOREIGN_FIELDS = {
    "observation-with-shape": ({"name": "obs", "role": "observation", "shape": [3]}, "['shape']"),
    "observation-with-dtype": ({"name": "obs", "role": "observation", "key": None, "dtype": "float32"}, "['dtype']"),
    "state-with-key": ({"name": "h", "role": "state", "shape": [4], "output": "h2", "key": ["h"]}, "['key']"),
    "state-with-size": ({"name": "h", "role": "state", "shape": [4], "output": "h2", "size": 2}, "['size']"),
    "mask-with-output": ({"name": "m", "role": "action_mask", "size": 2, "output": "m2"}, "['output']"),
    "episode-start-with-key": ({"name": "s", "role": "episode_start", "key": None}, "['key']"),
}


@pytest.mark.parametrize(("data", "fields"), FOREIGN_FIELDS.values(), ids=FOREIGN_FIELDS.keys())
def test_an_input_carrying_fields_of_another_role_is_rejected(data, fields):
    with pytest.raises(GraphError, match=rf"of role '{data['role']}' takes no field\(s\) {re.escape(fields)}"):
        GraphInput.from_json(data)


@pytest.mark.parametrize("alias", ["float", "<f4", "f4", "single", "Float32"])
def test_a_state_dtype_is_an_exact_name(alias):
    with pytest.raises(GraphError, match="a state's dtype must be float16, float32 or float64"):
        GraphInput.from_json({"name": "h", "role": "state", "shape": [4], "output": "h2", "dtype": alias})
