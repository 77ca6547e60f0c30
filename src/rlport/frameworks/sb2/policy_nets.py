"""SB2's TensorFlow layers as graph nodes: dense layers, layer norm, ``nature_cnn`` and SB2's own LSTM cell.

Each function declares the TF variables it reads on a :class:`~rlport.frameworks.sb2.policy_params.Layout`
(``declare_*``, in SB2's creation order) and emits the nodes from the resolved values (``emit_*``),
converting TF layouts to the graph's: dense kernels ``(in, out)`` become ``(out, in)``, NHWC conv
kernels ``(kh, kw, in, out)`` become ``(out, in, kh, kw)``, and the LSTM's gate blocks (i, f, o, u)
become torch's (i, f, g, o).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlport.frameworks.sb2.policy_params import Layout
from rlport.graph.builder import GraphBuilder

__all__ = [
    "Act",
    "declare_dense",
    "emit_dense",
    "declare_cnn",
    "emit_cnn",
    "cnn_output_size",
    "declare_lstm",
    "emit_lstm",
    "LN_EPSILON",
]

Act = tuple[str, dict[str, float], Any]
"""An activation: graph op, its attributes, the torch class SB3 would use (see ``policy_params.ACTIVATIONS``)."""

LN_EPSILON = 1e-12
"""``tf.contrib.layers.layer_norm``'s variance epsilon (TF 1.x), used by SB2's ``layer_norm=True`` MLPs."""


def declare_dense(layout: Layout, scope: str, n_in: int, n_out: int, kind: str, needed: bool = True) -> None:
    """A dense layer's variables: ``kind`` ``"linear"`` (tf_layers.linear: w, b), ``"dense"`` (tf.layers.dense:
    kernel, bias) or ``"fc"`` (contrib fully_connected: weights, biases)."""
    w, b = {"linear": ("w", "b"), "dense": ("kernel", "bias"), "fc": ("weights", "biases")}[kind]
    layout.add(f"{scope}/{w}", (n_in, n_out), needed)
    layout.add(f"{scope}/{b}", (n_out,), needed)


def declare_layer_norm(layout: Layout, scope: str, n: int, needed: bool = True) -> None:
    """``tf.contrib.layers.layer_norm(center=True, scale=True)``: beta, then gamma."""
    layout.add(f"{scope}/beta", (n,), needed)
    layout.add(f"{scope}/gamma", (n,), needed)


def emit_dense(b: GraphBuilder, x: str, values: dict[str, np.ndarray], scope: str, kind: str, name: str) -> str:
    """``x @ kernel + bias`` as a ``linear`` node with tensors ``name.weight`` / ``name.bias``."""
    w, bias = {"linear": ("w", "b"), "dense": ("kernel", "bias"), "fc": ("weights", "biases")}[kind]
    params = {
        "weight": b.tensor(f"{name}.weight", values[f"{scope}/{w}"].T),
        "bias": b.tensor(f"{name}.bias", values[f"{scope}/{bias}"].reshape(-1)),
    }
    return b.add("linear", [x], params)


def emit_layer_norm(b: GraphBuilder, x: str, values: dict[str, np.ndarray], scope: str, name: str) -> str:
    params = {
        "weight": b.tensor(f"{name}.weight", values[f"{scope}/gamma"]),
        "bias": b.tensor(f"{name}.bias", values[f"{scope}/beta"]),
    }
    return b.add("layer_norm", [x], params, {"epsilon": LN_EPSILON, "axes": 1})


def emit_act(b: GraphBuilder, x: str, act: Act) -> str:
    op, attrs, _ = act
    return x if op == "identity" else b.add(op, [x], attrs=dict(attrs))


# ---- nature_cnn ------------------------------------------------------------------------------

_CNN = (("c1", 32, 8, 4), ("c2", 64, 4, 2), ("c3", 64, 3, 1))
"""nature_cnn's conv layers: scope, filters, kernel size, stride (VALID padding)."""


def cnn_output_size(height: int, width: int) -> tuple[int, int]:
    for _, _, size, stride in _CNN:
        height, width = (height - size) // stride + 1, (width - size) // stride + 1
    return height, width


def declare_cnn(layout: Layout, scope: str, shape: tuple[int, ...]) -> int:
    """nature_cnn's variables for an NHWC image of ``shape`` (H, W, C); returns its output width (512)."""
    channels = shape[2]
    for name, filters, size, _ in _CNN:
        layout.add(f"{scope}{name}/w", (size, size, channels, filters))
        layout.add(f"{scope}{name}/b", (1, filters, 1, 1))  # conv(..., one_dim_bias=False)
        channels = filters
    height, width = cnn_output_size(shape[0], shape[1])
    declare_dense(layout, f"{scope}fc1", height * width * channels, 512, "linear")
    return 512


def emit_cnn(
    b: GraphBuilder, x: str, values: dict[str, np.ndarray], scope: str, shape: tuple[int, ...], name: str
) -> str:
    """nature_cnn on ``x`` (batch, H, W, C) float: relu(conv c1..c3), flatten in NHWC order, relu(fc1).

    The graph's conv2d is channel-first; the first conv reads the HWC image as one channel of
    ``(H, W * C)`` with a ``(8, 8 * C)`` kernel and stride ``(4, 4 * C)``, which is exactly TF's NHWC
    convolution; the next two are channel-first, and fc1's columns are permuted from NHWC to NCHW order.
    """
    height, width, channels = shape
    x = b.add("reshape", [x], attrs={"shape": [1, height, width * channels]})
    for k, (layer, filters, size, stride) in enumerate(_CNN):
        kernel = values[f"{scope}{layer}/w"]
        if k == 0:
            weight = kernel.transpose(3, 0, 1, 2).reshape(filters, 1, size, size * channels)
            strides = [stride, stride * channels]
        else:
            weight, strides = kernel.transpose(3, 2, 0, 1), [stride, stride]
        params = {
            "weight": b.tensor(f"{name}.{layer}.weight", weight),
            "bias": b.tensor(f"{name}.{layer}.bias", values[f"{scope}{layer}/b"].reshape(-1)),
        }
        x = b.add("relu", [b.add("conv2d", [x], params, {"stride": strides})])
    x = b.add("flatten", [x])
    out_h, out_w = cnn_output_size(height, width)
    fc = values[f"{scope}fc1/w"].reshape(out_h, out_w, 64, 512).transpose(3, 2, 0, 1).reshape(512, -1)
    params = {
        "weight": b.tensor(f"{name}.fc1.weight", fc),
        "bias": b.tensor(f"{name}.fc1.bias", values[f"{scope}fc1/b"]),
    }
    return b.add("relu", [b.add("linear", [x], params)])


# ---- SB2's LSTM cell -------------------------------------------------------------------------


def declare_lstm(layout: Layout, scope: str, n_in: int, hidden: int, layer_norm: bool) -> None:
    """tf_layers.lstm's variables: wx, wh, b (and gx, bx, gh, bh, gc, bc with layer norm)."""
    layout.add(f"{scope}/wx", (n_in, 4 * hidden))
    layout.add(f"{scope}/wh", (hidden, 4 * hidden))
    layout.add(f"{scope}/b", (4 * hidden,))
    if layer_norm:
        for var, size in (("gx", 4), ("bx", 4), ("gh", 4), ("bh", 4), ("gc", 1), ("bc", 1)):
            layout.add(f"{scope}/{var}", (size * hidden,))


def _torch_gates(array: np.ndarray, hidden: int) -> np.ndarray:
    """SB2's gate blocks (i, f, o, u) along the last axis in torch's order (i, f, g=u, o)."""
    i, f, o, u = (array[..., k * hidden : (k + 1) * hidden] for k in range(4))
    return np.concatenate([i, f, u, o], axis=-1)


def emit_lstm(
    b: GraphBuilder, x: str, values: dict[str, np.ndarray], scope: str, hidden: int, layer_norm: bool, name: str
) -> str:
    """One step of SB2's LSTM (states zeroed where an episode starts) as an ``lstm`` node.

    SB2's single bias goes to ``bias_ih``; ``bias_hh`` is zero. The state inputs are those rlport
    gives sb3-contrib's RecurrentPPO: ``lstm_h`` / ``lstm_c`` of shape (1, hidden) per batch row.
    """
    fields = {"shape": (1, hidden), "batch_axis": 1, "dtype": "float32"}
    h = b.input("lstm_h", "state", output="lstm_h_out", **fields)
    c = b.input("lstm_c", "state", output="lstm_c_out", **fields)
    start = b.input("episode_start", "episode_start")
    tensors = {
        "weight_ih.0": _torch_gates(values[f"{scope}/wx"], hidden).T,
        "weight_hh.0": _torch_gates(values[f"{scope}/wh"], hidden).T,
        "bias_ih.0": _torch_gates(values[f"{scope}/b"], hidden),
        "bias_hh.0": np.zeros(4 * hidden, dtype=np.float32),
    }
    attrs: dict[str, Any] = {"layers": 1, "hidden_size": hidden}
    if layer_norm:
        attrs["layer_norm"] = True
        for role, var in (("ln_ih_gain", "gx"), ("ln_ih_bias", "bx"), ("ln_hh_gain", "gh"), ("ln_hh_bias", "bh")):
            tensors[f"{role}.0"] = _torch_gates(values[f"{scope}/{var}"], hidden)
        tensors["ln_c_gain.0"], tensors["ln_c_bias.0"] = values[f"{scope}/gc"], values[f"{scope}/bc"]
    params = {role: b.tensor(f"{name}.{role}", value) for role, value in tensors.items()}
    names = ["lstm_out", "lstm_h_out", "lstm_c_out"]
    return b.add("lstm", [x, h, c, start], params, attrs, outputs=3, names=names)[0]
