"""Synthetic series of each pattern type (:data:`streams.capacity.PATTERN_TYPES`).

The shapes :func:`models.workload_features.pattern_type` names, drawn at random
levels, amplitudes, periods and noise:

- ``SEASONAL``: a cycle of a calendar period (an hour or a day) seen at least 3 times;
- ``CYCLIC``: a regular cycle of a period of its own (not a calendar one);
- ``TRENDING``: a straight ramp up or down;
- ``EXPONENTIAL_GROWTH`` / ``EXPONENTIAL_DECAY``: a level multiplied / divided by 5-20
  over the window, along an exponential;
- ``SPIKE`` / ``VALLEY``: a steady level with 1-4 short jumps up / drops down;
- ``PLATEAU``: long spells at a high level and at a low one;
- ``BURSTY``: many bursts of random heights and lengths at random times;
- ``STEADY_STATE``: a level with noise of about 1 %;
- ``IRREGULAR``: a smooth wander (AR(1)) with no period, trend or outliers.
"""

from __future__ import annotations

import numpy as np

from streams.capacity import HOST_METRICS, PATTERN_TYPES
from streams.errors import ConfigError

from .synthetic_process import ar1, phi

_CALENDAR_S = (3600.0, 86_400.0)


def pattern_series(pattern: str, n: int, step_s: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` positive values (a cpu-like percentage) of one pattern type.

    Raises:
        ConfigError: an unknown ``pattern``, ``n`` under 24 or ``step_s`` not positive.

    Examples:
        >>> y = pattern_series("TRENDING", 200, 60.0, np.random.default_rng(0))
        >>> y.shape, bool((y > 0).all())
        ((200,), True)
    """
    if pattern not in PATTERN_TYPES:
        msg = (
            f"The 'pattern' parameter of pattern_series must be one of {PATTERN_TYPES}. "
            f"Got {pattern!r} instead."
        )
        raise ConfigError(msg)
    if n < 24 or not step_s > 0:
        msg = f"pattern_series needs n >= 24 and step_s > 0. Got n={n!r}, step_s={step_s!r}."
        raise ConfigError(msg)
    level = rng.uniform(20.0, 50.0)
    x = np.arange(n) / (n - 1)
    white = rng.standard_normal(n)
    if pattern == "SEASONAL":
        fits = [p for p in _CALENDAR_S if 3 * p <= n * step_s and p >= 8 * step_s]
        if not fits:
            msg = (
                "A SEASONAL series needs 3 cycles of an hour or a day of 8 samples or more: "
                f"n * step_s >= 10800 and step_s <= 450. Got n={n}, step_s={step_s}."
            )
            raise ConfigError(msg)
        period = fits[int(rng.integers(0, len(fits)))]
        phase = rng.uniform(0, 2 * np.pi)
        cycle = np.sin(2 * np.pi * np.arange(n) * step_s / period + phase)
        y = level * (1.0 + rng.uniform(0.3, 0.6) * cycle + 0.03 * white)
    elif pattern == "CYCLIC":
        period = rng.uniform(n / 12, n / 4)
        while any(
            abs(period * step_s / c - round(period * step_s / c)) < 0.15
            for c in _CALENDAR_S
            if period * step_s >= 0.8 * c
        ):
            period *= 0.83
        phase = rng.uniform(0, 2 * np.pi)
        saw = (np.arange(n) / period + phase) % 1.0
        y = level * (0.6 + rng.uniform(0.6, 1.0) * saw + 0.03 * white)
    elif pattern == "TRENDING":
        change = rng.uniform(0.8, 1.5) * rng.choice([-1.0, 1.0])
        start = level * (1.0 if change > 0 else 1.0 + abs(change))
        y = start + level * change * x + 0.03 * level * white
    elif pattern in ("EXPONENTIAL_GROWTH", "EXPONENTIAL_DECAY"):
        factor = rng.uniform(5.0, 20.0)
        curve = np.exp(np.log(factor) * (x if pattern == "EXPONENTIAL_GROWTH" else 1.0 - x))
        y = 0.1 * level * curve * (1.0 + 0.03 * white)
    elif pattern in ("SPIKE", "VALLEY"):
        y = level * (1.0 + 0.02 * white)
        for _ in range(int(rng.integers(1, 5))):
            at = int(rng.integers(0, n - 3))
            width = int(rng.integers(1, 4))
            y[at : at + width] *= (
                rng.uniform(2.5, 4.0) if pattern == "SPIKE" else rng.uniform(0.05, 0.4)
            )
    elif pattern == "PLATEAU":
        y = np.full(n, 0.3 * level)
        i = int(rng.integers(0, n // 6))
        while i < n:
            on = int(rng.integers(n // 10, n // 4))
            y[i : i + on] = level * rng.uniform(1.8, 2.5)
            i += on + int(rng.integers(n // 10, n // 4))
        y = y * (1.0 + 0.03 * white)
    elif pattern == "BURSTY":
        bursts = rng.uniform(size=n) < rng.uniform(0.03, 0.1)
        heights = np.convolve(bursts * rng.pareto(1.5, n), np.ones(int(rng.integers(1, 4))), "same")
        y = 0.3 * level * (1.0 + 0.1 * white) + level * heights
    elif pattern == "STEADY_STATE":
        y = level * (1.0 + 0.01 * white)
    else:  # IRREGULAR
        wander = ar1(rng, n, phi(np.array([n * step_s / 30]), step_s), rng.standard_normal(1))[0]
        y = level * (1.0 + 0.25 * wander[:, 0] + 0.05 * white)
        t = np.arange(n) - (n - 1) / 2
        y = y - t * ((y - y.mean()) @ t) / (t @ t)  # no trend: an irregular wander
    return np.maximum(y, 0.01)


def pattern_host(pattern: str, n: int, step_s: float, rng: np.random.Generator) -> np.ndarray:
    """A host history ``(n, 6)`` whose cpu follows ``pattern``; the others hardly move.

    Examples:
        >>> pattern_host("SPIKE", 100, 60.0, np.random.default_rng(1)).shape
        (100, 6)
    """
    history = np.empty((n, len(HOST_METRICS)))
    history[:, 0] = pattern_series(pattern, n, step_s, rng)
    levels = np.array([0.0, 40.0, 5.0, 20.0, 20.0, 50.0])
    history[:, 1:] = levels[1:] * (1.0 + 0.005 * rng.standard_normal((n, 5)))
    return history
