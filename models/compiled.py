"""Compiled (numba) twins of the serving path's feature encoding and interval.

:func:`models.features.encode_windows` is the reference, written in numpy and used in
training. At batch size 1 its ~40 array operations cost more than the LSTM itself, so
serving uses these loop versions instead; tests hold the two equal. Compiled on first
use, which the predictor does when it loads, and cached on disk (numba's ``cache=True``,
as :mod:`models.workload_compiled`): a later worker loads the machine code instead of
compiling it, which takes it 0.3 s instead of about 2 s and leaves out the 15 MB the
compiler holds.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .features import CHANNELS, CLIP, EPS_MBPS, EWMA_ALPHA, FeatureStats

_N_CHANNELS = len(CHANNELS)
_LIMIT = CLIP * 4


@njit(cache=True, nogil=True)
def _encode(
    windows: np.ndarray, stats: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    batch, steps, _ = windows.shape
    out = np.zeros((batch, steps, _N_CHANNELS), dtype=np.float32)
    lasts = np.empty(batch)
    log_t = np.empty(steps)
    present = np.zeros(steps, dtype=np.bool_)
    seen = np.zeros(steps, dtype=np.bool_)
    values = np.empty(steps)
    for b in range(batch):
        filled = math.nan
        for s in range(steps):
            t = windows[b, s, 0]
            if not math.isfinite(t):
                t = windows[b, s, 4]
            present[s] = math.isfinite(t)
            if present[s]:
                filled = t
            log_t[s] = math.log(max(filled, EPS_MBPS)) if math.isfinite(filled) else math.nan
        last = log_t[steps - 1]
        lasts[b] = last
        for s in range(steps):
            seen[s] = math.isfinite(log_t[s])
            if not seen[s]:
                log_t[s] = last
        for s in range(steps):
            row = out[b, s]
            row[0] = (log_t[s] - last) if present[s] else 0.0
            row[1] = 1.0 if present[s] else 0.0
            bw = windows[b, s, 0]
            thr = windows[b, s, 4]
            if math.isfinite(bw) and math.isfinite(thr):
                row[2] = math.log(max(thr, EPS_MBPS)) - last
                row[3] = 1.0
            for k in range(3):
                v = windows[b, s, 1 + k]
                if math.isfinite(v):
                    row[4 + 2 * k] = (math.log1p(v) - stats[2 + 2 * k]) / stats[3 + 2 * k]
                    row[5 + 2 * k] = 1.0
        # EWMA: a step without a sample keeps the level.
        for s in range(steps):
            values[s] = math.exp(log_t[s])
        level = values[0]
        for s in range(steps):
            if present[s]:
                level = EWMA_ALPHA * values[s] + (1 - EWMA_ALPHA) * level
            if not math.isfinite(level):
                level = values[s]
            if seen[s]:
                out[b, s, 10] = math.log(max(level, EPS_MBPS)) - last
        # Harmonic mean of the last 5 (the first value repeated before the window).
        for s in range(steps):
            total = 0.0
            for j in range(s - 4, s + 1):
                total += math.exp(-log_t[max(j, 0)])
            if seen[s]:
                out[b, s, 11] = math.log(5.0 / total) - last
                out[b, s, 12] = (log_t[s] - stats[0]) / stats[1]
                out[b, s, 13] = 1.0
        for s in range(steps):
            for c in range(_N_CHANNELS):
                v = out[b, s, c]
                if not math.isfinite(v):
                    out[b, s, c] = 0.0
                elif v > _LIMIT:
                    out[b, s, c] = _LIMIT
                elif v < -_LIMIT:
                    out[b, s, c] = -_LIMIT
    return out, lasts


@njit(cache=True, nogil=True)
def _interval(  # pragma: no cover - compiled
    out: np.ndarray,
    last: np.ndarray,
    encoded: np.ndarray,
    q_low: float,
    q_high: float,
    floor: float,
    recent: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = out.shape[0]
    steps = encoded.shape[1]
    point = np.empty(n)
    lower = np.empty(n)
    upper = np.empty(n)
    confidence = np.empty(n)
    for b in range(n):
        # Std of one-step log changes over the last `recent` steps with two samples.
        start = max(steps - recent - 1, 0)
        count = 0
        total = 0.0
        for s in range(start + 1, steps):
            if encoded[b, s, 1] > 0 and encoded[b, s - 1, 1] > 0:
                total += float(encoded[b, s, 0]) - float(encoded[b, s - 1, 0])
                count += 1
        mean = total / max(count, 1)
        var = 0.0
        for s in range(start + 1, steps):
            if encoded[b, s, 1] > 0 and encoded[b, s - 1, 1] > 0:
                d = float(encoded[b, s, 0]) - float(encoded[b, s - 1, 0]) - mean
                var += d * d
        scale = max(math.sqrt(var / max(count - 1, 1)), floor)
        o = min(max(out[b], -5.0), 5.0)
        base = math.exp(last[b])
        point[b] = base * math.exp(o)
        lower[b] = base * math.exp(o + q_low * scale)
        upper[b] = base * math.exp(o + q_high * scale)
        c = 1.0 - (upper[b] - lower[b]) / (2.0 * max(point[b], EPS_MBPS))
        confidence[b] = min(max(c, 0.0), 1.0) if math.isfinite(c) else 0.0
    return point, lower, upper, confidence


def stats_array(stats: FeatureStats) -> np.ndarray:
    """The statistics in the order :func:`encode` reads them."""
    s = stats
    return np.array([s.level_mean, s.level_std, s.lat_mean, s.lat_std, s.loss_mean,
                     s.loss_std, s.jit_mean, s.jit_std])  # fmt: skip


def encode(windows: np.ndarray, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same as :func:`models.features.encode_windows` (``stats`` from :func:`stats_array`)."""
    result: tuple[np.ndarray, np.ndarray] = _encode(
        np.ascontiguousarray(windows, dtype=np.float64), stats
    )
    return result


def interval(
    out: np.ndarray,
    last: np.ndarray,
    encoded: np.ndarray,
    q_low: float,
    q_high: float,
    floor: float,
    recent: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Point, lower, upper and confidence from the model output (see ``LstmBandwidthPredictor``)."""
    result: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = _interval(
        np.ascontiguousarray(out, dtype=np.float64), last, encoded, q_low, q_high, floor, recent
    )
    return result
