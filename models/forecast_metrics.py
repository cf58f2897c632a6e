"""Windows cut from demand series, and the forecaster's figures on them against baselines.

Errors are reported two ways: ``mae_h{h}`` in the series' own units (meaningful for one
trace) and ``nmae_h{h}``, the absolute error divided by the window's level (the mean
of its absolute values), which pools series of different units. Baselines:
``persistence`` (the last value) and ``seasonal_naive`` (the value one day before the
target where the series has it, otherwise the last value).

Examples:
    >>> t = np.arange(200, dtype=np.float64)
    >>> s = DemandSeries("ramp", "trend", None, 60.0, 0.0, t)
    >>> w = forecast_windows([s], lookback=10, horizons=(1, 5), per_series=None, stride=50)
    >>> w.histories.shape, w.future[0].tolist(), w.seasonal[0].tolist()
    ((4, 10), [10.0, 14.0], [9.0, 9.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .forecast_features import LEVEL_FLOOR, ForecastInputs
from .synthetic_demand import DemandSeries

if TYPE_CHECKING:
    from .forecast import OnnxForecaster

_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ForecastWindows:
    """Histories and what followed them.

    Attributes:
        histories: ``(k, lookback)`` values, oldest first.
        last_ts, step_s: ``(k,)`` time of each last value, seconds between values.
        future: ``(k, H)`` the values ``h`` steps after the last.
        seasonal: ``(k, H)`` the seasonal-naive forecast of each.
        types: each window's workload type (``None``: none).
        families: each window's series family (or trace name).
    """

    horizons: tuple[int, ...]
    histories: np.ndarray
    last_ts: np.ndarray
    step_s: np.ndarray
    future: np.ndarray
    seasonal: np.ndarray
    types: tuple[str | None, ...]
    families: tuple[str, ...]

    def targets(self, inputs: ForecastInputs) -> np.ndarray:
        """What the members learn: the change from the last value in volatility units."""
        change = self.future / inputs.level[:, None] - inputs.anchor[:, None]
        return change / inputs.scale[:, None]


def forecast_windows(
    series: Sequence[DemandSeries],
    lookback: int,
    horizons: tuple[int, ...],
    per_series: int | None,
    seed: int = 0,
    stride: int = 1,
) -> ForecastWindows:
    """Windows of each series: ``per_series`` at random positions (seeded), or every
    ``stride``-th position when ``per_series`` is None. Series too short are skipped."""
    rng = np.random.default_rng(seed)
    hs = np.asarray(horizons)
    parts: list[tuple[np.ndarray, ...]] = []
    types: list[str | None] = []
    families: list[str] = []
    for s in series:
        values = np.asarray(s.values, dtype=np.float64)
        ends = np.arange(lookback - 1, len(values) - int(hs.max()))
        if ends.size == 0:
            continue
        if per_series is None:
            ends = ends[::stride]
        elif per_series < ends.size:
            ends = np.sort(rng.choice(ends, per_series, replace=False))
        hist = values[ends[:, None] + np.arange(1 - lookback, 1)]
        future = values[ends[:, None] + hs]
        period = max(1, round(_DAY_S / s.step_s))
        back = ends[:, None] + hs - period
        seasonal = np.where(back >= 0, values[np.maximum(back, 0)], values[ends][:, None])
        ts = s.start_ts + s.step_s * ends.astype(np.float64)
        parts.append((hist, ts, np.full(ends.size, s.step_s), future, seasonal))
        types += [s.workload_type] * ends.size
        families += [s.family] * ends.size
    if not parts:
        msg = f"No series is longer than lookback + max horizon = {lookback + int(hs.max())}."
        raise ValueError(msg)
    hist, ts, step, future, seasonal = (np.concatenate(p) for p in zip(*parts, strict=True))
    return ForecastWindows(tuple(horizons), hist, ts, step, future, seasonal, tuple(types),
                           tuple(families))  # fmt: skip


def _errors(pred: np.ndarray, w: ForecastWindows, level: np.ndarray) -> dict[str, float]:
    err = np.abs(pred - w.future)
    out: dict[str, float] = {}
    for j, h in enumerate(w.horizons):
        out[f"mae_h{h}"] = float(err[:, j].mean())
        out[f"nmae_h{h}"] = float((err[:, j] / level).mean())
    out["nmae_mean"] = float(np.mean([out[f"nmae_h{h}"] for h in w.horizons]))
    return out


def score_windows(
    forecaster: OnnxForecaster, w: ForecastWindows, use_types: bool = True
) -> dict[str, dict[str, float]]:
    """Method -> figures: the ensemble (with interval coverage and mean confidence), each
    member, persistence and seasonal naive, on the same windows."""
    types = w.types if use_types else (None,) * len(w.types)
    a = forecaster.forecast_arrays(w.histories, w.last_ts, w.step_s, types)
    level = np.maximum(np.abs(w.histories).mean(axis=1), LEVEL_FLOOR)
    last = np.repeat(w.histories[:, -1:], len(w.horizons), axis=1)
    persistence = _errors(last, w, level)
    ensemble = _errors(a.point, w, level)
    inside = (w.future >= a.lower) & (w.future <= a.upper)
    for j, h in enumerate(w.horizons):
        ensemble[f"coverage_h{h}"] = float(inside[:, j].mean())
        ensemble[f"rel_persistence_h{h}"] = ensemble[f"nmae_h{h}"] / max(
            persistence[f"nmae_h{h}"], 1e-12
        )
    ensemble["coverage"] = float(inside.mean())
    ensemble["mean_confidence"] = float(a.confidence.mean())
    ensemble["n"] = float(len(level))
    out = {"ensemble": ensemble, "persistence": persistence}
    out["seasonal_naive"] = _errors(w.seasonal, w, level)
    for i, name in enumerate(forecaster.metadata.members):
        out[name] = _errors(a.members[:, i], w, level)
    return out
