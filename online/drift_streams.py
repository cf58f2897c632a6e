"""Synthetic streams of the two signals :mod:`online.drift` monitors, with known changes.

The drift monitor's defaults are calibrated on these streams
(``bench/drift_calibration.py``) and its tests replay them, so both see the same noise:

- :func:`residual_stream`: ``min(|log(actual / predicted)|, 2)`` of a bandwidth model.
  The log error is AR(1) around its mean with Student-t innovations (3 degrees of
  freedom) and a spread that wanders (busy and quiet spells), plus misses: 1 % of
  samples get an extra log error of 0.3 to 2 (log-uniform, either sign), a fifth of
  which is left on the next sample. The residuals of the internet LSTM on the FCC and
  HSDPA traces have a 99th percentile 12 to 50 times their median (13 times here).
- :func:`level_stream`: ``log(bandwidth)`` of a link: a persistent AR(1) around the
  link's level with Student-t innovations and short outage bursts (drops of 0.5 to 2.5
  in log that fade over a few samples), optionally a daily cycle.

A :class:`Change` says what happens at sample ``at``: ``"abrupt"`` steps the mean (the
log error's mean by ``size``; the level by the factor ``size``), ``"gradual"`` ramps to
the same over ``ramp`` samples, ``"variance"`` multiplies the noise's spread by ``size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streams.errors import ConfigError

__all__ = ["CHANGE_KINDS", "Change", "level_stream", "residual_stream"]

CHANGE_KINDS = ("abrupt", "gradual", "variance")
RESIDUAL_CLIP = 2.0
DAY_SAMPLES = 86_400


@dataclass(frozen=True, slots=True)
class Change:
    """A change at sample ``at`` (see the module docstring for ``kind`` and ``size``)."""

    kind: str
    at: int
    size: float
    ramp: int = 500

    def __post_init__(self) -> None:
        if self.kind not in CHANGE_KINDS:
            msg = f"The 'kind' of a Change must be one of {CHANGE_KINDS}. Got {self.kind!r}."
            raise ConfigError(msg)
        if self.at < 0 or self.ramp < 1:
            msg = f"A Change needs at >= 0 and ramp >= 1. Got at={self.at}, ramp={self.ramp}."
            raise ConfigError(msg)

    def profile(self, n: int) -> np.ndarray:
        """How far the change has gone at each of ``n`` samples: 0 before, 1 when complete."""
        t = np.arange(n, dtype=np.float64) - self.at
        if self.kind == "gradual":
            return np.clip((t + 1.0) / self.ramp, 0.0, 1.0)
        return (t >= 0).astype(np.float64)


def _ar1_t(rng: np.random.Generator, n: int, phi: float, df: float) -> np.ndarray:
    """Unit-variance AR(1) with Student-t innovations, started from its stationary law."""
    innov = rng.standard_t(df, n) * math.sqrt((df - 2.0) / df) * math.sqrt(1.0 - phi * phi)
    out = np.empty(n)
    prev = float(rng.standard_t(df)) * math.sqrt((df - 2.0) / df)
    for i, e in enumerate(innov.tolist()):
        prev = phi * prev + e
        out[i] = prev
    return out


def _log_uniform(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    return np.exp(rng.uniform(math.log(low), math.log(high), n))


def residual_stream(
    n: int,
    *,
    seed: int,
    sd: float = 0.05,
    phi: float = 0.5,
    burstiness: float = 0.25,
    miss_rate: float = 0.01,
    change: Change | None = None,
) -> np.ndarray:
    """``n`` residuals ``min(|e|, 2)`` of a model whose log error ``e`` has spread ``sd``.

    Examples:
        >>> residual_stream(5, seed=0).round(3).tolist()
        [0.013, 0.002, 0.029, 0.043, 0.103]
        >>> after = residual_stream(4_000, seed=0, change=Change("abrupt", 2_000, 0.3))
        >>> round(float(after[:2_000].mean()), 2), round(float(after[2_000:].mean()), 2)
        (0.05, 0.31)
    """
    rng = np.random.default_rng(seed)
    noise = _ar1_t(rng, n, phi, 3.0)
    # Busy and quiet spells: the spread wanders (log-AR(1), memory ~100 samples). The
    # traces' residuals show no memory beyond two samples within a file; the spells make
    # the stationary case harder than they are, a margin for links with busy hours.
    vol = np.exp(burstiness * _ar1_t(rng, n, 0.99, 30.0) - burstiness**2 / 2)
    misses = rng.random(n) < miss_rate
    miss = np.where(misses, _log_uniform(rng, n, 0.3, 2.0) * rng.choice((-1.0, 1.0), n), 0.0)
    # A miss is a level step the model catches up with over the next sample: a fifth of it
    # again then, which gives |e| the lag-1 autocorrelation of the FCC residuals (0.19).
    miss[1:] += 0.2 * miss[:-1]
    mean = np.zeros(n)
    spread = sd * vol
    if change is not None:
        done = change.profile(n)
        if change.kind == "variance":
            spread *= 1.0 + (change.size - 1.0) * done
        else:
            mean += change.size * done
    e = mean + spread * noise + miss
    return np.minimum(np.abs(e), RESIDUAL_CLIP)


def level_stream(
    n: int,
    *,
    seed: int,
    level_mbps: float = 100.0,
    sd: float = 0.2,
    phi: float = 0.95,
    outage_rate: float = 0.005,
    cycle: float = 0.0,
    change: Change | None = None,
) -> np.ndarray:
    """``n`` samples of ``log(bandwidth)`` around ``level_mbps`` (``cycle``: daily amplitude).

    Examples:
        >>> x = level_stream(4_000, seed=0, change=Change("abrupt", 2_000, 0.5))
        >>> [round(float(np.exp(np.median(part))), 1) for part in (x[:2_000], x[2_000:])]
        [100.3, 48.7]
    """
    rng = np.random.default_rng(seed)
    noise = _ar1_t(rng, n, phi, 3.0)
    drops = np.where(rng.random(n) < outage_rate, _log_uniform(rng, n, 0.5, 2.5), 0.0)
    outage = np.empty(n)
    prev = 0.0
    for i, d in enumerate(drops.tolist()):
        prev = 0.6 * prev + d
        outage[i] = prev
    base = np.full(n, math.log(level_mbps))
    if cycle:
        phase = rng.uniform(0.0, 2.0 * math.pi)
        base += cycle * np.sin(phase + 2.0 * math.pi * np.arange(n) / DAY_SAMPLES)
    spread = np.full(n, sd)
    if change is not None:
        done = change.profile(n)
        if change.kind == "variance":
            spread *= 1.0 + (change.size - 1.0) * done
        else:
            base += math.log(change.size) * done
    return base + spread * noise - outage
