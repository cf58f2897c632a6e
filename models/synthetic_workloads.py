"""Labelled synthetic host histories for every workload type and every pattern type.

Each workload type has a definition a capacity planner would recognise; the generator
draws one host of a type at a time (columns :data:`streams.capacity.HOST_METRICS`):

- ``CPU_INTENSIVE``: cpu held high (70-97 %) with small fluctuations; the rest modest.
- ``MEMORY_INTENSIVE``: memory held high (75-97 %), creeping slowly; cpu moderate.
- ``IO_INTENSIVE``: sustained disk traffic (120-700 MB/s); cpu moderate (I/O wait).
- ``NETWORK_INTENSIVE``: sustained network traffic (400-4,000 Mbit/s in, a share of it
  out); cpu moderate.
- ``BATCH_PROCESSING``: long jobs (minutes to hours) of high cpu and disk, idle between.
- ``REAL_TIME``: a high, steady request rate (800-8,000 /s) with low jitter; cpu and
  network steady.
- ``INTERACTIVE``: a human daily cycle (busy in the day, quiet at night) in requests,
  cpu and network, with the noise of people clicking.
- ``BACKGROUND``: low everything (cpu under 10 %), small irregular blips.
- ``PERIODIC``: cron-like jobs: short regular spikes of cpu and disk every few minutes
  to hours, quiet between.
- ``BURSTY``: irregular bursts of requests, cpu and network at random times, of random
  length and height.
- ``STEADY_STATE``: moderate load (cpu 20-50 %) that hardly moves.

Every host also gets realistic trouble: AR(1) and measurement noise, gaps (runs of NaN
rows and scattered NaN values), metrics it does not report (never the ones its type
is defined by), and sometimes a mixture (a share of another type's metrics blended in).
Sampling steps, lengths, levels, phases and periods are random. :data:`TRAIN` and
:data:`HELD_OUT` draw from different ranges (levels, noise, gaps, mixtures, cron
periods, batch job lengths, burst rates, sampling steps), so a held-out set drawn with
another seed *and* ``HELD_OUT`` tests generalisation, not memory.

:func:`pattern_series` draws a series of each pattern type of
:data:`streams.capacity.PATTERN_TYPES` (see :func:`models.workload_features.pattern_type`
for the rules that name them back). Everything is seeded and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from streams.capacity import HOST_METRICS, WORKLOAD_TYPES
from streams.errors import ConfigError

from .synthetic_patterns import pattern_host, pattern_series
from .synthetic_process import DAY_S

__all__ = [
    "HELD_OUT",
    "LABELS",
    "TRAIN",
    "SyntheticHost",
    "WorkloadParams",
    "generate_host",
    "generate_hosts",
    "pattern_host",
    "pattern_series",
]

LABELS: tuple[str, ...] = tuple(t for t in WORKLOAD_TYPES if t != "UNKNOWN")
"""The workload types the generator draws (every type but ``UNKNOWN``)."""

CPU, MEM, DISK, NET_IN, NET_OUT, REQ = range(len(HOST_METRICS))


@dataclass(frozen=True, slots=True)
class WorkloadParams:
    """The ranges the generator draws from (``TRAIN`` and ``HELD_OUT`` differ).

    Attributes:
        name: what the variant is called in reports.
        lengths: rows of a history that is not full (uniform in the range).
        full_share: share of hosts with ``lengths[1]`` rows (a worker keeps 1,440).
        steps: sampling steps in seconds to pick from.
        band: where in each type's level band a host sits, as fractions of the band.
        noise: multiplier of every type's noise.
        gap_share: share of rows lost in runs of NaN rows.
        missing_metric: probability that a host does not report 1-2 optional metrics.
        mix_probability, mix_share: how often and how much of another type is blended in.
        cron_periods_s: periods of ``PERIODIC`` jobs.
        batch_job_s, batch_idle_s: lengths of ``BATCH_PROCESSING`` jobs and idle spells.
        bursts_per_hour: arrival rate of ``BURSTY`` bursts.
    """

    name: str
    lengths: tuple[int, int] = (120, 1440)
    full_share: float = 0.5
    steps: tuple[float, ...] = (10.0, 30.0, 60.0, 60.0, 300.0)
    band: tuple[float, float] = (0.0, 0.8)
    noise: tuple[float, float] = (0.5, 1.2)
    gap_share: tuple[float, float] = (0.0, 0.1)
    missing_metric: float = 0.3
    mix_probability: float = 0.3
    mix_share: tuple[float, float] = (0.05, 0.25)
    cron_periods_s: tuple[float, ...] = (300.0, 600.0, 900.0, 1800.0, 3600.0)
    batch_job_s: tuple[float, float] = (900.0, 7200.0)
    batch_idle_s: tuple[float, float] = (600.0, 5400.0)
    bursts_per_hour: tuple[float, float] = (1.0, 6.0)


TRAIN = WorkloadParams("train")
"""The training distribution."""

HELD_OUT = WorkloadParams(
    "held-out",
    steps=(15.0, 20.0, 45.0, 60.0, 120.0, 180.0),
    band=(0.2, 1.0),
    noise=(0.8, 1.5),
    gap_share=(0.02, 0.15),
    missing_metric=0.4,
    mix_probability=0.4,
    mix_share=(0.1, 0.3),
    cron_periods_s=(120.0, 1200.0, 2700.0, 5400.0, 7200.0),
    batch_job_s=(600.0, 10800.0),
    batch_idle_s=(300.0, 7200.0),
    bursts_per_hour=(0.5, 10.0),
)
"""Different steps, levels, noise, gaps, mixtures, periods and rates from :data:`TRAIN`."""


@dataclass(frozen=True, slots=True)
class SyntheticHost:
    """One generated host: its history and what it is.

    Attributes:
        history: ``(n, 6)`` in :data:`HOST_METRICS` order, NaN where missing.
        step_s: seconds between rows.
        workload_type: the label (one of :data:`LABELS`).
        pattern_type: the shape its type gives its busiest metric (not a label).
        mixed_with: the type blended in, if any, and ``mix_share`` its share.
    """

    history: np.ndarray
    step_s: float
    workload_type: str
    pattern_type: str
    mixed_with: str | None = None
    mix_share: float = 0.0


_ESSENTIAL = {
    "CPU_INTENSIVE": {CPU},
    "MEMORY_INTENSIVE": {MEM},
    "IO_INTENSIVE": {DISK},
    "NETWORK_INTENSIVE": {NET_IN},
    "BATCH_PROCESSING": {CPU, DISK},
    "REAL_TIME": {CPU, REQ},
    "INTERACTIVE": {CPU, REQ},
    "BACKGROUND": {CPU, MEM},
    "PERIODIC": {CPU},
    "BURSTY": {CPU, REQ},
    "STEADY_STATE": {CPU, MEM},
}
_OPTIONAL = (DISK, NET_OUT, REQ, MEM, NET_IN)


class _Draw:
    """The random draws of one host: its generator, variant, time axis and noise level."""

    def __init__(self, rng: np.random.Generator, params: WorkloadParams, n: int, step: float):
        self.rng, self.params, self.n, self.step = rng, params, n, step
        self.t = step * np.arange(n) + rng.uniform(0.0, 7 * DAY_S)
        self.noise = float(rng.uniform(*params.noise))

    def level(self, low: float, high: float) -> float:
        """A level in the type's band ``[low, high]``, where the variant's ``band`` says."""
        return low + (high - low) * float(self.rng.uniform(*self.params.band))

    def uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def ar(self, tau_s: float) -> np.ndarray:
        """Unit-variance AR(1) noise with time constant ``tau_s`` seconds."""
        a = math.exp(-self.step / tau_s)
        innovations = self.rng.standard_normal(self.n + 1)
        start = np.array([a * innovations[0]])  # stationary: unit variance from the start
        out, _ = lfilter([math.sqrt(1.0 - a * a)], [1.0, -a], innovations[1:], zi=start)
        return np.asarray(out)

    def jitter(
        self, value: float | np.ndarray, relative: float, tau_s: float = 120.0
    ) -> np.ndarray:
        """``value`` with AR(1) and white noise of ``relative`` size (times the noise level)."""
        size = relative * self.noise
        white = self.rng.standard_normal(self.n)
        return np.asarray(value) * (1.0 + size * (0.7 * self.ar(tau_s) + 0.3 * white))

    def quiet(self) -> np.ndarray:
        """Modest levels of every metric, the background the types stand out from."""
        cols = np.empty((self.n, len(HOST_METRICS)))
        cols[:, CPU] = self.jitter(self.uniform(5.0, 25.0), 0.15)
        cols[:, MEM] = self.jitter(self.uniform(20.0, 50.0), 0.03, 3600.0)
        cols[:, DISK] = self.jitter(self.uniform(1.0, 15.0), 0.4)
        cols[:, NET_IN] = self.jitter(self.uniform(1.0, 40.0), 0.3)
        cols[:, NET_OUT] = self.jitter(self.uniform(1.0, 40.0), 0.3)
        cols[:, REQ] = self.jitter(self.uniform(0.0, 30.0), 0.3)
        return cols

    def episodes(self, on_s: tuple[float, float], off_s: tuple[float, float]) -> np.ndarray:
        """A 0/1 series of alternating on and off spells, durations uniform in the ranges."""
        out = np.zeros(self.n)
        i = int(self.rng.integers(0, max(1, round(off_s[1] / self.step))))
        while i < self.n:
            on = max(1, round(self.uniform(*on_s) / self.step))
            out[i : i + on] = 1.0
            i += on + max(1, round(self.uniform(*off_s) / self.step))
        return out


def _cpu_intensive(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    cols[:, CPU] = d.jitter(d.level(70.0, 97.0), 0.04)
    return cols, "STEADY_STATE"


def _memory_intensive(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    creep = d.uniform(0.0, 4.0) * np.linspace(0.0, 1.0, d.n)
    cols[:, MEM] = d.jitter(d.level(75.0, 95.0) + creep, 0.015, 1800.0)
    cols[:, CPU] = d.jitter(d.uniform(10.0, 45.0), 0.12)
    return cols, "TRENDING" if creep[-1] > 2.0 else "STEADY_STATE"


def _io_intensive(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    cols[:, DISK] = d.jitter(d.level(120.0, 700.0), 0.2)
    cols[:, CPU] = d.jitter(d.uniform(15.0, 45.0), 0.12)
    cols[:, MEM] = d.jitter(d.uniform(40.0, 70.0), 0.03, 3600.0)
    return cols, "IRREGULAR"


def _network_intensive(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    inbound = d.level(400.0, 4000.0)
    cols[:, NET_IN] = d.jitter(inbound, 0.15)
    cols[:, NET_OUT] = d.jitter(inbound * d.uniform(0.2, 1.2), 0.15)
    cols[:, CPU] = d.jitter(d.uniform(20.0, 50.0), 0.1)
    cols[:, REQ] = d.jitter(d.uniform(10.0, 200.0), 0.2)
    return cols, "IRREGULAR"


def _batch(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    job = d.episodes(d.params.batch_job_s, d.params.batch_idle_s)
    cols[:, CPU] = d.jitter(d.uniform(1.0, 6.0) + job * d.level(75.0, 95.0), 0.05)
    cols[:, DISK] = d.jitter(d.uniform(0.5, 3.0) + job * d.level(40.0, 300.0), 0.2)
    cols[:, MEM] = d.jitter(d.uniform(15.0, 30.0) + job * d.uniform(20.0, 50.0), 0.03)
    cols[:, REQ] = d.jitter(d.uniform(0.0, 2.0), 0.3)
    return cols, "PLATEAU"


def _real_time(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    cols[:, REQ] = d.jitter(d.level(800.0, 8000.0), 0.02)
    cols[:, CPU] = d.jitter(d.uniform(35.0, 65.0), 0.02)
    cols[:, NET_IN] = d.jitter(d.uniform(50.0, 400.0), 0.03)
    cols[:, NET_OUT] = d.jitter(d.uniform(50.0, 400.0), 0.03)
    cols[:, MEM] = d.jitter(d.uniform(40.0, 70.0), 0.01)
    return cols, "STEADY_STATE"


def _interactive(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    hour = (d.t % DAY_S) / 3600.0
    day = 1.0 / (1.0 + np.exp(-(hour - 8.0) * 1.5)) - 1.0 / (1.0 + np.exp(-(hour - 19.0) * 1.5))
    weekday = np.where((d.t // DAY_S) % 7 < 5, 1.0, d.uniform(0.3, 0.7))
    activity = (d.uniform(0.05, 0.2) + day) * weekday
    peak = d.level(30.0, 600.0)
    users = activity * d.jitter(1.0, 0.12, 600.0)
    cols[:, REQ] = peak * users * d.rng.gamma(20.0, 1.0 / 20.0, d.n)
    cols[:, CPU] = d.jitter(d.uniform(3.0, 8.0) + d.uniform(30.0, 60.0) * users, 0.08)
    cols[:, NET_OUT] = d.jitter(d.uniform(1.0, 5.0) + peak * d.uniform(0.1, 0.5) * users, 0.1)
    cols[:, NET_IN] = d.jitter(d.uniform(1.0, 5.0) + peak * d.uniform(0.02, 0.1) * users, 0.1)
    return cols, "SEASONAL"


def _background(d: _Draw) -> tuple[np.ndarray, str]:
    cols = np.empty((d.n, len(HOST_METRICS)))
    blips = d.episodes((d.step, 4 * d.step), (600.0, 3600.0)) * d.uniform(1.0, 4.0)
    cols[:, CPU] = d.jitter(d.uniform(1.0, 6.0) + blips, 0.2)
    cols[:, MEM] = d.jitter(d.uniform(8.0, 30.0), 0.02, 3600.0)
    cols[:, DISK] = d.jitter(d.uniform(0.1, 4.0) * (1.0 + blips), 0.4)
    cols[:, NET_IN] = d.jitter(d.uniform(0.05, 4.0), 0.4)
    cols[:, NET_OUT] = d.jitter(d.uniform(0.05, 4.0), 0.4)
    cols[:, REQ] = d.jitter(d.uniform(0.0, 3.0), 0.5)
    return cols, "IRREGULAR"


def _periodic(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    span = d.n * d.step
    periods = [p for p in d.params.cron_periods_s if 4 * d.step <= p <= span / 3]
    period = float(d.rng.choice(periods)) if periods else max(4 * d.step, span / 4)
    length = max(d.step, d.uniform(0.04, 0.2) * period)
    phase = d.uniform(0.0, period)
    job = (((d.t + phase) % period) < length).astype(np.float64)
    cols[:, CPU] = d.jitter(d.uniform(2.0, 12.0) + job * d.level(45.0, 90.0), 0.06)
    cols[:, DISK] = d.jitter(d.uniform(0.5, 5.0) + job * d.uniform(10.0, 200.0), 0.2)
    return cols, "SEASONAL" if period in (3600.0, 7200.0) else "CYCLIC"


def _bursty(d: _Draw) -> tuple[np.ndarray, str]:
    cols = d.quiet()
    rate = d.uniform(*d.params.bursts_per_hour)
    gap_s = 3600.0 / rate
    bursts = d.episodes((d.step, max(d.step, d.uniform(120.0, 600.0))), (gap_s / 4, 2 * gap_s))
    height = bursts * d.rng.pareto(2.5, d.n).clip(0.0, 4.0) + bursts
    base = d.uniform(10.0, 100.0)
    cols[:, REQ] = d.jitter(base * (1.0 + d.level(3.0, 10.0) * height), 0.1)
    cols[:, CPU] = d.jitter(d.uniform(5.0, 20.0) + d.uniform(40.0, 70.0) * height.clip(0, 1), 0.08)
    cols[:, NET_OUT] = d.jitter(d.uniform(2.0, 20.0) * (1.0 + 4.0 * height), 0.1)
    return cols, "BURSTY"


def _steady(d: _Draw) -> tuple[np.ndarray, str]:
    cols = np.empty((d.n, len(HOST_METRICS)))
    cols[:, CPU] = d.jitter(d.level(20.0, 50.0), 0.01)
    cols[:, MEM] = d.jitter(d.uniform(30.0, 60.0), 0.005)
    cols[:, DISK] = d.jitter(d.uniform(5.0, 40.0), 0.02)
    cols[:, NET_IN] = d.jitter(d.uniform(10.0, 150.0), 0.02)
    cols[:, NET_OUT] = d.jitter(d.uniform(10.0, 150.0), 0.02)
    cols[:, REQ] = d.jitter(d.uniform(10.0, 300.0), 0.02)
    return cols, "STEADY_STATE"


_BUILDERS: dict[str, Callable[[_Draw], tuple[np.ndarray, str]]] = {
    "CPU_INTENSIVE": _cpu_intensive,
    "MEMORY_INTENSIVE": _memory_intensive,
    "IO_INTENSIVE": _io_intensive,
    "NETWORK_INTENSIVE": _network_intensive,
    "BATCH_PROCESSING": _batch,
    "REAL_TIME": _real_time,
    "INTERACTIVE": _interactive,
    "BACKGROUND": _background,
    "PERIODIC": _periodic,
    "BURSTY": _bursty,
    "STEADY_STATE": _steady,
}


def generate_host(
    workload_type: str, rng: np.random.Generator, params: WorkloadParams = TRAIN
) -> SyntheticHost:
    """One host of ``workload_type`` drawn from ``params``' ranges.

    Raises:
        ConfigError: ``workload_type`` is not one of :data:`LABELS`.

    Examples:
        >>> from streams.capacity import PATTERN_TYPES
        >>> host = generate_host("PERIODIC", np.random.default_rng(4))
        >>> host.history.shape[1], host.workload_type, host.pattern_type in PATTERN_TYPES
        (6, 'PERIODIC', True)
    """
    if workload_type not in _BUILDERS:
        msg = (
            f"The 'workload_type' parameter of generate_host must be one of {LABELS}. "
            f"Got {workload_type!r} instead."
        )
        raise ConfigError(msg)
    p = params
    full = rng.uniform() < p.full_share
    n = p.lengths[1] if full else int(rng.integers(p.lengths[0], p.lengths[1] + 1))
    step = float(rng.choice(p.steps))
    draw = _Draw(rng, p, n, step)
    cols, pattern = _BUILDERS[workload_type](draw)
    mixed_with, share = None, 0.0
    if rng.uniform() < p.mix_probability:
        mixed_with = str(rng.choice([t for t in LABELS if t != workload_type]))
        share = float(rng.uniform(*p.mix_share))
        other, _ = _BUILDERS[mixed_with](draw)
        cols = (1.0 - share) * cols + share * other
    cols[:, [CPU, MEM]] = cols[:, [CPU, MEM]].clip(0.0, 100.0)
    cols = cols.clip(0.0, None)
    _drop(cols, workload_type, draw)
    return SyntheticHost(cols, step, workload_type, pattern, mixed_with, share)


def _drop(cols: np.ndarray, workload_type: str, d: _Draw) -> None:
    """Unreported optional metrics, runs of missing rows and scattered missing values."""
    rng, n = d.rng, d.n
    if rng.uniform() < d.params.missing_metric:
        optional = [m for m in _OPTIONAL if m not in _ESSENTIAL[workload_type]]
        count = int(rng.integers(1, 3))
        cols[:, rng.choice(optional, size=min(count, len(optional)), replace=False)] = np.nan
    lost = int(rng.uniform(*d.params.gap_share) * n)
    while lost > 0:
        run = min(lost, int(rng.integers(1, max(2, n // 20))))
        start = int(rng.integers(0, max(1, n - run)))
        cols[start : start + run] = np.nan
        lost -= run
    cols[rng.uniform(size=cols.shape) < 0.005] = np.nan


def generate_hosts(
    per_type: int,
    seed: int,
    params: WorkloadParams = TRAIN,
    types: Sequence[str] = LABELS,
) -> list[SyntheticHost]:
    """``per_type`` hosts of each of ``types``, interleaved, from one seeded generator.

    Examples:
        >>> hosts = generate_hosts(2, seed=1)
        >>> len(hosts), sorted({h.workload_type for h in hosts}) == sorted(LABELS)
        (22, True)
        >>> [h.history.shape for h in generate_hosts(1, 5)[:2]]
        [(149, 6), (1299, 6)]
    """
    if per_type < 0:
        msg = f"The 'per_type' parameter of generate_hosts must be >= 0. Got {per_type!r}."
        raise ConfigError(msg)
    rng = np.random.default_rng(seed)
    return [generate_host(t, rng, params) for _ in range(per_type) for t in types]
