"""The demand forecaster's window features, computed the same way in training and serving.

A window of ``lookback`` values is divided by its level (the mean of its absolute
values), so one global model serves a CPU % and a request rate alike. The model sees

- the ``lookback`` normalised values, oldest first;
- summaries of them (:data:`SUMMARIES`): last value, short means, least-squares slopes
  over the last 5, 15 and all values, the last one-step change, spread, extremes;
- ``log10(step_s / 60)``, so 1-minute and 5-minute series are told apart;
- sin/cos of the hour of day and of the day of week of each horizon's TARGET time
  (``last_ts + h * step_s``, UTC).

Targets and predictions are ``(future / level - last / level) / volatility``: the change
from the last value in units of the window's volatility (:func:`volatility`: the RMS
one-step change in units of the level, leaving out the largest tenth). Every window then
weighs alike in a squared error, whether its series is flat or jumpy, and a flat
series' forecast stays flat.
:func:`forecast_inputs` returns the level, the normalised last value (the anchor) and
the volatility (the scale), which also scales the prediction intervals.

Examples:
    >>> inputs = forecast_inputs(
    ...     np.array([[1.0, 2.0, 3.0, 2.0]]), np.array([3600.0]), np.array([60.0]), (1, 2)
    ... )
    >>> inputs.x.shape, feature_names(4, (1, 2))[:2]
    ((1, 34), ('z_0', 'z_1'))
    >>> float(inputs.level[0]), round(float(inputs.anchor[0]), 3), round(float(inputs.scale[0]), 3)
    (2.0, 1.0, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_STATS = (
    "mean_5",
    "mean_15",
    "mean_all",
    "slope_5",
    "slope_15",
    "slope_all",
    "diff_1",
    "min",
    "max",
)
SUMMARIES = (
    "last",
    "std",
    *_STATS,
    *(f"v_{name}" for name in _STATS),
    "log_scale",
    "log_step",
)
"""Summary features, after the normalised values and before the time features: the
statistics in units of the level (means and extremes as they are, not relative to the
last value), then the same in units of the volatility (``v_``: means and extremes minus
the last value, all divided by the volatility, clipped to ``±RELATIVE_CLIP``), ``log10``
of the volatility and of ``step_s / 60``."""

TIME_FEATURES = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")
LEVEL_FLOOR = 1e-12
"""Levels below this (an all-zero window) are raised to it: the forecast is then ~0."""
SCALE_FLOOR = 1e-3
"""Smallest volatility, in units of the level (a perfectly flat window)."""
FULL_SHARE = 0.25
"""The volatility is at least this share of the RMS of all one-step changes."""
RELATIVE_CLIP = 50.0
"""Features in volatility units (``v_``) are clipped to this many volatilities."""
_DAY_S = 86_400.0
_WEEK_S = 7 * _DAY_S
_MONDAY_OFFSET_S = 3 * _DAY_S  # 1970-01-01 was a Thursday


def feature_names(lookback: int, horizons: tuple[int, ...]) -> tuple[str, ...]:
    """The model's input columns, in order (stored in the model file and checked at load)."""
    values = tuple(f"z_{i}" for i in range(lookback))
    times = tuple(f"{name}_h{h}" for h in horizons for name in TIME_FEATURES)
    return values + SUMMARIES + times


@dataclass(frozen=True, slots=True)
class ForecastInputs:
    """Model inputs for a batch of windows and what rescales the outputs.

    Attributes:
        x: ``(k, n_features)`` float32, columns as :func:`feature_names`.
        level: ``(k,)`` the divisor of each window.
        anchor: ``(k,)`` the last value over the level (predictions are changes from it).
        scale: ``(k,)`` RMS one-step change over the level, at least :data:`SCALE_FLOOR`.
    """

    x: np.ndarray
    level: np.ndarray
    anchor: np.ndarray
    scale: np.ndarray


def time_features(ts: np.ndarray) -> np.ndarray:
    """``(..., 4)``: sin/cos of the hour of day and of the day of week of UTC seconds.

    Examples:
        >>> monday_3am = 4 * 86_400.0 + 3 * 3600.0
        >>> time_features(np.array([monday_3am])).round(3).tolist()
        [[0.707, 0.707, 0.112, 0.994]]
    """
    ts = np.asarray(ts, dtype=np.float64)
    day = 2 * np.pi * (ts % _DAY_S) / _DAY_S
    week = 2 * np.pi * ((ts + _MONDAY_OFFSET_S) % _WEEK_S) / _WEEK_S
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=-1)


def _slope_weights(n: int) -> np.ndarray:
    """Weights whose dot product with ``n`` values is their least-squares slope per step."""
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2
    return t / max(float(np.sum(t * t)), 1.0)


def squash(change: np.ndarray, c: float) -> np.ndarray:
    """What the members learn from a change in volatility units: ``c * asinh(change / c)``,
    linear within about ``±c`` and logarithmic beyond, so the squared error of a rare jump
    does not pull every forecast towards it (the mean of squashed changes is close to
    their median, which is what a small absolute error needs).

    Examples:
        >>> squash(np.array([0.5, 100.0]), 2.0).round(3).tolist()
        [0.495, 9.211]
        >>> unsquash(squash(np.array([-7.0]), 2.0), 2.0).round(6).tolist()
        [-7.0]
    """
    return c * np.arcsinh(change / c)


def unsquash(output: np.ndarray, c: float) -> np.ndarray:
    """The change in volatility units a member's output stands for (inverse of :func:`squash`)."""
    return c * np.sinh(output / c)


def volatility(diffs: np.ndarray) -> np.ndarray:
    """RMS of each row's one-step changes without its largest tenth (a spike or an on/off
    jump in the window must not widen every interval), but at least :data:`FULL_SHARE` of
    the RMS of all of them (a quantised series whose values rarely change is not flat) and
    at least :data:`SCALE_FLOOR`.

    Examples:
        >>> d = np.array([[0.1, -0.1] * 9 + [5.0, -5.0]])
        >>> round(float(volatility(d)[0]), 3)
        0.396
    """
    keep = diffs.shape[1] - diffs.shape[1] // 10
    smallest = np.sort(np.abs(diffs), axis=1)[:, :keep]
    trimmed = np.sqrt((smallest * smallest).mean(axis=1))
    full = np.sqrt((diffs * diffs).mean(axis=1))
    return np.maximum(np.maximum(trimmed, FULL_SHARE * full), SCALE_FLOOR)


def forecast_inputs(
    histories: np.ndarray, last_ts: np.ndarray, step_s: np.ndarray, horizons: tuple[int, ...]
) -> ForecastInputs:
    """Features of ``(k, lookback)`` windows whose last values are at ``last_ts``.

    ``histories`` must be finite (the caller checks); ``last_ts`` and ``step_s`` are
    ``(k,)`` seconds.
    """
    h = np.asarray(histories, dtype=np.float64)
    k, n = h.shape
    level = np.maximum(np.abs(h).mean(axis=1), LEVEL_FLOOR)
    z = h / level[:, None]
    diffs = np.diff(z, axis=1) if n > 1 else np.zeros((k, 1))
    last = z[:, -1]
    scale = volatility(diffs)
    tail5, tail15 = z[:, -min(5, n) :], z[:, -min(15, n) :]
    means = np.stack([tail5.mean(axis=1), tail15.mean(axis=1), z.mean(axis=1)], axis=1)
    slopes = np.stack(
        [
            tail5 @ _slope_weights(tail5.shape[1]),
            tail15 @ _slope_weights(tail15.shape[1]),
            z @ _slope_weights(n),
            diffs[:, -1],
        ],
        axis=1,
    )
    extremes = np.stack([z.min(axis=1), z.max(axis=1)], axis=1)
    relative = np.concatenate([means - last[:, None], slopes, extremes - last[:, None]], axis=1)
    step = np.asarray(step_s, dtype=np.float64)
    summaries = np.concatenate(
        [
            np.stack([last, z.std(axis=1)], axis=1),
            means,
            slopes,
            extremes,
            np.clip(relative / scale[:, None], -RELATIVE_CLIP, RELATIVE_CLIP),
            np.log10(scale)[:, None],
            np.log10(step / 60.0)[:, None],
        ],
        axis=1,
    )
    targets = np.asarray(last_ts, dtype=np.float64)[:, None] + np.outer(step, horizons)
    times = time_features(targets).reshape(k, len(horizons) * len(TIME_FEATURES))
    x = np.concatenate([z, summaries, times], axis=1).astype(np.float32)
    return ForecastInputs(x, level, last, scale)
