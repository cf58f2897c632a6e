"""Compiled (numba) twin of :func:`models.workload_features.features_many`.

The numpy version is the reference: it spells the features out as array operations.
At one host its ~150 operations on small arrays cost about 0.6 ms before any real work,
and at 256 hosts its temporaries outgrow the caches; these loops do the same work in
one pass per step, and only the FFTs stay in numpy (scipy's, float32, batched over the
hosts of one length). Compiled on first use, which
:class:`models.workload.OnnxWorkloadClassifier` does when it loads; unlike the small
kernels of :mod:`models.compiled` these take 10-20 s to compile on a busy two-core
machine, so they are cached on disk (numba's ``cache=True``: ``__pycache__`` beside
this file, or the user's cache folder where that is read-only) and a later process
loads them in under a second. Tests hold the two equal.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numba import njit

from .workload_features import (
    _HARMONICS,
    _IDLE_CPU_PCT,
    _MAX_MULTIPLE,
    _REFINE,
    _SEASONAL_METRICS,
    _SPIKE_DEVIATIONS,
    FEATURE_NAMES,
    MIN_SEASONAL_SAMPLES,
    REFERENCE,
    _fast_length,
)

_F = len(FEATURE_NAMES)
_AT = {name: i for i, name in enumerate(FEATURE_NAMES)}
_SPAN = _AT["span_s"]
_SHARE = _AT["share_cpu"]
_DOMINANT = _AT["dominant_resource"]
_PERIOD = _AT["period_samples"]
_CO = _AT["co_movement"]
_ACTIVE = _AT["active_metric"]
_IDLE = _AT["idle_share"]
_TREND = _AT["trend_slope"]  # trend_slope .. dip_share follow FEATURE_NAMES' order
_REF = REFERENCE.copy()
_IDLE_CPU = _IDLE_CPU_PCT
_SPIKES = _SPIKE_DEVIATIONS
_SEASONAL = _SEASONAL_METRICS


@njit(cache=True, nogil=True)
def _prepare(  # pragma: no cover - compiled
    x: np.ndarray, step: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Everything but the periods, and the standardised residuals the FFT needs."""
    h, n, k = x.shape
    out = np.zeros((h, _F))
    z = np.zeros((h, _SEASONAL, m), dtype=np.float32)
    alive = np.zeros((h, _SEASONAL), dtype=np.bool_)
    rows = np.zeros((k, n))
    t = np.empty(n)
    for i in range(n):
        t[i] = i - (n - 1) / 2.0
    tt = 0.0
    for i in range(n):
        tt += t[i] * t[i]
    tt = max(tt, 1e-12)
    for b in range(h):
        counts = np.zeros(k, dtype=np.int64)
        for i in range(n):  # one contiguous pass: rows (metric, time) and finite counts
            for j in range(k):
                value = x[b, i, j]
                rows[j, i] = value
                if math.isfinite(value):
                    counts[j] += 1
        present = np.zeros(k, dtype=np.bool_)
        for j in range(k):
            present[j] = counts[j] >= 3 and counts[j] >= 0.1 * n
            if not present[j]:
                rows[j, :] = 0.0
            elif counts[j] < n:
                _fill(rows[j])
            else:
                for i in range(n):
                    rows[j, i] = max(rows[j, i], 0.0)
        if not present.any():
            out[b, 1 : 3 * k : 3] = -1.0
            out[b, 2 : 3 * k : 3] = -1.0
            out[b, _DOMINANT] = -1.0
            out[b, _IDLE] = -1.0
            continue
        out[b, _SPAN] = n * step[b]
        mean = np.zeros(k)
        std = np.zeros(k)
        util = np.zeros(k)
        spread = np.zeros(k)
        for j in range(k):
            mean[j] = rows[j].mean()
            var = 0.0
            for i in range(n):
                d = rows[j, i] - mean[j]
                var += d * d
            std[j] = math.sqrt(var / n)
            percent = j < 2
            util[j] = mean[j] / 100.0 if percent else mean[j] / (mean[j] + _REF[j])
            floor = 0.01 * _REF[j]
            out[b, 3 * j] = 1.0 if present[j] else 0.0
            out[b, 3 * j + 1] = util[j] if present[j] else -1.0
            out[b, 3 * j + 2] = min(std[j] / (mean[j] + floor), 10.0) if present[j] else -1.0
            if not present[j]:
                util[j] = 0.0
            factor = 0.01 if percent else _REF[j] / (mean[j] + _REF[j]) ** 2
            spread[j] = -std[j] * factor if present[j] else 1.0
        _mix(out[b], util, present)
        order = np.argsort(spread, kind="mergesort")
        moving = np.zeros(k, dtype=np.bool_)
        inverse = np.zeros(k)
        for j in range(k):
            moving[j] = present[j] and std[j] > 1e-9 * (mean[j] + 1.0)
            if moving[j]:
                inverse[j] = 1.0 / max(std[j] * math.sqrt(n), 1e-300)
        total = 0.0
        for i in range(k):
            for j in range(i, k):
                if moving[i] and moving[j]:
                    dot = 0.0
                    for s in range(n):
                        dot += (rows[i, s] - mean[i]) * (rows[j, s] - mean[j])
                    total += dot * inverse[i] * inverse[j] * (1.0 if i == j else 2.0)
        moved = moving.sum()
        out[b, _CO] = (total - moved) / max(moved * (moved - 1), 1)
        if n >= MIN_SEASONAL_SAMPLES:
            for r in range(_SEASONAL):
                j = order[r]
                alive[b, r] = moving[j]
                if moving[j]:
                    _standardised(rows[j], mean[j], t, tt, m, z[b, r])
        active = order[0]
        _shape(out[b], rows[active], 0.01 * _REF[active], step[b], t, tt)
        out[b, _ACTIVE] = active
        idle = 0
        for i in range(n):
            if rows[0, i] < _IDLE_CPU:
                idle += 1
        out[b, _IDLE] = idle / n if present[0] else -1.0
    return out, z, alive


@njit(cache=True, nogil=True)
def _fill(row: np.ndarray) -> None:  # pragma: no cover - compiled
    """Linear interpolation over NaN in place (edges held), then negatives to 0.

    The arithmetic is the reference's, term for term, so the values are the same bits.
    """
    n = row.size
    last_good = -1
    for i in range(n):
        if math.isfinite(row[i]):
            if last_good < i - 1:  # fill the gap (last_good, i)
                low = last_good if last_good >= 0 else i
                for g in range(last_good + 1, i):
                    w = (g - low) / max(i - low, 1)
                    row[g] = row[low] * (1.0 - w) + row[i] * w
            last_good = i
    for g in range(last_good + 1, n):
        w = float(g - last_good)
        row[g] = row[last_good] * (1.0 - w) + row[last_good] * w
    for i in range(n):
        row[i] = max(row[i], 0.0)


@njit(cache=True, nogil=True)
def _mix(out: np.ndarray, util: np.ndarray, present: np.ndarray) -> None:  # pragma: no cover
    count = (1 if present[3] else 0) + (1 if present[4] else 0)
    resources = np.array([util[0], util[1], util[2], (util[3] + util[4]) / max(count, 1)])
    total = resources.sum()
    for r in range(4):
        out[_SHARE + r] = resources[r] / total if total > 0 else resources[r]
    out[_DOMINANT] = np.argmax(resources) if total > 0 else -1


@njit(cache=True, nogil=True)
def _standardised(  # pragma: no cover - compiled
    row: np.ndarray, mean: float, t: np.ndarray, tt: float, m: int, z: np.ndarray
) -> None:
    n = row.size
    slope = 0.0
    for i in range(n):
        slope += (row[i] - mean) * t[i]
    slope /= tt
    resid = np.empty(m)
    ss = 0.0
    for i in range(m):
        s = n - m + i
        resid[i] = row[s] - mean - slope * t[s]
        ss += resid[i] * resid[i]
    norm = max(math.sqrt(ss / m), 1e-12)
    for i in range(m):
        z[i] = resid[i] / norm


@njit(cache=True, nogil=True)
def _shape(  # pragma: no cover - compiled
    out: np.ndarray, y: np.ndarray, floor: float, step: float, t: np.ndarray, tt: float
) -> None:
    n = y.size
    mean = y.mean()
    logged = np.log(y + floor)
    log_mean = logged.mean()
    slope = 0.0
    log_slope = 0.0
    curvature = 0.0
    t2_mean = tt / n
    t2t2 = 0.0
    for i in range(n):
        slope += (y[i] - mean) * t[i]
        log_slope += (logged[i] - log_mean) * t[i]
        t2 = t[i] * t[i] - t2_mean
        curvature += y[i] * t2
        t2t2 += t2 * t2
    slope /= tt
    log_slope /= tt
    ss_tot = ss_res = log_tot = log_res = lag1 = 0.0
    previous = 0.0
    for i in range(n):
        c = y[i] - mean
        r = c - slope * t[i]
        lc = logged[i] - log_mean
        lr = lc - log_slope * t[i]
        ss_tot += c * c
        ss_res += r * r
        log_tot += lc * lc
        log_res += lr * lr
        if i > 0:
            lag1 += previous * r
        previous = r
    r2 = 1.0 - ss_res / max(ss_tot, 1e-12) if ss_tot > 1e-12 else 0.0
    log_r2 = 1.0 - log_res / max(log_tot, 1e-12) if log_tot > 1e-12 else 0.0
    std = math.sqrt(ss_tot / n)
    scale = mean + floor
    score = math.tanh(slope * (n - 1) / scale)
    out[_TREND] = slope / scale * 3600.0 / step
    out[_TREND + 1] = score
    direction = abs(score) > 0.1 and r2 > 0.3
    out[_TREND + 2] = np.sign(score) * (1.0 if direction else 0.0)
    out[_TREND + 3] = r2
    out[_TREND + 4] = math.tanh(curvature / max(t2t2, 1e-12) * ((n - 1) / 2.0) ** 2 / scale)
    out[_TREND + 5] = log_r2 - r2
    out[_TREND + 6] = (std - mean) / max(std + mean, 1e-300) if std + mean > 0 else -1.0
    ranks = np.empty(4, dtype=np.int64)
    for i, q in enumerate((0.05, 0.5, 0.95, 0.99)):
        ranks[i] = min(int(q * n), n - 1)
    ordered = np.partition(y, ranks)  # numba's np.sort is 5x slower than selection
    p5, p50, p95, p99 = ordered[ranks[0]], ordered[ranks[1]], ordered[ranks[2]], ordered[ranks[3]]
    out[_TREND + 7] = p99 / scale
    out[_TREND + 8] = (p95 - p5) / (p95 + p5 + floor)
    middle = (p5 + p95) / 2.0
    count = 0
    starts = 0
    was_high = False
    for i in range(n):
        high = y[i] > middle
        if high:
            count += 1
            if not was_high:
                starts += 1
        was_high = high
    out[_TREND + 9] = count / n
    out[_TREND + 10] = count / max(starts, 1) * step
    mad = np.partition(np.abs(y - p50), n // 2)[n // 2]
    deviation = _SPIKES * max(1.4826 * mad, 0.01 * scale)
    spikes = dips = 0
    for i in range(n):
        if y[i] > p50 + deviation:
            spikes += 1
        elif y[i] < p50 - deviation:
            dips += 1
    out[_TREND + 11] = spikes / n
    out[_TREND + 12] = dips / n
    usable = ss_res > 1e-12 and n > 2
    out[_TREND + 13] = lag1 / max(ss_res, 1e-12) * n / max(n - 1, 1) if usable else 0.0


@njit(cache=True, nogil=True)
def _periods(  # pragma: no cover - compiled
    out: np.ndarray,
    power: np.ndarray,
    acf: np.ndarray,
    alive: np.ndarray,
    step: np.ndarray,
    m: int,
    refine: np.ndarray,
) -> None:
    h, rows, bins = power.shape
    half = m // 2
    for b in range(h):
        best_confidence = -1.0
        for r in range(rows):
            lag, acf_at, confidence = _period(power[b, r], acf[b, r], alive[b, r], m, half, refine)
            if confidence > best_confidence:
                best_confidence = confidence
                out[b, _PERIOD] = lag
                out[b, _PERIOD + 1] = lag * step[b]
                out[b, _PERIOD + 2] = confidence
                out[b, _PERIOD + 3] = acf_at


@njit(cache=True, nogil=True)
def _period(  # pragma: no cover - compiled
    power: np.ndarray, acf: np.ndarray, alive: bool, m: int, half: int, refine: np.ndarray
) -> tuple[float, float, float]:
    peak = 2 + np.argmax(power[2 : half + 1])
    base = m / float(peak)
    best_score = -np.inf
    best_acf = -np.inf
    lag = 0
    for multiple in range(1, _MAX_MULTIPLE + 1):
        top = -np.inf
        top_lag = 0
        for f in refine:
            candidate = int(np.rint(base * multiple * f))
            if 2 <= candidate <= half and acf[candidate] > top:
                top = acf[candidate]
                top_lag = candidate
        if top - 0.05 * multiple > best_score:
            best_score = top - 0.05 * multiple
            best_acf = top
            lag = top_lag
    if not (alive and math.isfinite(best_acf)):
        return 0.0, 0.0, 0.0
    fundamental = m / max(float(lag), 1.0)
    width = 1 if fundamental >= 4 else 0
    mask = np.zeros(half + 1, dtype=np.bool_)
    for harmonic in range(1, _HARMONICS + 1):
        centre = int(np.rint(fundamental * harmonic))
        for offset in range(-width, width + 1):
            index = centre + offset
            if 1 <= index <= half:
                mask[index] = True
    total = 0.0
    share = 0.0
    for i in range(1, half + 1):
        total += power[i]
        if mask[i]:
            share += power[i]
    share /= max(total, 1e-12)
    expected = mask.sum() / max(half, 1)
    concentration = min(max((share - expected) / max(1.0 - expected, 1e-9), 0.0), 1.0)
    return float(lag), best_acf, math.sqrt(min(max(best_acf, 0.0), 1.0) * concentration)


def same_length(x: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Features of ``(h, n, 6)`` histories of one length (the reference's ``_same_length``)."""
    n = x.shape[1]
    m = _fast_length(n) if n >= MIN_SEASONAL_SAMPLES else 1
    out, z, alive = _prepare(np.ascontiguousarray(x, dtype=np.float64), step, m)
    if n >= MIN_SEASONAL_SAMPLES and alive.any():
        spectrum = scipy.fft.rfft(z, 2 * m, axis=2)
        energy = spectrum.real**2 + spectrum.imag**2
        half = m // 2
        power = np.ascontiguousarray(energy[..., : 2 * half + 1 : 2])
        acf = scipy.fft.irfft(energy, 2 * m, axis=2)[..., : half + 1]
        acf = acf / np.maximum(acf[..., :1], 1e-12) * (m / (m - np.arange(half + 1)))
        _periods(out, power, np.ascontiguousarray(acf), alive, step, m, _REFINE)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
