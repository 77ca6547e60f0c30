"""The ONNX backend: the exporter (graph -> ONNX) and the onnxruntime policy that runs its output."""

from __future__ import annotations

from rlport.backends.onnx.export import export_onnx, onnx_model

__all__ = ["export_onnx", "onnx_model"]
