"""How a bandwidth model is judged: metrics, baselines on the same windows, calibration.

:func:`score` gives point accuracy and interval coverage, :func:`baseline_predictions`
the simple predictors on the windows a model is tested on, and
:func:`calibrate_interval` the split-conformal interval from validation residuals.
Pure numpy: nothing here needs TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.predictor import bandwidth_target

from .baseline import best_ewma_alpha, harmonic_mean_of_last, window_ewma
from .datasets import WindowSet
from .features import last_bandwidth
from .lstm_predictor import IntervalSpec, window_volatility


@dataclass(slots=True)
class Metrics:
    """Point and interval quality on one test set."""

    mae: float
    rmse: float
    mae_pct_of_mean: float
    acc10: float
    acc20: float
    coverage: float | None = None
    mean_confidence: float | None = None
    n: int = 0


def score(
    point: np.ndarray,
    actual: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
) -> Metrics:
    """MAE, RMSE, accuracy within ±10% and ±20%, and interval coverage.

    Examples:
        >>> m = score(np.array([100.0, 90.0]), np.array([100.0, 120.0]))
        >>> m.mae, m.acc10, m.acc20
        (15.0, 0.5, 0.5)
    """
    err = np.abs(point - actual)
    metrics = Metrics(
        mae=float(err.mean()),
        rmse=float(np.sqrt(np.mean(err**2))),
        mae_pct_of_mean=float(100 * err.mean() / np.mean(np.abs(actual))),
        acc10=float(np.mean(err <= 0.1 * np.abs(actual))),
        acc20=float(np.mean(err <= 0.2 * np.abs(actual))),
        n=int(actual.size),
    )
    if lower is not None and upper is not None:
        metrics.coverage = float(np.mean((actual >= lower) & (actual <= upper)))
    if confidence is not None:
        metrics.mean_confidence = float(np.mean(confidence))
    return metrics


def metrics_dict(m: Metrics) -> dict[str, float]:
    names = ("mae", "rmse", "mae_pct_of_mean", "acc10", "acc20", "coverage", "mean_confidence", "n")
    return {k: float(getattr(m, k)) for k in names if getattr(m, k) is not None}


def baseline_predictions(windows: np.ndarray, alpha: float) -> dict[str, np.ndarray]:
    """Last value, EWMA and harmonic mean of 5 on the same windows."""
    target = bandwidth_target(windows)
    return {
        "last_value": last_bandwidth(windows),
        "ewma": window_ewma(windows, alpha),
        "harmonic_mean_5": harmonic_mean_of_last(target, 5),
    }


def choose_ewma_alpha(train: WindowSet) -> float:
    """The EWMA alpha with the lowest training MAE (never chosen on test data)."""
    sample = slice(0, min(len(train), 20_000))
    windows, targets = train.windows[sample], train.targets[sample]
    return best_ewma_alpha(lambda a: float(np.nanmean(np.abs(window_ewma(windows, a) - targets))))


VOLATILITY_CANDIDATES = (10, 3, 4, 5, 7, 20, 30)
"""Windows (steps) of the interval's volatility scale tried at calibration; 10 first."""


def calibrate_interval(
    residuals: np.ndarray,
    encoded: np.ndarray,
    families: np.ndarray,
    level: float,
    *,
    floor: float = 0.01,
    better_by: float = 0.005,
) -> IntervalSpec:
    """Split-conformal interval on validation residuals ``log(next/last) - out``.

    Residuals are divided by the window's volatility over its last ``k`` steps and the
    interval takes their ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles. ``k`` is
    chosen among :data:`VOLATILITY_CANDIDATES` so that the validation coverage of the
    worst-covered family (synthetic links, each trace folder) is nearest to ``level``:
    families whose errors scale with short-term jumps differently would otherwise be
    covered unevenly. A ``k`` must beat the first candidate by ``better_by`` to be taken,
    so data with one family keeps 10.
    """
    alpha = (1 - level) / 2
    n = residuals.size
    groups = [families == f for f in np.unique(families)] or [np.ones(n, dtype=bool)]
    best: tuple[float, IntervalSpec] | None = None
    for steps in VOLATILITY_CANDIDATES:
        z = residuals / window_volatility(encoded, floor, steps)
        # np.quantile, not baseline.nan_quantiles: that one skips NaN row-wise and
        # interpolates with other rounding, so its quantiles differ in the last bits.
        q_low = float(np.quantile(z, max(0.0, alpha * (n + 1) / n - 1 / n)))
        q_high = float(np.quantile(z, min(1.0, (1 - alpha) * (n + 1) / n)))
        inside = (z >= q_low) & (z <= q_high)
        worst = max(abs(float(inside[g].mean()) - level) for g in groups)
        if best is None or worst < best[0] - better_by:
            best = (worst, IntervalSpec(level, q_low, q_high, floor, steps))
    assert best is not None
    return best[1]
