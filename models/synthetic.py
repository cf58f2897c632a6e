"""Synthetic link telemetry: :func:`synthesize_link_series` and :class:`LinkTrafficSource`.

A link's utilisation follows the daily cycle, AR(1) noise, bursts and route or
capacity regime changes of :mod:`models.synthetic_process`; bandwidth, latency,
packet loss, jitter and throughput follow from it in the ranges of the link's
mode (``'datacenter'`` or ``'internet'``, :data:`streams.records.MODES`). Host
telemetry is in :mod:`models.synthetic_hosts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streams.records import MODES

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
    "LINK_COLUMNS",
    "LinkTrafficSource",
    "synthesize_link_series",
]

LINK_COLUMNS: tuple[str, ...] = (
    "bandwidth_mbps",
    "latency_ms",
    "packet_loss_pct",
    "jitter_ms",
    "throughput_mbps",
)


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
    regime: Episodes = field(default_factory=lambda: Episodes(np.ones(2)))
    burst: Episodes = field(default_factory=lambda: Episodes(np.zeros(1), active=True))


def _new_link_state(
    mode: str, step_s: float, rng: np.random.Generator, start_ts: float | None
) -> _LinkState:
    return _LinkState(
        params=_LINK_PARAMS[mode],
        step_s=step_s,
        t_s=phase_origin(start_ts, rng),
        ar=rng.standard_normal(2),
    )


def _link_chunk(state: _LinkState, n: int, rng: np.random.Generator) -> np.ndarray:
    p, step = state.params, state.step_s
    t = state.t_s + step * np.arange(n)
    state.t_s += step * n
    diurnal = np.cos(2.0 * np.pi * t / DAY_S)
    ar, state.ar = ar1(rng, n, phi(_LINK_TAU_S, step), state.ar)

    def next_regime(g: np.random.Generator, _active: bool) -> tuple[np.ndarray, int, bool]:
        bw = np.clip(g.normal(1.0, 0.1), 0.7, 1.25)
        lat = np.clip(g.lognormal(0.0, p.regime_lat_sigma), 0.6, 1.6)
        return np.array([bw, lat]), duration(g, _LINK_REGIME_MEAN_S, step, floor=10), True

    regime = episodes(rng, n, state.regime, next_regime)
    burst = episodes(
        rng, n, state.burst,
        burst_episode(_LINK_BURST_GAP_S, _LINK_BURST_LEN_S, (0.2, 0.45), step),
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
    check_choice("mode", mode, MODES, caller)
    check_n_step(n, step_s, caller)
    gen = as_rng(seed, rng, caller)
    return _link_chunk(_new_link_state(mode, step_s, gen, start_ts), int(n), gen)


class LinkTrafficSource(ChunkedSource):
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
        check_choice("mode", mode, MODES, caller)
        check_n_step(0, step_s, caller)
        super().__init__(chunk_size)
        self.mode = mode
        self.step_s = step_s
        self._rng = as_rng(seed, rng, caller)
        self._state = _new_link_state(mode, step_s, self._rng, start_ts)

    def _next_chunk(self) -> np.ndarray:
        return _link_chunk(self._state, self.chunk_size, self._rng)
