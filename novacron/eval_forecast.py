"""``novacron eval forecast DATA_DIR``: the demand forecaster against persistence and
seasonal naive, on held-out synthetic series and on real request-rate and utilisation traces.

(a) Synthetic series from seeds and parameter ranges the model did not train on
(:data:`models.synthetic_demand.HELD_OUT_RANGES`), per family and pooled (errors in units
of each window's level, ``nmae``). (b) Real traces the model never saw, every window of
each: NASA's requests per minute and NAB's AWS CloudWatch CPU, RDS CPU and ELB request
counts and the misconfigured autoscaling group's CPU (5-minute steps). Each trace is put
on its own time grid: gaps of a few steps are held at the last value, longer ones (the
NASA outage) split the trace, and no window spans a split. Figures per horizon: MAE in
the trace's units for the ensemble, each member, persistence (the last value) and
seasonal naive (the value one day before the target when the segment has it, otherwise
the last value), and the ensemble's interval coverage and mean confidence.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.forecast import OnnxForecaster
from models.forecast_metrics import ForecastWindows, forecast_windows, score_windows
from models.synthetic_demand import HELD_OUT_RANGES, DemandSeries, demand_series
from streams.errors import InputFileError

NAB_TRACES = (
    "nab/data/realAWSCloudwatch/ec2_cpu_utilization_*.csv",
    "nab/data/realAWSCloudwatch/rds_cpu_utilization_*.csv",
    "nab/data/realAWSCloudwatch/elb_request_count_*.csv",
    "nab/data/realKnownCause/cpu_utilization_asg_misconfiguration.csv",
)
NASA_TRACE = "workload/nasa_requests_per_minute.csv"
NASA_UTC_OFFSET_S = 4 * 3600.0  # the file's clock is local time, UTC-4
MAX_FILLED_STEPS = 10
"""Gaps up to this many steps are held at the last value; longer ones split a trace."""


def read_trace(path: Path, family: str, utc_offset_s: float = 0.0) -> list[DemandSeries]:
    """A ``timestamp,value`` CSV (header first, value in the second column) as segments
    on its most common time step."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))[1:]
        ts = np.array([_utc_seconds(r[0]) for r in rows]) + utc_offset_s
        values = np.array([float(r[1]) for r in rows])
    except (OSError, ValueError, IndexError) as exc:
        msg = f"Cannot read the trace '{path}' as timestamp,value rows: {exc}"
        raise InputFileError(msg) from exc
    if len(ts) < 2:
        msg = f"The trace '{path}' has {len(ts)} rows; at least 2 are needed."
        raise InputFileError(msg)
    steps, counts = np.unique(np.diff(ts), return_counts=True)
    step = float(steps[np.argmax(counts)])
    slot = np.round((ts - ts[0]) / step).astype(np.int64)
    breaks = np.flatnonzero(np.diff(slot) > MAX_FILLED_STEPS) + 1
    out = []
    for i, (a, b) in enumerate(zip(np.r_[0, breaks], np.r_[breaks, len(ts)], strict=True)):
        grid = np.arange(slot[a], slot[b - 1] + 1)
        held = values[a:b][np.searchsorted(slot[a:b], grid, side="right") - 1]
        name = f"{path.stem}#{i}" if len(breaks) else path.stem
        out.append(DemandSeries(name, family, None, step, ts[0] + step * grid[0], held))
    return out


def _utc_seconds(text: str) -> float:
    stamp = dt.datetime.strptime(text.split(".")[0] + "+0000", "%Y-%m-%d %H:%M:%S%z")
    return stamp.timestamp()


def real_traces(data_dir: Path) -> dict[str, list[DemandSeries]]:
    """Trace name -> its segments, for every evaluation trace found under ``data_dir``."""
    traces: dict[str, list[DemandSeries]] = {}
    nasa = data_dir / NASA_TRACE
    if nasa.is_file():
        traces["nasa_requests_per_minute"] = read_trace(nasa, "nasa", NASA_UTC_OFFSET_S)
    for pattern in NAB_TRACES:
        for path in sorted(data_dir.glob(pattern)):
            traces[path.stem] = read_trace(path, "nab")
    if not traces:
        msg = (
            f"No evaluation trace under '{data_dir}': expected {NASA_TRACE} or "
            f"{NAB_TRACES[0]} (the shared data folder)."
        )
        raise InputFileError(msg)
    return traces


def _subset(w: ForecastWindows, rows: np.ndarray) -> ForecastWindows:
    return ForecastWindows(
        w.horizons, w.histories[rows], w.last_ts[rows], w.step_s[rows], w.future[rows],
        w.seasonal[rows], tuple(w.types[i] for i in rows), tuple(w.families[i] for i in rows),
    )  # fmt: skip


def evaluate_forecaster(
    forecaster: OnnxForecaster,
    data_dir: Path | None,
    synthetic_series: int = 270,
    synthetic_seed: int = 1001,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Figures per method on held-out synthetic series (pooled and per family) and per
    real trace (every window)."""
    lookback, horizons = forecaster.lookback, forecaster.horizons
    held = demand_series(synthetic_series, synthetic_seed, HELD_OUT_RANGES)
    w = forecast_windows(held, lookback, horizons, per_series=200, seed=synthetic_seed)
    families = np.array(w.families)
    synthetic: dict[str, Any] = {"all": score_windows(forecaster, w), "families": {}}
    for family in sorted(set(w.families)):
        rows = np.flatnonzero(families == family)
        synthetic["families"][family] = score_windows(forecaster, _subset(w, rows))
    real: dict[str, Any] = {}
    for name, segments in (real_traces(data_dir) if data_dir else {}).items():
        if progress:
            progress(name)
        tw = forecast_windows(segments, lookback, horizons, per_series=None)
        real[name] = score_windows(forecaster, tw) | {"step_s": segments[0].step_s}
    return {
        "model": f"{forecaster.name}:{forecaster.version}",
        "horizons": list(horizons),
        "synthetic": {
            "series": synthetic_series, "seed": synthetic_seed,
            "ranges": "HELD_OUT_RANGES", **synthetic,
        },
        "real": real,
    }  # fmt: skip


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, dict[str, float]]]:
    """(dataset, method, figures) rows: pooled synthetic (nmae) and each real trace (mae)."""
    rows = []
    for method, figures in results["synthetic"]["all"].items():
        rows.append(("synthetic (nmae)", method, figures))
    for trace, scores in results["real"].items():
        for method, figures in scores.items():
            if isinstance(figures, dict):
                rows.append((trace, method, figures))
    return rows


def write_results(results: dict[str, Any], output: Path, meta: dict[str, Any]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({**meta, **results}, indent=2, sort_keys=True) + "\n")
