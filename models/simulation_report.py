"""Reports of scaling replays: ``results.json``, capacity against demand, frontiers.

matplotlib is imported when a plot is drawn (the ``plot`` extra), with the Agg backend;
figures are 900 x 400 pixels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streams.errors import ModelError

from .demand_traces import DemandTrace
from .scaling_comparison import HPA, OURS_PREFIX, Comparison, pareto

_SIZE = (9.0, 4.0)
_DPI = 100


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        msg = "Plots need matplotlib: pip install 'novacron[plot]'."
        raise ModelError(msg) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def busiest_day(comparison: Comparison, trace: DemandTrace, name: str = HPA) -> slice:
    """The day (or the whole trace if shorter) with the most violating steps of ``name``."""
    n = len(trace.demand)
    day = max(int(round(86400.0 / trace.step_s)), 1)
    if n <= day:
        return slice(0, n)
    run = comparison.runs[name]
    per_ready = comparison.model.sla_utilisation * comparison.model.capacity_per_instance
    bad = (trace.demand > per_ready * run.ready).astype(float)
    counts = np.convolve(bad, np.ones(day), mode="valid")
    start = int(np.argmax(counts))
    return slice(start, start + day)


def plot_capacity(
    comparison: Comparison,
    trace: DemandTrace,
    path: Path,
    names: Sequence[str],
    title: str | None = None,
) -> Path:
    """Demand and each policy's ready capacity at the SLA line: the whole trace above
    (the peak of each pixel's steps), HPA's worst day below."""
    plt = _pyplot()
    per_ready = comparison.model.sla_utilisation * comparison.model.capacity_per_instance
    hours = (trace.sim_ts - trace.sim_ts[0]) / 3600.0
    fig, axes = plt.subplots(2, 1, figsize=_SIZE, dpi=_DPI)
    zoom = busiest_day(comparison, trace)
    for ax, part in ((axes[0], slice(0, len(hours))), (axes[1], zoom)):
        x, d = _peaks(hours[part], trace.demand[part])
        ax.plot(x, d, color="0.55", lw=0.5, label="demand")
        for name in names:
            run = comparison.runs[name]
            xs, cap = _peaks(hours[part], run.ready[part] * per_ready)
            ax.step(xs, cap, where="post", lw=0.8, label=f"{name} (SLA line)")
        ax.tick_params(labelsize=7)
    axes[1].set_xlabel("hours", fontsize=7)
    axes[0].legend(fontsize=6, loc="upper right", ncol=len(names) + 1)
    axes[0].set_title(title or f"{trace.name}: capacity at the SLA line vs demand", fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_frontier(
    frontier: Mapping[str, Sequence[Mapping[str, Any]]],
    path: Path,
    title: str,
    reference_cost: float | None = None,
) -> Path:
    """Each family's cost / violation-minutes points and Pareto line (cost relative to
    ``reference_cost`` when given)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    scale = reference_cost or 1.0
    for family, points in frontier.items():
        front = pareto(points)
        if not front:
            continue
        style = "-" if family.startswith(OURS_PREFIX) else "--"
        width = 1.8 if family == HPA else 1.0
        costs = [c / scale for c, _ in front]
        ax.plot(costs, [v for _, v in front], style, marker="o", ms=3, lw=width, label=family)
    ax.set_xlabel("cost (instance-minutes" + (", HPA at 60% = 1)" if reference_cost else ")"))
    ax.set_ylabel("SLA violation minutes")
    ax.set_yscale("symlog", linthresh=10.0)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, plt, path)


def write_report(
    comparison: Comparison,
    trace: DemandTrace,
    directory: Path,
    extra: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> list[Path]:
    """``results.json`` and the plots (a capacity PNG per policy, ``frontier.png`` when
    swept) in ``directory``; returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    results = comparison.to_json()
    results.update(extra or {})
    out = directory / "results.json"
    out.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    written = [out]
    if not plots:
        return written
    for name in comparison.runs:
        shown = [name] if name == HPA else [HPA, name]
        path = directory / f"capacity_{name}.png"
        written.append(plot_capacity(comparison, trace, path, shown))
    if comparison.frontier:
        hpa_cost = comparison.runs[HPA].cost_instance_minutes
        title = f"{trace.name}: cost / violation frontier per policy family"
        written.append(
            plot_frontier(comparison.frontier, directory / "frontier.png", title, hpa_cost)
        )
    return written


def _peaks(x: np.ndarray, y: np.ndarray, bins: int = 900) -> tuple[np.ndarray, np.ndarray]:
    """At most ``bins`` points: each bin's first x and largest y."""
    if len(x) <= bins:
        return x, y
    edges = np.linspace(0, len(x), bins + 1).astype(int)
    return x[edges[:-1]], np.maximum.reduceat(y, edges[:-1])


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
