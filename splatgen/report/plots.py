"""The report's plots: matplotlib figures of a run's metrics, returned as inline SVG text.

Figures are made with `matplotlib.figure.Figure` (no pyplot: no global state, no GUI backend), so
building a report never opens a window and is safe from threads. Without matplotlib (it comes with
the `eval` extra) `plots_available()` is False and the page says so instead of showing plots.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

INK, ACCENT, REFINE = "#1f3b57", "#c0392b", "#e67e22"


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and finite values of `key` (records without it, or with null, are left out)."""
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(record["step"])
            values.append(float(value))
    return steps, values


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: the SVG goes inline in HTML


def _figure(title: str, ylabel: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2, 2.9), dpi=100)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=11, loc="left", color=INK)
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.grid(True, color="#e3e8ee", linewidth=0.8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure, axes


def _mark_refinements(axes, refinements: Sequence[dict[str, Any]]) -> None:
    for index, refinement in enumerate(refinements):
        axes.axvline(
            refinement["step"],
            color=REFINE,
            alpha=0.7,
            linewidth=1.0,
            linestyle="--",
            label="refinement" if index == 0 else None,
        )


def line_plot(
    records: Sequence[dict[str, Any]],
    key: str,
    title: str,
    ylabel: str,
    refinements: Sequence[dict[str, Any]] = (),
    log_scale: bool = False,
) -> str | None:
    """One metric over the steps (SVG), or None when the log has no finite value of it."""
    steps, values = _series(records, key)
    if not steps:
        return None
    figure, axes = _figure(title, ylabel)
    axes.plot(steps, values, color=INK, linewidth=1.4, marker="o" if len(steps) < 30 else None, markersize=3)
    if log_scale and min(values) > 0:
        axes.set_yscale("log")
    _mark_refinements(axes, refinements)
    if refinements:
        axes.legend(fontsize=8, frameon=False)
    return _svg(figure)


def coupling_plot(records: Sequence[dict[str, Any]], refinements: Sequence[dict[str, Any]] = ()) -> str | None:
    """The truncation c(progress) and the densify growth threshold it sets, on twin axes (SVG)."""
    threshold_steps, thresholds = _series(records, "grow_threshold")
    truncation_steps, truncations = _series(records, "truncation")
    if not threshold_steps:
        return None
    figure, axes = _figure("truncation and densify threshold", "grow threshold (rule units)")
    axes.plot(threshold_steps, thresholds, color=INK, linewidth=1.4, label="grow threshold")
    refine_steps, refine_thresholds = _series(refinements, "grow_threshold")
    if refine_steps:
        axes.scatter(refine_steps, refine_thresholds, color=INK, s=14, zorder=3, label="refinement")
    handles, labels = axes.get_legend_handles_labels()
    if truncation_steps:
        twin = axes.twinx()
        twin.plot(truncation_steps, truncations, color=ACCENT, linewidth=1.4, linestyle="--", label="truncation c")
        twin.set_ylabel("truncation c", color=ACCENT)
        twin.spines["top"].set_visible(False)
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axes.legend(handles, labels, fontsize=8, frameon=False, loc="best")
    return _svg(figure)


def run_plots(records: Sequence[dict[str, Any]], refinements: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The report's plots by id (only those the log has data for)."""
    plots = {
        "loss": line_plot(records, "loss", "loss", "loss", refinements),
        "grad-norm": line_plot(records, "grad_norm", "gradient norm", "|g|", refinements, log_scale=True),
        "gaussians": line_plot(records, "num_gaussians", "Gaussians", "count", refinements),
        "coupling": coupling_plot(records, refinements),
    }
    return {name: svg for name, svg in plots.items() if svg is not None}
