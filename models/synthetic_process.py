"""The stochastic building blocks shared by the synthetic link and host generators.

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
from dataclasses import dataclass

import numpy as np

from streams.errors import ConfigError

DAY_S = 86_400.0
_PEAK_S = 14 * 3600.0  # busiest hour of the day, UTC, when a start_ts aligns the cycle
_AR_BLOCK = 128


# --------------------------------------------------------------------------- helpers


def as_rng(seed: int | None, rng: np.random.Generator | None, caller: str) -> np.random.Generator:
    if seed is not None and rng is not None:
        msg = f"{caller} takes either 'seed' or 'rng', not both. Got seed={seed!r} and an rng."
        raise ConfigError(msg)
    return rng if rng is not None else np.random.default_rng(seed)


def check_n_step(n: int, step_s: float, caller: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        msg = f"The 'n' parameter of {caller} must be an int >= 0. Got {n!r} instead."
        raise ConfigError(msg)
    if not np.isfinite(step_s) or step_s <= 0:
        msg = f"The 'step_s' parameter of {caller} must be a float > 0. Got {step_s!r} instead."
        raise ConfigError(msg)


def check_choice(name: str, value: object, choices: tuple[str, ...], caller: str) -> None:
    if value not in choices:
        allowed = "{" + ", ".join(repr(c) for c in sorted(choices)) + "}"
        msg = f"The {name!r} parameter of {caller} must be one of {allowed}. Got {value!r} instead."
        raise ConfigError(msg)


def phase_origin(start_ts: float | None, rng: np.random.Generator) -> float:
    """Seconds into the day of the first sample, measured from the daily peak."""
    if start_ts is None:
        return float(rng.uniform(0.0, DAY_S))
    return (float(start_ts) - _PEAK_S) % DAY_S


def ar1(
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
class Episodes:
    """A piecewise-constant process: a level held for a random number of samples."""

    level: np.ndarray
    left: int = 0
    active: bool = False


def episodes(
    rng: np.random.Generator,
    n: int,
    state: Episodes,
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


def duration(rng: np.random.Generator, mean_s: float, step_s: float, floor: int = 1) -> int:
    return max(floor, round(rng.exponential(mean_s) / step_s))


def burst_episode(
    mean_gap_s: float, mean_len_s: float, depth: tuple[float, float], step_s: float
) -> Callable[[np.random.Generator, bool], tuple[np.ndarray, int, bool]]:
    def nxt(rng: np.random.Generator, active: bool) -> tuple[np.ndarray, int, bool]:
        if active:  # a burst ended: quiet until the next one
            return np.zeros(1), duration(rng, mean_gap_s, step_s), False
        return np.array([rng.uniform(*depth)]), duration(rng, mean_len_s, step_s), True

    return nxt


def phi(tau_s: np.ndarray, step_s: float) -> np.ndarray:
    return np.exp(-step_s / np.asarray(tau_s, dtype=float))


# --------------------------------------------------------------------------- sources


class ChunkedSource:
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
