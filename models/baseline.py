"""Simple bandwidth predictors: the harmonic mean of FastMPC, last value and EWMA."""

from __future__ import annotations

import numpy as np

from .predictor import IntervalForecast, bandwidth_target


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
    lo = np.nanquantile(np.where(np.all(np.isnan(ratios), axis=1, keepdims=True), 0.0, ratios), alpha, axis=1)
    hi = np.nanquantile(np.where(np.all(np.isnan(ratios), axis=1, keepdims=True), 0.0, ratios), 1 - alpha, axis=1)
    lower = point * np.exp(np.minimum(lo, 0.0))
    upper = point * np.exp(np.maximum(hi, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        confidence = np.clip(1.0 - (upper - lower) / (2.0 * point), 0.0, 1.0)
    confidence[~np.isfinite(confidence)] = 0.0
    return lower, upper, confidence


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
        self, mode: str = "datacenter", n: int = 5, window_steps: int = 10,
        horizon_steps: int = 1, interval_level: float = 0.8,
    ) -> None:
        self.mode = mode
        self.n = n
        self.window_steps = window_steps
        self.horizon_steps = horizon_steps
        self.interval_level = interval_level

    def predict(self, windows: np.ndarray) -> IntervalForecast:
        target = bandwidth_target(windows)
        point = np.array([_harmonic_mean_last(row, self.n) for row in target])
        lower, upper, confidence = _interval_from_ratios(target, point, self.interval_level)
        return IntervalForecast(point, lower, upper, confidence, self.interval_level)


def _harmonic_mean_last(row: np.ndarray, n: int) -> float:
    values = row[np.isfinite(row)][-n:]
    if values.size == 0:
        return float("nan")
    if np.any(values <= 0):
        # A zero sample (an outage) makes the harmonic mean zero, which is what it is.
        return 0.0
    return float(values.size / np.sum(1.0 / values))


def last_value(series: np.ndarray) -> np.ndarray:
    """Next-step prediction = the previous value (aligned: out[t] predicts series[t]).

    Examples:
        >>> last_value(np.array([1.0, 2.0, 4.0]))
        array([nan,  1.,  2.])
    """
    out = np.full(series.shape, np.nan)
    out[1:] = series[:-1]
    return out


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


def harmonic_mean(series: np.ndarray, n: int = 5) -> np.ndarray:
    """Next-step prediction = harmonic mean of the previous ``n`` values (aligned).

    Examples:
        >>> harmonic_mean(np.array([1.0, 2.0, 4.0]), n=2)
        array([       nan, 1.        , 1.33333333])
    """
    out = np.full(series.shape, np.nan)
    for t in range(1, series.size):
        out[t] = _harmonic_mean_last(series[max(0, t - n) : t], n)
    return out
