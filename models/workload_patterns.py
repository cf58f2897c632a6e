"""The pattern type of a host's busiest metric, by documented rules on its features.

The rules read the features of :mod:`models.workload_features` (a mapping by name, as
:func:`models.workload_features.feature_dict` gives) and name one of
:data:`streams.capacity.PATTERN_TYPES`. The pattern describes the shape of the history
seen; it is not the classifier's label (a host keeps its workload type while the window
it is seen through shows another shape).
"""

from __future__ import annotations

from collections.abc import Mapping

_CALENDAR_S = (3600.0, 86_400.0, 604_800.0)
"""Periods of a calendar (an hour, a day, a week): a cycle at one of them is seasonal."""

STEADY_CONTRAST = 0.05
OUTLIER_CONTRAST = 0.15
OUTLIER_SHARE = 0.05
REGULAR_CYCLE = 0.8
CYCLE = 0.6


def pattern_type(features: Mapping[str, float]) -> str:
    """The pattern of the active series, by the first of these rules that holds.

    1. ``STEADY_STATE``: ``contrast`` < 0.05 and no spike or dip (a flat level).
    2. ``SPIKE`` / ``VALLEY``: ``contrast`` < 0.15 (a steady level) with some spikes
       and no dips / some dips and no spikes, on at most 5 % of the samples.
    3. ``EXPONENTIAL_GROWTH`` / ``EXPONENTIAL_DECAY``: ``trend_score`` > 0.5 / < -0.5,
       convex (``trend_curvature`` > 0.2) and better fitted in log scale
       (``exp_fit_gain`` > 0.02).
    4. ``TRENDING``: ``|trend_score|`` > 0.2 and ``trend_r2`` > 0.6.
    5. ``SEASONAL`` / ``CYCLIC``: ``seasonal_confidence`` >= 0.8; seasonal when the
       period is within 10 % of an hour, a day or a week, cyclic otherwise.
    6. ``PLATEAU``: ``contrast`` > 0.5, ``duty_cycle`` in [0.15, 0.85] and high spells
       lasting on average at least 5 % of the history (``plateau_s`` / ``span_s``).
    7. ``SEASONAL`` / ``CYCLIC`` as in 5 with ``seasonal_confidence`` >= 0.6.
    8. ``BURSTY``: ``burstiness`` > -0.1 or ``spike_share`` > 0.02.
    9. ``IRREGULAR``: anything else.

    Examples:
        >>> import numpy as np
        >>> from models.workload_features import feature_dict, history_features
        >>> t = np.arange(1440)
        >>> h = np.full((1440, 6), np.nan)
        >>> h[:, 0] = 50 + 30 * np.sin(2 * np.pi * t / 60)
        >>> pattern_type(feature_dict(history_features(h, 60.0)))  # hourly cycle
        'SEASONAL'
        >>> h[:, 0] = 20 + 0.02 * t
        >>> pattern_type(feature_dict(history_features(h, 60.0)))
        'TRENDING'
        >>> h[:, 0] = 40.0
        >>> pattern_type(feature_dict(history_features(h, 60.0)))
        'STEADY_STATE'
    """
    f = features
    contrast, spikes, dips = f["contrast"], f["spike_share"], f["dip_share"]
    if contrast < STEADY_CONTRAST and spikes == 0 and dips == 0:
        return "STEADY_STATE"
    if contrast < OUTLIER_CONTRAST and 0 < spikes + dips <= OUTLIER_SHARE:
        if dips == 0:
            return "SPIKE"
        if spikes == 0:
            return "VALLEY"
    score, convex = f["trend_score"], f["trend_curvature"] > 0.2 and f["exp_fit_gain"] > 0.02
    if score > 0.5 and convex:
        return "EXPONENTIAL_GROWTH"
    if score < -0.5 and convex:
        return "EXPONENTIAL_DECAY"
    if abs(score) > 0.2 and f["trend_r2"] > 0.6:
        return "TRENDING"
    if f["seasonal_confidence"] >= REGULAR_CYCLE:
        return _cycle(f["period_s"])
    plateau = f["plateau_s"] >= 0.05 * f["span_s"]
    if contrast > 0.5 and 0.15 <= f["duty_cycle"] <= 0.85 and plateau:
        return "PLATEAU"
    if f["seasonal_confidence"] >= CYCLE:
        return _cycle(f["period_s"])
    if f["burstiness"] > -0.1 or spikes > 0.02:
        return "BURSTY"
    return "IRREGULAR"


def _cycle(period_s: float) -> str:
    calendar = any(abs(period_s - c) <= 0.1 * c for c in _CALENDAR_S)
    return "SEASONAL" if calendar else "CYCLIC"
