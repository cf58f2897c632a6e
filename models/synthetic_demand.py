"""Synthetic host demand series for training and testing the demand forecaster.

Each series is one metric of one host (CPU %, a request rate, bytes per second)
sampled every ``step_s`` seconds, built from one of :data:`DEMAND_FAMILIES`: daily
and weekly cycles, Poisson request counts, bursts, on/off batch jobs, flat series,
plateaus and steps, trends, isolated spikes and random walks, each with its own noise
level. The daily cycle follows UTC time of the sample (its busiest hour drawn from
``peak_hours``), so the time-of-day features of a forecaster mean something.

:data:`TRAINING_RANGES` are the ranges the shipped model trains on;
:data:`HELD_OUT_RANGES` widen them (noisier, other amplitudes and busy hours, 30 s
sampling) to test on series unlike the training ones.

Examples:
    >>> series = demand_series(3, seed=1)
    >>> [(s.family, s.step_s, len(s.values)) for s in series]
    [('trend', 300.0, 2880), ('diurnal', 300.0, 2880), ('requests', 60.0, 2880)]
    >>> bool(np.all(np.isfinite(series[0].values)))
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.errors import ConfigError

from .synthetic_process import DAY_S, ar1, phi

DEMAND_FAMILIES: dict[str, str | None] = {
    "diurnal": "PERIODIC",
    "requests": "INTERACTIVE",
    "bursty": "BURSTY",
    "spikes": "BURSTY",
    "batch": "BATCH_PROCESSING",
    "flat": "STEADY_STATE",
    "steps": "MEMORY_INTENSIVE",
    "trend": None,
    "random_walk": None,
}
"""Family -> the workload type a classifier would most likely give such a host
(``None``: no type stands out; the forecaster's global weights apply)."""

WEEK_S = 7 * DAY_S
_EPOCH_2024 = 1_704_067_200.0  # 2024-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class DemandRanges:
    """The ranges series parameters are drawn from (uniformly unless said otherwise).

    Attributes:
        steps_s: sampling steps, one drawn per series.
        days_per_step: series length in days for each step (same order as ``steps_s``).
        noise: std of the multiplicative AR(1) noise.
        daily_amplitude: depth of the daily cycle (0: none, 1: down to zero at night).
        weekend_dip: share of demand lost on Saturdays and Sundays.
        peak_hours: the busiest UTC hour of the day.
        trend_per_day: relative change of level per day for the ``trend`` family.
    """

    steps_s: tuple[float, ...] = (60.0, 300.0)
    days_per_step: tuple[float, ...] = (2.0, 10.0)
    noise: tuple[float, float] = (0.01, 0.15)
    daily_amplitude: tuple[float, float] = (0.2, 0.8)
    weekend_dip: tuple[float, float] = (0.0, 0.4)
    peak_hours: tuple[float, float] = (9.0, 21.0)
    trend_per_day: tuple[float, float] = (-0.3, 0.5)


TRAINING_RANGES = DemandRanges()
HELD_OUT_RANGES = DemandRanges(
    steps_s=(30.0, 60.0, 300.0),
    days_per_step=(1.0, 2.0, 8.0),
    noise=(0.02, 0.25),
    daily_amplitude=(0.1, 0.9),
    weekend_dip=(0.0, 0.6),
    peak_hours=(6.0, 23.0),
    trend_per_day=(-0.5, 0.8),
)


@dataclass(frozen=True, slots=True)
class DemandSeries:
    """One synthetic demand series.

    Attributes:
        name: ``family-index`` (unique within a call).
        family: one of :data:`DEMAND_FAMILIES`.
        workload_type: the family's workload type (``None`` for no particular one).
        step_s: seconds between values.
        start_ts: event time of the first value (seconds since the epoch, UTC).
        values: the demand, finite floats.
    """

    name: str
    family: str
    workload_type: str | None
    step_s: float
    start_ts: float
    values: np.ndarray

    def timestamps(self) -> np.ndarray:
        """Event time of every value."""
        return self.start_ts + self.step_s * np.arange(len(self.values), dtype=np.float64)


def demand_series(
    count: int,
    seed: int,
    ranges: DemandRanges = TRAINING_RANGES,
    families: tuple[str, ...] = tuple(DEMAND_FAMILIES),
) -> list[DemandSeries]:
    """``count`` series, families taken in turn in a seeded random order.

    Raises:
        ConfigError: a family is unknown, ``count`` is negative, or the ranges'
            ``steps_s`` and ``days_per_step`` differ in length.
    """
    unknown = [f for f in families if f not in DEMAND_FAMILIES]
    if unknown or not families:
        msg = (
            f"The 'families' parameter of demand_series must be a non-empty subset of "
            f"{sorted(DEMAND_FAMILIES)}. Got {list(families)!r} instead."
        )
        raise ConfigError(msg)
    if count < 0:
        msg = f"The 'count' parameter of demand_series must be >= 0. Got {count!r} instead."
        raise ConfigError(msg)
    if len(ranges.steps_s) != len(ranges.days_per_step):
        msg = (
            "DemandRanges.steps_s and days_per_step must have the same length. Got "
            f"{len(ranges.steps_s)} and {len(ranges.days_per_step)}."
        )
        raise ConfigError(msg)
    rng = np.random.default_rng(seed)
    order = [families[i] for i in rng.permutation(len(families))]
    out = []
    for i in range(count):
        family = order[i % len(order)]
        pick = int(rng.integers(len(ranges.steps_s)))
        step = float(ranges.steps_s[pick])
        n = int(round(ranges.days_per_step[pick] * DAY_S / step))
        start = _EPOCH_2024 + step * float(rng.integers(0, int(365 * DAY_S / step)))
        ts = start + step * np.arange(n, dtype=np.float64)
        values = _FAMILY_MAKERS[family](rng, ts, step, ranges)
        out.append(
            DemandSeries(f"{family}-{i}", family, DEMAND_FAMILIES[family], step, start, values)
        )
    return out


# --------------------------------------------------------------------------- building blocks


def _u(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _cycle(rng: np.random.Generator, ts: np.ndarray, ranges: DemandRanges) -> np.ndarray:
    """A positive daily (and weekly) profile with mean about 1."""
    peak_s = _u(rng, ranges.peak_hours) * 3600.0
    phase = 2 * np.pi * (ts - peak_s) / DAY_S
    sharp = float(rng.uniform(0.0, 2.0))  # >0: a busy daytime plateau, a quiet night
    shape = np.exp(sharp * np.cos(phase))
    shape = shape / np.exp(sharp * np.cos(np.linspace(0, 2 * np.pi, 97)[:-1])).mean()
    amp = _u(rng, ranges.daily_amplitude)
    daily = (1 - amp) + amp * shape
    day_of_week = ((ts / DAY_S + 3.0) % 7.0).astype(np.int64)  # 0 = Monday
    dip = _u(rng, ranges.weekend_dip) if rng.random() < 0.6 else 0.0
    weekly = np.where(day_of_week >= 5, 1.0 - dip, 1.0)
    return np.asarray(daily * weekly)


def _noise(rng: np.random.Generator, ts: np.ndarray, step: float, std: float) -> np.ndarray:
    """Multiplicative noise: white plus AR(1) with a time constant of minutes."""
    tau = np.array([float(rng.uniform(120.0, 1800.0))])
    smooth, _ = ar1(rng, len(ts), phi(tau, step), np.zeros(1))
    white = rng.standard_normal(len(ts))
    mix = float(rng.uniform(0.2, 0.8))
    return np.exp(std * (mix * smooth[:, 0] + (1 - mix) * white))


def _units(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Scale a unit-mean shape to a metric: CPU % (clipped), a rate, or bytes/s."""
    kind = int(rng.integers(3))
    if kind == 0:
        return np.clip(x * rng.uniform(5.0, 60.0), 0.0, 100.0)
    if kind == 1:
        return x * 10 ** rng.uniform(0.0, 4.0)
    return x * 10 ** rng.uniform(5.0, 9.0)


def _episodes(
    rng: np.random.Generator, n: int, mean_gap: float, mean_len: float
) -> list[tuple[int, int]]:
    """(start, length) of on-episodes, exponential gaps and lengths in samples."""
    out, i = [], int(rng.exponential(mean_gap))
    while i < n:
        length = max(1, int(rng.exponential(mean_len)))
        out.append((i, length))
        i += length + max(1, int(rng.exponential(mean_gap)))
    return out


# --------------------------------------------------------------------------- families


def _diurnal(rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges) -> np.ndarray:
    return _units(rng, _cycle(rng, ts, r) * _noise(rng, ts, step, _u(rng, r.noise)))


def _requests(rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges) -> np.ndarray:
    rate = 10 ** rng.uniform(0.5, 3.5) * _cycle(rng, ts, r) * _noise(rng, ts, step, 0.05)
    return rng.poisson(rate).astype(np.float64)


def _bursty(rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges) -> np.ndarray:
    base = 1 + 0.3 * (_cycle(rng, ts, r) - 1)
    burst = np.zeros(len(ts))
    gap, length = rng.uniform(600.0, 7200.0) / step, rng.uniform(120.0, 1800.0) / step
    for start, n in _episodes(rng, len(ts), gap, length):
        height = rng.lognormal(0.5, 0.6)
        decay = np.exp(-np.arange(min(n, len(ts) - start)) / max(n * rng.uniform(0.3, 3.0), 1))
        burst[start : start + n] += height * (decay if rng.random() < 0.5 else 1.0)
    return _units(rng, (base + burst) * _noise(rng, ts, step, _u(rng, r.noise)))


def _spikes(rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges) -> np.ndarray:
    x = _cycle(rng, ts, r) * _noise(rng, ts, step, _u(rng, r.noise))
    hits = rng.random(len(ts)) < rng.uniform(0.002, 0.02)
    x = x + hits * rng.lognormal(1.0, 0.5, len(ts))
    return _units(rng, x)


def _batch(rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges) -> np.ndarray:
    off = rng.uniform(0.02, 0.2)
    x = np.full(len(ts), off)
    length = max(1, int(rng.uniform(600.0, 7200.0) / step))
    if rng.random() < 0.5:  # cron-like: every period at the same offset
        period = int(rng.choice([3600.0, 4 * 3600.0, 6 * 3600.0, DAY_S]) / step)
        phase = (((ts - ts[0]) / step).astype(np.int64) + int(rng.integers(period))) % period
        x = np.where(phase < min(length, period - 1), 1.0, x)
    else:
        for start, n in _episodes(rng, len(ts), 3 * length, length):
            x[start : start + n] = 1.0
    return _units(rng, x * _noise(rng, ts, step, _u(rng, r.noise)))


def _flat(rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges) -> np.ndarray:
    x = np.ones(len(ts)) if rng.random() < 0.3 else _noise(rng, ts, step, 0.1 * _u(rng, r.noise))
    return _units(rng, x)


def _steps(rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges) -> np.ndarray:
    level = np.ones(len(ts))
    for start, _ in _episodes(rng, len(ts), rng.uniform(3600.0, 6 * 3600.0) / step, 1):
        level[start:] *= rng.lognormal(0.0, 0.3)
    if rng.random() < 0.4:  # a slow leak reset by restarts (a memory sawtooth)
        leak = np.cumsum(np.full(len(ts), rng.uniform(0.2, 1.0) * step / DAY_S))
        restarts = rng.random(len(ts)) < step / rng.uniform(6 * 3600.0, DAY_S)
        leak -= np.maximum.accumulate(np.where(restarts, leak, 0.0))
        level = level * (1 + leak)
    return _units(rng, level * _noise(rng, ts, step, 0.3 * _u(rng, r.noise)))


def _trend(rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges) -> np.ndarray:
    days = (ts - ts[0]) / DAY_S
    rate = _u(rng, r.trend_per_day)
    growth = np.exp(rate * days) if rng.random() < 0.5 else np.maximum(1 + rate * days, 0.05)
    seasonal = _cycle(rng, ts, r) if rng.random() < 0.6 else 1.0
    return _units(rng, growth * seasonal * _noise(rng, ts, step, _u(rng, r.noise)))


def _random_walk(
    rng: np.random.Generator, ts: np.ndarray, step: float, r: DemandRanges
) -> np.ndarray:
    tau = np.array([float(rng.uniform(1800.0, DAY_S))])
    walk, _ = ar1(rng, len(ts), phi(tau, step), np.zeros(1))
    x = np.exp(rng.uniform(0.2, 0.8) * walk[:, 0]) * _noise(rng, ts, step, _u(rng, r.noise))
    return _units(rng, x)


_FAMILY_MAKERS = {
    "diurnal": _diurnal,
    "requests": _requests,
    "bursty": _bursty,
    "spikes": _spikes,
    "batch": _batch,
    "flat": _flat,
    "steps": _steps,
    "trend": _trend,
    "random_walk": _random_walk,
}
