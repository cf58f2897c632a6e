"""Synthetic link and host telemetry with structure a forecaster can learn.

Pure numpy: every function takes a seed or a ``np.random.Generator`` and reads
no clock. A series is built from

* a diurnal cycle (period 86,400 s of series time, so ``step_s`` scales it),
* AR(1) noise with a time constant in seconds (smooth at ``step_s=1``),
* bursts: short congestion episodes that raise utilisation,
* regime changes: level shifts that last hours (route or capacity changes
  for links, deployments for hosts),

and the per-sample draws the seed names: normal (bandwidth and CPU
measurement noise), gamma (latency, jitter, throughput of requests and
network) and exponential (packet loss, disk I/O).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from novacron.errors import ConfigError

__all__ = [
    "HOST_METRICS",
    "HOST_PROFILES",
    "LINK_COLUMNS",
    "LINK_MODES",
    "HostTrafficSource",
    "LinkTrafficSource",
    "synthesize_host_series",
    "synthesize_link_series",
]

LINK_COLUMNS: tuple[str, ...] = (
    "bandwidth_mbps",
    "latency_ms",
    "packet_loss_pct",
    "jitter_ms",
    "throughput_mbps",
)
LINK_MODES: tuple[str, ...] = ("datacenter", "internet")
HOST_METRICS: tuple[str, ...] = (
    "cpu_pct",
    "mem_pct",
    "disk_io_mbps",
    "net_in_mbps",
    "requests_per_s",
)

_DAY_S = 86_400.0
_PEAK_S = 14 * 3600.0  # busiest hour of the day, UTC, when a start_ts aligns the cycle
_AR_BLOCK = 128


# --------------------------------------------------------------------------- helpers


def _as_rng(seed: int | None, rng: np.random.Generator | None, caller: str) -> np.random.Generator:
    if seed is not None and rng is not None:
        msg = f"{caller} takes either 'seed' or 'rng', not both. Got seed={seed!r} and an rng."
        raise ConfigError(msg)
    return rng if rng is not None else np.random.default_rng(seed)


def _check_n_step(n: int, step_s: float, caller: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        msg = f"The 'n' parameter of {caller} must be an int >= 0. Got {n!r} instead."
        raise ConfigError(msg)
    if not np.isfinite(step_s) or step_s <= 0:
        msg = f"The 'step_s' parameter of {caller} must be a float > 0. Got {step_s!r} instead."
        raise ConfigError(msg)


def _check_choice(name: str, value: object, choices: tuple[str, ...], caller: str) -> None:
    if value not in choices:
        allowed = "{" + ", ".join(repr(c) for c in sorted(choices)) + "}"
        msg = f"The {name!r} parameter of {caller} must be one of {allowed}. Got {value!r} instead."
        raise ConfigError(msg)


def _phase_origin(start_ts: float | None, rng: np.random.Generator) -> float:
    """Seconds into the day of the first sample, measured from the daily peak."""
    if start_ts is None:
        return float(rng.uniform(0.0, _DAY_S))
    return (float(start_ts) - _PEAK_S) % _DAY_S


def _ar1(
    rng: np.random.Generator, n: int, phi: np.ndarray, x_prev: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance AR(1) columns continuing from ``x_prev``; returns (x, last row).

    Blocks of 128 steps are filtered with one matrix product each, so a long
    series costs a few numpy calls rather than a Python loop per sample.
    """
    k = phi.size
    if n == 0:
        return np.empty((0, k)), x_prev
    blocks = -(-n // _AR_BLOCK)
    innov = rng.standard_normal((blocks, _AR_BLOCK, k)) * np.sqrt(1.0 - phi**2)
    lag = np.arange(_AR_BLOCK)[:, None] - np.arange(_AR_BLOCK)[None, :]
    # kernel[c, j, i] = phi_c ** (j - i) for i <= j: the weight of innovation i at step j
    kernel = np.where(lag >= 0, phi[:, None, None] ** np.maximum(lag, 0), 0.0)
    filtered = np.einsum("bic,cji->bjc", innov, kernel)
    carry = phi[None, :] ** (np.arange(_AR_BLOCK)[:, None] + 1)  # (B, k)
    out = np.empty_like(filtered)
    prev = x_prev
    for b in range(blocks):
        out[b] = filtered[b] + carry * prev
        prev = out[b, -1]
    x = out.reshape(blocks * _AR_BLOCK, k)[:n]
    return x, x[-1].copy()


@dataclass
class _Episodes:
    """A piecewise-constant process: a level held for a random number of samples."""

    level: np.ndarray
    left: int = 0
    active: bool = False


def _episodes(
    rng: np.random.Generator,
    n: int,
    state: _Episodes,
    next_episode: Callable[[np.random.Generator, bool], tuple[np.ndarray, int, bool]],
) -> np.ndarray:
    out = np.empty((n, state.level.size))
    i = 0
    while i < n:
        if state.left <= 0:
            state.level, state.left, state.active = next_episode(rng, state.active)
        k = min(state.left, n - i)
        out[i : i + k] = state.level
        i += k
        state.left -= k
    return out


def _duration(rng: np.random.Generator, mean_s: float, step_s: float, floor: int = 1) -> int:
    return max(floor, round(rng.exponential(mean_s) / step_s))


def _burst_episode(
    mean_gap_s: float, mean_len_s: float, depth: tuple[float, float], step_s: float
) -> Callable[[np.random.Generator, bool], tuple[np.ndarray, int, bool]]:
    def nxt(rng: np.random.Generator, active: bool) -> tuple[np.ndarray, int, bool]:
        if active:  # a burst ended: quiet until the next one
            return np.zeros(1), _duration(rng, mean_gap_s, step_s), False
        return np.array([rng.uniform(*depth)]), _duration(rng, mean_len_s, step_s), True

    return nxt


def _phi(tau_s: np.ndarray, step_s: float) -> np.ndarray:
    return np.exp(-step_s / np.asarray(tau_s, dtype=float))


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class _LinkParams:
    capacity: float
    bw_range: tuple[float, float]
    lat_base: float
    lat_range: tuple[float, float]
    lat_gain: float
    jit_ratio: float
    jit_max: float
    loss_scale: float
    loss_gain: float
    loss_max: float
    util_base: float
    util_amp: float
    util_noise: float
    regime_lat_sigma: float


_LINK_PARAMS = {
    "datacenter": _LinkParams(
        capacity=9000.0, bw_range=(1000.0, 10000.0), lat_base=1.8, lat_range=(1.0, 10.0),
        lat_gain=0.3, jit_ratio=0.1, jit_max=5.0, loss_scale=5e-5, loss_gain=1.0,
        loss_max=0.00099, util_base=0.45, util_amp=0.2, util_noise=0.06, regime_lat_sigma=0.1,
    ),
    "internet": _LinkParams(
        capacity=880.0, bw_range=(100.0, 900.0), lat_base=90.0, lat_range=(50.0, 500.0),
        lat_gain=0.25, jit_ratio=0.08, jit_max=150.0, loss_scale=0.05, loss_gain=1.5,
        loss_max=2.0, util_base=0.55, util_amp=0.2, util_noise=0.08, regime_lat_sigma=0.25,
    ),
}  # fmt: skip

_LINK_TAU_S = np.array([900.0, 600.0])  # utilisation noise, capacity noise
_LINK_REGIME_MEAN_S = 2 * 3600.0
_BW_UTIL_GAIN = 0.65  # share of capacity that peak demand takes away
_LINK_BURST_GAP_S = 600.0
_LINK_BURST_LEN_S = 30.0


@dataclass
class _LinkState:
    params: _LinkParams
    step_s: float
    t_s: float
    ar: np.ndarray
    regime: _Episodes = field(default_factory=lambda: _Episodes(np.ones(2)))
    burst: _Episodes = field(default_factory=lambda: _Episodes(np.zeros(1), active=True))


def _new_link_state(
    mode: str, step_s: float, rng: np.random.Generator, start_ts: float | None
) -> _LinkState:
    return _LinkState(
        params=_LINK_PARAMS[mode],
        step_s=step_s,
        t_s=_phase_origin(start_ts, rng),
        ar=rng.standard_normal(2),
    )


def _link_chunk(state: _LinkState, n: int, rng: np.random.Generator) -> np.ndarray:
    p, step = state.params, state.step_s
    t = state.t_s + step * np.arange(n)
    state.t_s += step * n
    diurnal = np.cos(2.0 * np.pi * t / _DAY_S)
    ar, state.ar = _ar1(rng, n, _phi(_LINK_TAU_S, step), state.ar)

    def next_regime(g: np.random.Generator, _active: bool) -> tuple[np.ndarray, int, bool]:
        bw = np.clip(g.normal(1.0, 0.1), 0.7, 1.25)
        lat = np.clip(g.lognormal(0.0, p.regime_lat_sigma), 0.6, 1.6)
        return np.array([bw, lat]), _duration(g, _LINK_REGIME_MEAN_S, step, floor=10), True

    regime = _episodes(rng, n, state.regime, next_regime)
    burst = _episodes(
        rng, n, state.burst,
        _burst_episode(_LINK_BURST_GAP_S, _LINK_BURST_LEN_S, (0.2, 0.45), step),
    )[:, 0]  # fmt: skip

    util = np.clip(p.util_base + p.util_amp * diurnal + p.util_noise * ar[:, 0] + burst, 0.02, 0.97)
    congestion = util**3 / (1.05 - util)

    bw = p.capacity * regime[:, 0] * (1.0 - _BW_UTIL_GAIN * util) * np.exp(0.06 * ar[:, 1])
    bw = np.clip(bw * (1.0 + rng.normal(0.0, 0.015, n)), *p.bw_range)
    frac = np.clip(0.6 + 0.35 * util + rng.normal(0.0, 0.02, n), 0.6, 0.95)
    throughput = np.clip(bw * frac, 0.0, p.bw_range[1])
    latency = p.lat_base * regime[:, 1] * (1.0 + p.lat_gain * congestion)
    latency = np.clip(latency * rng.gamma(20.0, 1.0 / 20.0, n), *p.lat_range)
    jitter = np.clip(latency * p.jit_ratio * (0.5 + util) * rng.gamma(4.0, 0.25, n), 0.0, p.jit_max)
    loss = np.clip(rng.exponential(p.loss_scale * (1.0 + p.loss_gain * congestion)), 0, p.loss_max)
    return np.column_stack([bw, latency, loss, jitter, throughput])


def synthesize_link_series(
    mode: str,
    n: int,
    *,
    step_s: float = 1.0,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    start_ts: float | None = None,
) -> np.ndarray:
    """Synthesize ``n`` successive samples of one link.

    Args:
        mode: ``'datacenter'`` (1000-10000 Mbps, 1-10 ms, loss < 0.001 %) or
            ``'internet'`` (100-900 Mbps, 50-500 ms, 0-2 % loss).
        n: number of samples.
        step_s: seconds between samples; the daily cycle spans ``86400 / step_s`` rows.
        seed: seed of a fresh generator; give this or ``rng``.
        rng: generator to draw from (advanced by the call).
        start_ts: epoch seconds of the first sample; when given the daily peak
            falls at 14:00 UTC, otherwise the phase is random.

    Returns:
        Array of shape ``(n, 5)``, columns in :data:`LINK_COLUMNS` order.

    Raises:
        ConfigError: unknown mode, negative ``n``, non-positive ``step_s``.

    Examples:
        >>> x = synthesize_link_series("internet", 1000, seed=7)
        >>> x.shape
        (1000, 5)
        >>> [round(float(v), 1) for v in x[0]]
        [673.0, 118.8, 0.1, 3.0, 532.3]
        >>> bool((x[:, 0] >= 100).all() and (x[:, 0] <= 900).all())
        True
    """
    caller = "synthesize_link_series"
    _check_choice("mode", mode, LINK_MODES, caller)
    _check_n_step(n, step_s, caller)
    gen = _as_rng(seed, rng, caller)
    return _link_chunk(_new_link_state(mode, step_s, gen, start_ts), int(n), gen)


# --------------------------------------------------------------------------- hosts


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
    regime: _Episodes = field(default_factory=lambda: _Episodes(np.zeros(2)))
    burst: _Episodes = field(default_factory=lambda: _Episodes(np.zeros(1), active=True))


def _new_host_state(
    profile: str, step_s: float, rng: np.random.Generator, start_ts: float | None
) -> _HostState:
    return _HostState(
        profile=HOST_PROFILES[profile],
        step_s=step_s,
        t_s=_phase_origin(start_ts, rng),
        ar=rng.standard_normal(2),
    )


def _host_chunk(state: _HostState, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    p, step = state.profile, state.step_s
    t = state.t_s + step * np.arange(n)
    state.t_s += step * n
    diurnal = np.cos(2.0 * np.pi * t / _DAY_S)
    ar, state.ar = _ar1(rng, n, _phi(_HOST_TAU_S, step), state.ar)

    def next_regime(g: np.random.Generator, _active: bool) -> tuple[np.ndarray, int, bool]:
        load_shift = g.uniform(-0.08, 0.12)
        mem_shift = g.normal(0.0, 6.0)
        return np.array([load_shift, mem_shift]), _duration(g, _HOST_REGIME_MEAN_S, step, 10), True

    regime = _episodes(rng, n, state.regime, next_regime)
    burst = _episodes(
        rng, n, state.burst, _burst_episode(p.burst_gap_s, p.burst_len_s, p.burst_depth, step)
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
    _check_choice("profile", name, tuple(HOST_PROFILES), caller)
    _check_n_step(n, step_s, caller)
    gen = _as_rng(seed, rng, caller)
    return _host_chunk(_new_host_state(name, step_s, gen, start_ts), int(n), gen)


# --------------------------------------------------------------------------- sources


class _ChunkedSource:
    """Endless rows drawn a chunk at a time from a continued generator state."""

    def __init__(self, chunk_size: int) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            msg = f"The 'chunk_size' parameter must be an int >= 1. Got {chunk_size!r} instead."
            raise ConfigError(msg)
        self.chunk_size = chunk_size
        self._buf = np.empty((0, 5))
        self._pos = 0

    def _next_chunk(self) -> np.ndarray:
        raise NotImplementedError

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._next_chunk(), 0
        row = self._buf[self._pos]
        self._pos += 1
        return row

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` rows as an ``(n, 5)`` array."""
        rows = [next(self) for _ in range(n)]
        return np.array(rows).reshape(n, 5)


class LinkTrafficSource(_ChunkedSource):
    """Endless samples of one link, for the live producer.

    Rows are generated ``chunk_size`` at a time, but the AR(1) noise, the
    daily phase, the current regime and any burst in progress carry over from
    one chunk to the next, so the stream has no seams. The rows differ from
    one :func:`synthesize_link_series` call with the same seed (the draws are
    ordered per chunk) while following the same process.

    Args:
        mode: ``'datacenter'`` or ``'internet'``.
        step_s: seconds between samples.
        seed: seed of a fresh generator; give this or ``rng``.
        rng: generator to draw from.
        start_ts: epoch seconds of the first sample (aligns the daily cycle).
        chunk_size: rows generated per internal call.

    Examples:
        >>> src = LinkTrafficSource("datacenter", seed=1, chunk_size=64)
        >>> rows = src.take(200)
        >>> rows.shape
        (200, 5)
        >>> [round(float(v), 1) for v in next(src)[:2]]
        [7270.6, 2.0]
    """

    def __init__(
        self,
        mode: str,
        *,
        step_s: float = 1.0,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        start_ts: float | None = None,
        chunk_size: int = 4096,
    ) -> None:
        caller = "LinkTrafficSource"
        _check_choice("mode", mode, LINK_MODES, caller)
        _check_n_step(0, step_s, caller)
        super().__init__(chunk_size)
        self.mode = mode
        self.step_s = step_s
        self._rng = _as_rng(seed, rng, caller)
        self._state = _new_link_state(mode, step_s, self._rng, start_ts)

    def _next_chunk(self) -> np.ndarray:
        return _link_chunk(self._state, self.chunk_size, self._rng)


class HostTrafficSource(_ChunkedSource):
    """Endless samples of one host, for the live producer.

    Continues its state across chunks like :class:`LinkTrafficSource`; rows
    are arrays in :data:`HOST_METRICS` order, :meth:`next_metrics` gives a dict.

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
        _check_choice("profile", name, tuple(HOST_PROFILES), caller)
        _check_n_step(0, step_s, caller)
        super().__init__(chunk_size)
        self.profile = name
        self.step_s = step_s
        self._rng = _as_rng(seed, rng, caller)
        self._state = _new_host_state(name, step_s, self._rng, start_ts)

    def _next_chunk(self) -> np.ndarray:
        cols = _host_chunk(self._state, self.chunk_size, self._rng)
        return np.column_stack([cols[k] for k in HOST_METRICS])

    def next_metrics(self) -> dict[str, float]:
        """The next row as ``{metric name: float}``."""
        row = next(self)
        return {k: float(v) for k, v in zip(HOST_METRICS, row, strict=True)}
