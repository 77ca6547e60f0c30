"""The card's plots, drawn with matplotlib (the ``report`` extra) and returned as ``data:`` URIs of SVG.

A page that holds its plots as data needs no file beside it and makes no network request.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from rlport.errors import require

__all__ = ["returns_plot", "latency_plot", "tradeoff_plot"]

_BLUE, _GREY, _ORANGE = "#1f6feb", "#8c959f", "#d4760a"


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "report", "rlport card")
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 10, "axes.spines.top": False, "text.parse_math": False,
                         "axes.spines.right": False})  # fmt: skip
    return plt


def _uri(figure: Any) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def returns_plot(result: dict[str, Any]) -> str:
    """Each episode's return as a bar, the mean with its 95% interval, the reference mean and +- std as a band."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3))
    values = result["returns"]
    axes.bar(range(len(values)), values, color=_BLUE, alpha=0.75, label="episode return (here)")
    low, high = result["ci95"]
    axes.axhspan(low, high, color=_BLUE, alpha=0.12, label="95% interval of the mean")
    axes.axhline(result["mean"], color=_BLUE, linewidth=1.5, label=f"mean {result['mean']:.1f}")
    ref = result.get("reference")
    if ref is not None:
        axes.axhline(ref["mean"], color=_ORANGE, linestyle="--", linewidth=1.5,
                     label=f"reference {ref['mean']:.1f} ({ref['source']})")  # fmt: skip
        axes.axhspan(ref["mean"] - ref["std"], ref["mean"] + ref["std"], color=_ORANGE, alpha=0.08)
    axes.set_xlabel(f"episode (seed {result['seed']} + i)")
    axes.set_ylabel("return")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    return _uri(figure)


def latency_plot(rows: list[dict[str, Any]]) -> str:
    """Median single-observation ``predict`` time per backend (bars), with the 90th percentile as a tick."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5, 0.5 + 0.45 * len(rows)))
    names = [row["backend"] for row in rows]
    medians = [row["median_us"] for row in rows]
    axes.barh(names, medians, color=_BLUE, alpha=0.8)
    axes.scatter([row["p90_us"] for row in rows], names, marker="|", color=_GREY, s=120, label="p90")
    for i, value in enumerate(medians):
        axes.text(value, i, f"  {value:.1f} µs", va="center", fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("µs per predict (one observation), median")
    axes.set_xlim(0, max(max(medians), max(row["p90_us"] for row in rows)) * 1.35)
    return _uri(figure)


def tradeoff_plot(points: list[dict[str, Any]]) -> str:
    """Size against mean return for the card's bundle and those it is compared with."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.2))
    for point in points:
        if point.get("mean") is None:
            continue
        color = _BLUE if point.get("main") else _ORANGE
        axes.errorbar(point["bytes"] / 1024, point["mean"], yerr=point.get("std") or 0, fmt="o", color=color,
                      capsize=3)  # fmt: skip
        axes.annotate(point["label"], (point["bytes"] / 1024, point["mean"]), textcoords="offset points",
                      xytext=(6, 6), fontsize=8)  # fmt: skip
    axes.set_xlabel("bundle size (KiB)")
    axes.set_ylabel("mean return (± std)")
    return _uri(figure)
