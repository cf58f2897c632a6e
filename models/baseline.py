"""Simple bandwidth predictors: the harmonic mean of FastMPC, last value and EWMA."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streams.predictor import IntervalForecast, bandwidth_target


def nan_quantiles(x: np.ndarray, q: float) -> np.ndarray:
    """Row-wise linear-interpolated quantile ignoring NaN (0 for an all-NaN row).

    ``np.nanquantile`` loops in Python over rows; this sorts once.

    Examples:
        >>> nan_quantiles(np.array([[1.0, 2.0, 3.0, np.nan], [np.nan] * 4]), 0.5)
        array([2., 0.])
    """
    ordered = np.sort(x, axis=1)  # NaN sorts last
    count = np.sum(~np.isnan(x), axis=1)
    pos = q * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    low = np.take_along_axis(ordered, lo[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, hi[:, None], axis=1)[:, 0]
    out = low + (high - low) * (pos - lo)
    return np.where(count > 0, out, 0.0)


def _interval_from_ratios(
    target: np.ndarray, point: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interval from the empirical quantiles of one-step log-ratios in each window.

    A window whose bandwidth moved by at most x% per step gets an interval of about
    that width: scale-free, and it widens on volatile links.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log(target[:, 1:] / target[:, :-1])
    ratios[~np.isfinite(ratios)] = np.nan
    alpha = (1.0 - level) / 2.0
    lower = point * np.exp(np.minimum(nan_quantiles(ratios, alpha), 0.0))
    upper = point * np.exp(np.maximum(nan_quantiles(ratios, 1 - alpha), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        confidence = np.clip(1.0 - (upper - lower) / (2.0 * point), 0.0, 1.0)
    confidence[~np.isfinite(confidence)] = 0.0
    return lower, upper, confidence


def harmonic_mean_of_last(target: np.ndarray, n: int) -> np.ndarray:
    """Row-wise harmonic mean of the last ``n`` finite values (NaN if none, 0 if a zero).

    Examples:
        >>> harmonic_mean_of_last(np.array([[1.0, 2.0, np.nan], [np.nan] * 3]), 2)
        array([1.33333333,        nan])
    """
    finite = np.isfinite(target)
    rank = np.cumsum(finite[:, ::-1], axis=1)[:, ::-1]  # 1 = the newest finite value
    use = finite & (rank <= n)
    count = use.sum(axis=1)
    values = np.where(use, target, 1.0)
    with np.errstate(divide="ignore"):
        inverse = np.where(use, 1.0 / values, 0.0).sum(axis=1)
    has_zero = np.any(use & (values <= 0), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = count / inverse
    # A zero sample (an outage) makes the harmonic mean zero, which is what it is.
    return np.where(count == 0, np.nan, np.where(has_zero, 0.0, hm))


class HarmonicMeanPredictor:
    """Harmonic mean of the last ``n`` bandwidth values (FastMPC's throughput predictor).

    The interval spans the window's 10th to 90th percentile one-step change around the
    point; ``confidence`` is one minus its relative half-width.

    Examples:
        >>> p = HarmonicMeanPredictor(mode="internet")
        >>> w = np.full((1, 10, 5), np.nan)
        >>> w[0, :, 0] = [100, 110, 90, 100, 120, 80, 100, 100, 100, 200]
        >>> f = p.predict(w)
        >>> round(float(f.point[0]), 2), f.interval_level
        (105.26, 0.8)
    """

    name = "harmonic-mean"
    version = "1"

    def __init__(
        self,
        mode: str = "datacenter",
        n: int = 5,
        window_steps: int = 10,
        horizon_steps: int = 1,
        interval_level: float = 0.8,
    ) -> None:
        self.mode = mode
        self.n = n
        self.window_steps = window_steps
        self.min_history = window_steps
        self.horizon_steps = horizon_steps
        self.interval_level = interval_level

    def predict(self, windows: np.ndarray) -> IntervalForecast:
        target = bandwidth_target(windows)
        point = harmonic_mean_of_last(target, self.n)
        lower, upper, confidence = _interval_from_ratios(target, point, self.interval_level)
        return IntervalForecast(point, lower, upper, confidence, self.interval_level)


def last_value(series: np.ndarray) -> np.ndarray:
    """Next-step prediction = the previous value (aligned: out[t] predicts series[t]).

    Examples:
        >>> last_value(np.array([1.0, 2.0, 4.0]))
        array([nan,  1.,  2.])
    """
    out = np.full(series.shape, np.nan)
    out[1:] = series[:-1]
    return out


# Two EWMAs on purpose, as their NaN handling differs (the log-space EWMA feature is a
# third, models.features._ewma, with its compiled twin in models.compiled):
# * ewma: one series, next-step prediction at every step; a NaN sample resets the level
#   (the next finite value starts it again), as in the per-series evaluation;
# * window_ewma: many windows at once, the level after each window's last step; a NaN
#   sample keeps the level, as the baseline scored on the model's test windows.


def ewma(series: np.ndarray, alpha: float = 0.3) -> np.ndarray:
    """Next-step prediction = exponentially weighted mean of the past (aligned).

    Examples:
        >>> ewma(np.array([1.0, 2.0, 4.0]), alpha=0.5)
        array([nan, 1. , 1.5])
    """
    out = np.full(series.shape, np.nan)
    level = np.nan
    for t in range(series.size):
        out[t] = level
        x = series[t]
        level = x if np.isnan(level) else alpha * x + (1 - alpha) * level
    return out


def window_ewma(windows: np.ndarray, alpha: float) -> np.ndarray:
    """EWMA over each raw window's bandwidth (the baseline's next-step prediction).

    A missing sample keeps the level, unlike :func:`ewma`.
    """
    target = bandwidth_target(windows)
    level = np.full(target.shape[0], np.nan)
    for s in range(target.shape[1]):
        x = target[:, s]
        level = np.where(
            np.isnan(level), x, np.where(np.isnan(x), level, alpha * x + (1 - alpha) * level)
        )
    return level


def best_ewma_alpha(mae_of: Callable[[float], float], default: float = 0.5) -> float:
    """The alpha in 0.1, 0.2, ..., 1.0 with the lowest ``mae_of(alpha)`` (NaN never wins).

    Examples:
        >>> best_ewma_alpha(lambda a: abs(a - 0.62))
        0.6
    """
    best = (np.inf, default)
    for alpha in np.round(np.arange(0.1, 1.0001, 0.1), 2):
        error = mae_of(float(alpha))
        if error < best[0]:
            best = (error, float(alpha))
    return best[1]


def harmonic_mean(series: np.ndarray, n: int = 5) -> np.ndarray:
    """Next-step prediction = harmonic mean of the previous ``n`` values (aligned).

    Examples:
        >>> harmonic_mean(np.array([1.0, 2.0, 4.0]), n=2)
        array([       nan, 1.        , 1.33333333])
    """
    out = np.full(series.shape, np.nan)
    if series.size > 1:
        padded = np.concatenate([np.full(n - 1, np.nan), series[:-1]])
        lagged = np.lib.stride_tricks.sliding_window_view(padded, n)
        out[1:] = harmonic_mean_of_last(lagged, n)
    return out
