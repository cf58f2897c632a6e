"""A persistence forecaster of demand: the reference (and fallback) beside the ensemble.

It implements :class:`streams.capacity.Forecaster` with no training: the forecast at
every horizon is the mean of the last ``recent`` values, and the interval is that point
plus or minus ``z`` times the window's RMS one-step change (without its largest tenth: a
spike or an on/off jump must not widen every interval), widened by ``sqrt(h)`` (a random
walk's spread). It is what the scaling simulator uses when no trained ensemble
is shipped (``novacron simulate scaling --forecaster persistence``) and what tests use
as a small, exact stand-in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streams.capacity import DemandForecast

Z_80 = 1.2815515655446004
"""The standard normal's 90th percentile: a central 80% interval is +- this many sds."""


class PersistenceForecaster:
    """The recent level carried forward, with a random-walk interval.

    Attributes:
        name, version, lookback, horizons: as :class:`streams.capacity.Forecaster`.
        recent: values averaged for the point forecast.
        interval_level: nominal coverage of the interval (0.8).

    Examples:
        >>> f = PersistenceForecaster(lookback=4, horizons=(1, 4), recent=2)
        >>> fc = f.forecast_many(np.array([[1.0, 2.0, 3.0, 5.0]]), np.zeros(1),
        ...                      np.full(1, 60.0), [None])[0]
        >>> fc.point.tolist(), [round(u, 3) for u in fc.upper.tolist()]
        ([4.0, 4.0], [5.812, 7.625])
    """

    def __init__(
        self,
        lookback: int = 60,
        horizons: tuple[int, ...] = (1, 3, 5, 10, 15, 30),
        recent: int = 3,
        name: str = "persistence",
        version: str = "1",
    ) -> None:
        if not 1 <= recent <= lookback:
            msg = (
                f"PersistenceForecaster needs 1 <= recent <= lookback. "
                f"Got recent={recent}, lookback={lookback} instead."
            )
            raise ValueError(msg)
        self.name = name
        self.version = version
        self.lookback = lookback
        self.horizons = tuple(horizons)
        self.recent = recent
        self.interval_level = 0.8

    def forecast_arrays(self, histories: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(point, lower, upper, confidence)`` for ``(k, lookback)`` histories."""
        h = np.asarray(histories, dtype=float)[:, -self.lookback :]
        level = h[:, -self.recent :].mean(axis=1)
        vol = _trimmed_rms(np.diff(h, axis=1))
        spread = Z_80 * vol[:, None] * np.sqrt(np.asarray(self.horizons, dtype=float))[None, :]
        point = np.repeat(level[:, None], len(self.horizons), axis=1)
        floor = np.where(h.min(axis=1) >= 0, 0.0, -np.inf)[:, None]
        lower = np.maximum(point - spread, floor)
        upper = point + spread
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(np.abs(level) > 0, vol / np.abs(level), np.inf)
        confidence = 1.0 / (1.0 + 4.0 * np.nan_to_num(rel, nan=np.inf, posinf=np.inf))
        return point, lower, upper, confidence

    def forecast_many(
        self,
        histories: np.ndarray,
        last_ts: np.ndarray,
        step_s: np.ndarray,
        workload_types: Sequence[str | None],
    ) -> list[DemandForecast]:
        """One :class:`DemandForecast` per history (``last_ts``, ``step_s`` and the
        workload types are not needed by persistence)."""
        point, lower, upper, confidence = self.forecast_arrays(histories)
        return [
            DemandForecast(
                self.horizons,
                point[i],
                lower[i],
                upper[i],
                self.interval_level,
                float(confidence[i]),
                {"persistence": 1.0},
            )
            for i in range(point.shape[0])
        ]


def _trimmed_rms(diffs: np.ndarray) -> np.ndarray:
    """Row-wise RMS of the one-step changes without the largest tenth.

    Examples:
        >>> float(_trimmed_rms(np.array([[0.1, -0.1] * 9 + [5.0, -5.0]]))[0])
        0.1
    """
    if diffs.shape[1] == 0:
        return np.zeros(diffs.shape[0])
    keep = diffs.shape[1] - diffs.shape[1] // 10
    smallest = np.sort(np.abs(diffs), axis=1)[:, :keep]
    return np.asarray(np.sqrt((smallest * smallest).mean(axis=1)))
