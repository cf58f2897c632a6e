"""Synthetic host telemetry: :func:`synthesize_host_series` and :class:`HostTrafficSource`.

A host's load follows the daily cycle, AR(1) noise, bursts and deployment
regimes of :mod:`models.synthetic_process`, shaped by one of
:data:`HOST_PROFILES`; CPU, memory, disk I/O, inbound network and request rate
follow from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .synthetic_process import (
    DAY_S,
    ChunkedSource,
    Episodes,
    ar1,
    as_rng,
    burst_episode,
    check_choice,
    check_n_step,
    duration,
    episodes,
    phase_origin,
    phi,
)

__all__ = [
    "HOST_METRICS",
    "HOST_PROFILES",
    "HostTrafficSource",
    "synthesize_host_series",
]

HOST_METRICS: tuple[str, ...] = (
    "cpu_pct",
    "mem_pct",
    "disk_io_mbps",
    "net_in_mbps",
    "requests_per_s",
)


@dataclass(frozen=True)
class _HostProfile:
    load_base: float
    load_amp: float
    load_noise: float
    burst_gap_s: float
    burst_len_s: float
    burst_depth: tuple[float, float]
    cpu_idle: float
    cpu_gain: float
    mem_base: float
    mem_gain: float
    io_scale: float
    net_scale: float
    req_scale: float


HOST_PROFILES: dict[str, _HostProfile] = {
    "web": _HostProfile(0.35, 0.25, 0.06, 3600.0, 300.0, (0.2, 0.4),
                        3.0, 85.0, 40.0, 20.0, 40.0, 300.0, 2500.0),
    "batch": _HostProfile(0.15, 0.05, 0.04, 7200.0, 1800.0, (0.5, 0.75),
                          2.0, 95.0, 30.0, 45.0, 150.0, 80.0, 50.0),
    "database": _HostProfile(0.4, 0.2, 0.05, 5400.0, 600.0, (0.15, 0.35),
                             4.0, 70.0, 70.0, 15.0, 250.0, 200.0, 1500.0),
    "idle": _HostProfile(0.05, 0.03, 0.02, 14400.0, 120.0, (0.1, 0.3),
                         1.0, 60.0, 15.0, 5.0, 5.0, 10.0, 5.0),
}  # fmt: skip
"""Host behaviours ``synthesize_host_series`` can take as ``profile``."""

_HOST_TAU_S = np.array([1800.0, 4 * 3600.0])  # load noise, memory drift
_HOST_REGIME_MEAN_S = 12 * 3600.0


@dataclass
class _HostState:
    profile: _HostProfile
    step_s: float
    t_s: float
    ar: np.ndarray
    regime: Episodes = field(default_factory=lambda: Episodes(np.zeros(2)))
    burst: Episodes = field(default_factory=lambda: Episodes(np.zeros(1), active=True))


def _new_host_state(
    profile: str, step_s: float, rng: np.random.Generator, start_ts: float | None
) -> _HostState:
    return _HostState(
        profile=HOST_PROFILES[profile],
        step_s=step_s,
        t_s=phase_origin(start_ts, rng),
        ar=rng.standard_normal(2),
    )


def _host_chunk(state: _HostState, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    p, step = state.profile, state.step_s
    t = state.t_s + step * np.arange(n)
    state.t_s += step * n
    diurnal = np.cos(2.0 * np.pi * t / DAY_S)
    ar, state.ar = ar1(rng, n, phi(_HOST_TAU_S, step), state.ar)

    def next_regime(g: np.random.Generator, _active: bool) -> tuple[np.ndarray, int, bool]:
        load_shift = g.uniform(-0.08, 0.12)
        mem_shift = g.normal(0.0, 6.0)
        return np.array([load_shift, mem_shift]), duration(g, _HOST_REGIME_MEAN_S, step, 10), True

    regime = episodes(rng, n, state.regime, next_regime)
    burst = episodes(
        rng, n, state.burst, burst_episode(p.burst_gap_s, p.burst_len_s, p.burst_depth, step)
    )[:, 0]
    load = p.load_base + regime[:, 0] + p.load_amp * diurnal + p.load_noise * ar[:, 0] + burst
    load = np.clip(load, 0.0, 1.0)
    cpu = np.clip(p.cpu_idle + p.cpu_gain * load + rng.normal(0.0, 2.0, n), 0.0, 100.0)
    mem = p.mem_base + regime[:, 1] + p.mem_gain * (0.5 * load + 0.25 * (diurnal + 1.0))
    mem = np.clip(mem + 3.0 * ar[:, 1] + rng.normal(0.0, 0.5, n), 0.0, 100.0)
    disk = np.clip(p.io_scale * (0.2 + load) * rng.exponential(1.0, n), 0.0, 20.0 * p.io_scale)
    net = p.net_scale * (0.1 + load) * rng.gamma(8.0, 1.0 / 8.0, n)
    req = p.req_scale * load * rng.gamma(16.0, 1.0 / 16.0, n)
    return {
        "cpu_pct": cpu,
        "mem_pct": mem,
        "disk_io_mbps": disk,
        "net_in_mbps": net,
        "requests_per_s": req,
    }


def synthesize_host_series(
    n: int,
    *,
    step_s: float = 60.0,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    profile: str | None = None,
    start_ts: float | None = None,
) -> dict[str, np.ndarray]:
    """Synthesize ``n`` successive samples of one host's metrics.

    Args:
        n: number of samples.
        step_s: seconds between samples.
        seed: seed of a fresh generator; give this or ``rng``.
        rng: generator to draw from (advanced by the call).
        profile: one of :data:`HOST_PROFILES` (``'web'`` when None).
        start_ts: epoch seconds of the first sample (aligns the daily peak to
            14:00 UTC); random phase when None.

    Returns:
        Arrays of length ``n`` under :data:`HOST_METRICS`: ``cpu_pct`` and
        ``mem_pct`` in 0-100, ``disk_io_mbps``, ``net_in_mbps`` and
        ``requests_per_s`` >= 0.

    Raises:
        ConfigError: unknown profile, negative ``n``, non-positive ``step_s``.

    Examples:
        >>> m = synthesize_host_series(1440, seed=3)
        >>> sorted(m)
        ['cpu_pct', 'disk_io_mbps', 'mem_pct', 'net_in_mbps', 'requests_per_s']
        >>> m["cpu_pct"].shape, round(float(m["cpu_pct"][0]), 2)
        ((1440,), 40.63)
        >>> bool(m["mem_pct"].max() <= 100.0)
        True
    """
    caller = "synthesize_host_series"
    name = "web" if profile is None else profile
    check_choice("profile", name, tuple(HOST_PROFILES), caller)
    check_n_step(n, step_s, caller)
    gen = as_rng(seed, rng, caller)
    return _host_chunk(_new_host_state(name, step_s, gen, start_ts), int(n), gen)


class HostTrafficSource(ChunkedSource):
    """Endless samples of one host, for the live producer.

    Continues its state across chunks like :class:`models.synthetic.LinkTrafficSource`;
    rows are arrays in :data:`HOST_METRICS` order, :meth:`next_metrics` gives a dict.

    Args:
        step_s: seconds between samples.
        seed: seed of a fresh generator; give this or ``rng``.
        rng: generator to draw from.
        profile: one of :data:`HOST_PROFILES` (``'web'`` when None).
        start_ts: epoch seconds of the first sample (aligns the daily cycle).
        chunk_size: rows generated per internal call.

    Examples:
        >>> src = HostTrafficSource(seed=2, profile="database", chunk_size=16)
        >>> src.take(40).shape
        (40, 5)
        >>> {k: round(v, 1) for k, v in src.next_metrics().items() if k.endswith("_pct")}
        {'cpu_pct': 23.6, 'mem_pct': 75.9}
    """

    def __init__(
        self,
        *,
        step_s: float = 60.0,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        profile: str | None = None,
        start_ts: float | None = None,
        chunk_size: int = 4096,
    ) -> None:
        caller = "HostTrafficSource"
        name = "web" if profile is None else profile
        check_choice("profile", name, tuple(HOST_PROFILES), caller)
        check_n_step(0, step_s, caller)
        super().__init__(chunk_size)
        self.profile = name
        self.step_s = step_s
        self._rng = as_rng(seed, rng, caller)
        self._state = _new_host_state(name, step_s, self._rng, start_ts)

    def _next_chunk(self) -> np.ndarray:
        cols = _host_chunk(self._state, self.chunk_size, self._rng)
        return np.column_stack([cols[k] for k in HOST_METRICS])

    def next_metrics(self) -> dict[str, float]:
        """The next row as ``{metric name: float}``."""
        row = next(self)
        return {k: float(v) for k, v in zip(HOST_METRICS, row, strict=True)}
