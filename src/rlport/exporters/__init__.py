"""Exporters: turn a bundle's policy graph into other formats (ONNX today)."""

from __future__ import annotations

from rlport.exporters.onnx_export import export_onnx, onnx_model

__all__ = ["export_onnx", "onnx_model"]
