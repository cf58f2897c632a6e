"""The features of one host's history for the workload classifier, and the pattern rules.

A history is a float array ``(n, 6)`` in :data:`streams.capacity.HOST_METRICS` order,
oldest row first, NaN where a metric is not reported or a sample is missing.
:func:`history_features` turns it into one vector of :data:`FEATURE_NAMES`, and
:func:`features_many` a batch of histories into a matrix. The code here is the numpy
reference (the histories of one length computed together); by default the work runs in
its compiled twin, :mod:`models.workload_compiled` (about 0.27 ms a host at 1,440 rows
on a busy two-core machine, against 0.6-1.3 ms for the reference; see
``bench/workload_classifier.py``). The features are:

- **per metric** (``cpu``, ``mem``, ``disk``, ``net_in``, ``net_out``, ``requests``):
  ``_present`` (1 when at least a tenth of the rows report it, else 0), ``_level``
  (the mean as a utilisation in [0, 1]: cpu and memory divided by 100, the others
  ``x / (x + reference)`` with the :data:`REFERENCE` of a typical host, so 200 MB/s of
  disk or 1,000 Mbit/s of network count as half used) and ``_cv`` (standard deviation
  over the mean, scale-free). An absent metric has ``_present`` 0 and ``-1`` for its
  level and variation, values a reported metric never takes, so the model tells
  "absent" from "zero";
- **resource mix**: each resource's share of the host's summed utilisation (cpu,
  memory, disk, network = the mean of in and out) and the ``dominant_resource`` (an
  index into :data:`RESOURCES`, -1 with no data);
- **seasonality**: for each of the three metrics whose utilisation varies the most,
  the strongest FFT bin of the detrended, standardised series (at least two cycles in
  the window) proposes a period, which the autocorrelation checks at that lag and at
  its multiples (a spike train's strongest bin is often a harmonic);
  ``seasonal_confidence`` is the geometric mean of the autocorrelation at the period
  and the chance-corrected share of the variance in the period's harmonics, so a
  period the ACF does not confirm, or noise, scores low. The metric with the highest
  confidence gives ``period_samples``, ``period_s`` and ``seasonal_acf``. Histories
  under :data:`MIN_SEASONAL_SAMPLES` have none;
- the **active series**, the metric whose utilisation varies the most (its index is
  ``active_metric``), gives the shape: linear ``trend_slope`` (relative change per
  hour), ``trend_score`` = tanh(fitted change over the window / level),
  ``trend_direction`` (+1 up, -1 down, 0 stable), ``trend_r2``, ``trend_curvature``
  (tanh of the quadratic term), ``exp_fit_gain`` (R² of a log-linear fit minus that of
  the linear fit: positive for exponential growth or decay); ``burstiness`` =
  (std - mean) / (std + mean); ``peak_to_mean`` (99th percentile / mean);
  ``contrast`` ((p95 - p5) / (p95 + p5)); ``duty_cycle`` (share of time above the
  midpoint of p5 and p95) and ``plateau_s`` (mean length of those high runs, seconds);
  ``spike_share`` / ``dip_share`` (samples beyond 5 robust deviations above / below the
  median); ``acf_lag1``;
- ``idle_share`` (time under 10 % cpu, -1 without cpu), ``co_movement`` (the mean
  correlation of the reported metrics) and ``span_s`` (seconds the history covers).

Gaps are filled by linear interpolation per metric before anything is computed, so NaN
rows and runs change the features little and never break them.

:func:`pattern_type` (from :mod:`models.workload_patterns`) names the shape of the
active series from these features by documented rules (it is not the classifier's
label).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import scipy.fft

from streams.capacity import HOST_METRICS
from streams.errors import ModelError

from .workload_patterns import pattern_type as pattern_type  # re-exported: the rules

MIN_SEASONAL_SAMPLES = 24
"""Samples below which no period is looked for (two cycles of 12 samples)."""

METRIC_KEYS = ("cpu", "mem", "disk", "net_in", "net_out", "requests")
"""Short names of :data:`HOST_METRICS` in feature names."""

RESOURCES = ("cpu", "memory", "disk", "network")
"""The resources of the mix; ``dominant_resource`` indexes this tuple."""

REFERENCE = np.array([100.0, 100.0, 200.0, 1000.0, 1000.0, 1000.0])
"""Per metric, the value that counts as full (cpu, memory) or half (the others) use."""

_PERCENT = np.array([True, True, False, False, False, False])
_FLOOR = 0.01 * REFERENCE  # levels below 1 % of the reference are "nothing"
_IDLE_CPU_PCT = 10.0
_SPIKE_DEVIATIONS = 5.0
_MAX_MULTIPLE = 4
_HARMONICS = 16
_REFINE = np.linspace(0.9, 1.1, 9)
_SEASONAL_METRICS = 3  # the metrics that vary the most are searched for a period
_SMOOTH = sorted(
    2**a * 3**b * 5**c
    for a in range(18)
    for b in range(12)
    for c in range(8)
    if 2**a * 3**b * 5**c <= 200_000
)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{key}_{what}" for key in METRIC_KEYS for what in ("present", "level", "cv")),
    *(f"share_{resource}" for resource in RESOURCES),
    "dominant_resource",
    "period_samples",
    "period_s",
    "seasonal_confidence",
    "seasonal_acf",
    "trend_slope",
    "trend_score",
    "trend_direction",
    "trend_r2",
    "trend_curvature",
    "exp_fit_gain",
    "burstiness",
    "peak_to_mean",
    "contrast",
    "duty_cycle",
    "plateau_s",
    "spike_share",
    "dip_share",
    "acf_lag1",
    "idle_share",
    "co_movement",
    "active_metric",
    "span_s",
)
"""The order of :func:`history_features`' vector (the model's input columns)."""

_AT = {name: i for i, name in enumerate(FEATURE_NAMES)}
_PER_METRIC = 3 * len(METRIC_KEYS)


def history_features(history: np.ndarray, step_s: float) -> np.ndarray:
    """The feature vector (:data:`FEATURE_NAMES`) of one host's history.

    Args:
        history: ``(n, 6)`` floats, oldest row first, NaN where missing.
        step_s: seconds between rows.

    Returns:
        Finite float64 values. A history with no reported metric gives zeros, with
        -1 for every metric's level and variation, ``dominant_resource`` and
        ``idle_share``.

    Raises:
        ModelError: ``history`` is not ``(n, 6)`` or ``step_s`` is not positive.

    Examples:
        >>> t = np.arange(1440)
        >>> h = np.full((1440, 6), np.nan)
        >>> h[:, 0] = 50 + 30 * np.sin(2 * np.pi * t / 60)
        >>> h[100:130] = np.nan  # a gap of 30 rows
        >>> f = feature_dict(history_features(h, 60.0))
        >>> f["period_samples"], f["period_s"], f["seasonal_confidence"] > 0.9
        (60.0, 3600.0, True)
        >>> f["cpu_present"], f["mem_present"], f["mem_level"], f["dominant_resource"]
        (1.0, 0.0, -1.0, 0.0)
    """
    return features_many([history], [step_s])[0]


def features_many(
    histories: Sequence[np.ndarray], step_s: Sequence[float], *, compiled: bool = True
) -> np.ndarray:
    """:func:`history_features` of each history, stacked ``(len(histories), F)``.

    Histories of the same length are computed together (one FFT for all of them). The
    numpy code of this module is the reference; ``compiled`` (the default, for training
    and serving alike) runs its twin in :mod:`models.workload_compiled`, equal to it and
    several times faster.

    Raises:
        ModelError: a history is not ``(n, 6)``, a step is not positive, or the two
            sequences differ in length.

    Examples:
        >>> features_many([np.ones((30, 6)), np.ones((50, 6))], [60.0, 10.0]).shape
        (2, 45)
    """
    if len(histories) != len(step_s):
        msg = (
            f"features_many needs one step per history. Got {len(histories)} histories and "
            f"{len(step_s)} steps instead."
        )
        raise ModelError(msg)
    pairs = zip(histories, step_s, strict=True)
    arrays = [_checked(history, float(step)) for history, step in pairs]
    steps = np.asarray(step_s, dtype=np.float64)
    out = np.zeros((len(arrays), len(FEATURE_NAMES)))
    groups: dict[int, list[int]] = {}
    for i, array in enumerate(arrays):
        groups.setdefault(array.shape[0], []).append(i)
    if compiled:
        from .workload_compiled import same_length  # noqa: PLC0415 (imports this module)
    else:
        same_length = _same_length
    for length, members in groups.items():
        if length == 0:
            out[members] = _EMPTY
        else:
            out[members] = same_length(np.stack([arrays[i] for i in members]), steps[members])
    return out


def feature_dict(vector: np.ndarray) -> dict[str, float]:
    """Named features, rounded to 4 significant digits (finite floats).

    Examples:
        >>> v = np.zeros(len(FEATURE_NAMES))
        >>> v[FEATURE_NAMES.index("period_s")] = 86412.3456
        >>> v[FEATURE_NAMES.index("burstiness")] = -0.123456
        >>> d = feature_dict(v)
        >>> d["period_s"], d["burstiness"]
        (86410.0, -0.1235)
    """
    v = np.nan_to_num(np.asarray(vector, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return dict(zip(FEATURE_NAMES, round_significant(v).tolist(), strict=True))


def round_significant(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits (vectorised).

    Examples:
        >>> round_significant(np.array([123456.0, 0.00123456, -2.5, 0.0])).tolist()
        [123500.0, 0.001235, -2.5, 0.0]
    """
    magnitude = np.floor(np.log10(np.maximum(np.abs(values), 1e-300)))
    factor = 10.0 ** np.clip(digits - 1 - magnitude, -300, 300)
    return np.where(values == 0.0, 0.0, np.round(values * factor) / factor)


def _checked(history: np.ndarray, step_s: float) -> np.ndarray:
    x = np.asarray(history, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(HOST_METRICS):
        msg = (
            f"A host history must be a float array (n, {len(HOST_METRICS)}) with columns "
            f"{HOST_METRICS}. Got shape {x.shape} instead."
        )
        raise ModelError(msg)
    if not np.isfinite(step_s) or step_s <= 0:
        msg = f"The 'step_s' of a host history must be a float > 0. Got {step_s!r} instead."
        raise ModelError(msg)
    return x


def _absent_vector() -> np.ndarray:
    out = np.zeros(len(FEATURE_NAMES))
    out[1:_PER_METRIC:3] = -1.0
    out[2:_PER_METRIC:3] = -1.0
    out[_AT["dominant_resource"]] = -1.0
    out[_AT["idle_share"]] = -1.0
    return out


_EMPTY = _absent_vector()


def _same_length(x: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Features of ``h`` histories ``(h, n, 6)`` of one length ``n >= 1``."""
    h, n, _ = x.shape
    out = np.zeros((h, len(FEATURE_NAMES)))
    out[:, _AT["span_s"]] = n * step
    rows, present = _fill_gaps(x)  # (h, 6, n), absent rows zero
    mean = rows.mean(axis=2)
    centred = rows - mean[..., None]
    std = np.sqrt(np.einsum("hmn,hmn->hm", centred, centred) / n)
    util = np.where(_PERCENT, mean / 100.0, mean / (mean + REFERENCE))
    out[:, 0:_PER_METRIC:3] = present
    out[:, 1:_PER_METRIC:3] = np.where(present, util, -1.0)
    out[:, 2:_PER_METRIC:3] = np.where(present, np.minimum(std / (mean + _FLOOR), 10.0), -1.0)
    _resource_mix(out, np.where(present, util, 0.0), present)
    # First-order spread of each metric's utilisation: d/dx x/(x+r) = r/(x+r)^2.
    spread = std * np.where(_PERCENT, 0.01, REFERENCE / (mean + REFERENCE) ** 2)
    order = np.argsort(np.where(present, -spread, 1.0), axis=1, kind="stable")
    moving = present & (std > 1e-9 * (mean + 1.0))
    inverse = np.where(moving, 1.0 / np.maximum(std * np.sqrt(n), 1e-300), 0.0)
    corr = (centred @ centred.transpose(0, 2, 1)) * inverse[:, :, None] * inverse[:, None, :]
    k = moving.sum(axis=1)
    out[:, _AT["co_movement"]] = (corr.sum(axis=(1, 2)) - k) / np.maximum(k * (k - 1), 1)
    top = order[:, :_SEASONAL_METRICS]
    if n >= MIN_SEASONAL_SAMPLES:
        alive = np.take_along_axis(moving, top, axis=1)
        _seasonality(out, np.take_along_axis(centred, top[..., None], axis=1), alive, step)
    active = order[:, 0]
    hosts = np.arange(h)
    _shape(out, rows[hosts, active], _FLOOR[active], step)
    out[:, _AT["active_metric"]] = active
    idle = np.count_nonzero(rows[:, 0] < _IDLE_CPU_PCT, axis=1) / n
    out[:, _AT["idle_share"]] = np.where(present[:, 0], idle, -1.0)
    out[~present.any(axis=1)] = _EMPTY
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _fill_gaps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Metrics as rows ``(h, 6, n)``, gaps interpolated linearly (edges held); absent: 0."""
    h, n, _ = x.shape
    finite = np.isfinite(x)
    counts = finite.sum(axis=1)
    present = (counts >= 3) & (counts >= 0.1 * n)
    rows = np.ascontiguousarray(x.transpose(0, 2, 1))
    ok = finite.transpose(0, 2, 1)
    for host in np.flatnonzero((present & (counts < n)).any(axis=1)):
        gappy = np.flatnonzero(present[host] & (counts[host] < n))
        masks = ok[host, gappy]
        if (masks == masks[0]).all():  # whole rows missing: one interpolation for all
            _interpolate(rows[host], gappy, masks[0])
        else:
            for metric, good in zip(gappy, masks, strict=True):
                _interpolate(rows[host], int(metric), good)
    rows[~present] = 0.0
    return np.maximum(rows, 0.0), present


def _interpolate(rows: np.ndarray, which: np.ndarray | int, good: np.ndarray) -> None:
    """Fill ``rows[which]`` where ``good`` is False, linearly between the good neighbours."""
    index = np.flatnonzero(good)
    gap = np.flatnonzero(~good)
    right = np.minimum(np.searchsorted(index, gap), index.size - 1)
    left = np.maximum(right - (index[right] > gap), 0)
    low, high = index[left], index[right]
    weight = (gap - low) / np.maximum(high - low, 1)
    block = rows[which]
    block[..., gap] = block[..., low] * (1.0 - weight) + block[..., high] * weight
    rows[which] = block


def _resource_mix(out: np.ndarray, util: np.ndarray, present: np.ndarray) -> None:
    network = util[:, 3:5].sum(axis=1) / np.maximum(present[:, 3:5].sum(axis=1), 1)
    resources = np.column_stack([util[:, :3], network])
    total = resources.sum(axis=1, keepdims=True)
    start = _AT["share_cpu"]
    out[:, start : start + len(RESOURCES)] = resources / np.where(total > 0, total, 1.0)
    dominant = np.argmax(resources, axis=1)
    out[:, _AT["dominant_resource"]] = np.where(total[:, 0] > 0, dominant, -1)


def _fast_length(n: int) -> int:
    """The largest 5-smooth number <= n (FFT sizes without slow prime factors)."""
    return _SMOOTH[bisect.bisect_right(_SMOOTH, n) - 1]


def _seasonality(out: np.ndarray, centred: np.ndarray, alive: np.ndarray, step: np.ndarray) -> None:
    """Period features from ``centred`` ``(h, k, n)`` (metric rows, mean removed)."""
    h, k, n = centred.shape
    t = np.arange(n) - (n - 1) / 2.0
    resid = centred - (centred @ t / float(t @ t))[..., None] * t
    m = _fast_length(n)
    z = resid[..., n - m :]
    norm = np.sqrt(np.einsum("hkn,hkn->hk", z, z) / m)
    z = (z / np.where(alive, np.maximum(norm, 1e-12), np.inf)[..., None]).astype(np.float32)
    spectrum = scipy.fft.rfft(z, 2 * m, axis=2)  # float32: 4x faster than numpy's float64
    energy = spectrum.real**2 + spectrum.imag**2
    half = m // 2
    power = energy[..., : 2 * half + 1 : 2]  # the m-point periodogram: bins 0 .. m // 2
    acf = scipy.fft.irfft(energy, 2 * m, axis=2)[..., : half + 1]
    acf = acf / np.maximum(acf[..., :1], 1e-12) * (m / (m - np.arange(half + 1)))
    base = m / (np.argmax(power[..., 2:], axis=2) + 2.0)  # (h, k)
    multiples = np.arange(1, _MAX_MULTIPLE + 1)
    candidates = np.rint(base[..., None, None] * multiples[:, None] * _REFINE).astype(np.int64)
    valid = (candidates >= 2) & (candidates <= half)  # (h, k, multiple, refinement)
    flat = np.clip(candidates, 0, half).reshape(h, k, -1)
    at = np.where(valid, np.take_along_axis(acf, flat, axis=2).reshape(valid.shape), -np.inf)
    best_f = np.argmax(at, axis=3)
    best = np.take_along_axis(at, best_f[..., None], axis=3)[..., 0]  # (h, k, multiple)
    best_m = np.argmax(best - 0.05 * multiples, axis=2)[..., None]  # prefer the fundamental
    acf_at = np.take_along_axis(best, best_m, axis=2)[..., 0]
    chosen = np.take_along_axis(best_f, best_m, axis=2)[..., 0]
    found = np.isfinite(acf_at) & alive
    lag = np.take_along_axis(
        candidates.reshape(h, k, -1), (best_m[..., 0] * _REFINE.size + chosen)[..., None], axis=2
    )[..., 0]
    lag = np.where(found, lag, 0).astype(np.float64)
    acf_at = np.where(found, acf_at, 0.0)
    # The share of variance at the period's harmonics, less what noise would put there.
    fundamental = m / np.maximum(lag, 1.0)
    width = (fundamental >= 4).astype(np.int64)[..., None, None]
    harmonics = np.rint(fundamental[..., None] * np.arange(1, _HARMONICS + 1)).astype(np.int64)
    idx = harmonics[..., None] + width * np.array([-1, 0, 1])
    idx = np.where((idx >= 1) & (idx <= half) & found[..., None, None], idx, 0).reshape(h, k, -1)
    mask = np.zeros(power.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=2)
    mask[..., 0] = False
    total = np.maximum(power[..., 1:].sum(axis=2), 1e-12)
    share = (power * mask).sum(axis=2) / total
    expected = mask.sum(axis=2) / max(half, 1)
    concentration = np.clip((share - expected) / np.maximum(1.0 - expected, 1e-9), 0.0, 1.0)
    confidence = np.sqrt(np.clip(acf_at, 0.0, 1.0) * concentration)
    pick = np.argmax(confidence, axis=1)[:, None]
    period = np.take_along_axis(lag, pick, axis=1)[:, 0]
    out[:, _AT["period_samples"]] = period
    out[:, _AT["period_s"]] = period * step
    out[:, _AT["seasonal_confidence"]] = np.take_along_axis(confidence, pick, axis=1)[:, 0]
    out[:, _AT["seasonal_acf"]] = np.take_along_axis(acf_at, pick, axis=1)[:, 0]


def _shape(out: np.ndarray, y: np.ndarray, floor: np.ndarray, step: np.ndarray) -> None:
    """Trend, burstiness and level-distribution features of the active series ``(h, n)``."""
    h, n = y.shape
    t = np.arange(n) - (n - 1) / 2.0
    tt = max(float(t @ t), 1e-12)
    t2 = t * t - tt / n
    t2t2 = max(float(t2 @ t2), 1e-12)
    both = np.stack([y, np.log(y + floor[:, None])], axis=1)  # (h, 2, n): linear and log
    centred = both - both.mean(axis=2)[..., None]
    slopes = centred @ t / tt
    resid = centred - slopes[..., None] * t
    ss_tot = np.einsum("hkn,hkn->hk", centred, centred)
    ss_res = np.einsum("hkn,hkn->hk", resid, resid)
    r2 = np.where(ss_tot > 1e-12, 1.0 - ss_res / np.maximum(ss_tot, 1e-12), 0.0)
    mean = y.mean(axis=1)
    std = np.sqrt(ss_tot[:, 0] / n)
    scale = mean + floor
    score = np.tanh(slopes[:, 0] * (n - 1) / scale)
    out[:, _AT["trend_slope"]] = slopes[:, 0] / scale * 3600.0 / step
    out[:, _AT["trend_score"]] = score
    out[:, _AT["trend_r2"]] = r2[:, 0]
    out[:, _AT["trend_direction"]] = np.sign(score) * ((np.abs(score) > 0.1) & (r2[:, 0] > 0.3))
    curvature = (y @ t2) / t2t2 * ((n - 1) / 2.0) ** 2
    out[:, _AT["trend_curvature"]] = np.tanh(curvature / scale)
    out[:, _AT["exp_fit_gain"]] = r2[:, 1] - r2[:, 0]
    spread = std + mean
    out[:, _AT["burstiness"]] = np.where(
        spread > 0, (std - mean) / np.maximum(spread, 1e-300), -1.0
    )
    lag1 = np.einsum("hn,hn->h", resid[:, 0, :-1], resid[:, 0, 1:])
    usable = (ss_res[:, 0] > 1e-12) & (n > 2)
    out[:, _AT["acf_lag1"]] = np.where(
        usable, lag1 / np.maximum(ss_res[:, 0], 1e-12) * n / max(n - 1, 1), 0.0
    )
    ranks = np.minimum((np.array([0.05, 0.5, 0.95, 0.99]) * n).astype(np.int64), n - 1)
    p5, p50, p95, p99 = np.partition(y, ranks, axis=1)[:, ranks].T
    out[:, _AT["peak_to_mean"]] = p99 / scale
    out[:, _AT["contrast"]] = (p95 - p5) / (p95 + p5 + floor)
    high = y > ((p5 + p95) / 2.0)[:, None]
    count = np.count_nonzero(high, axis=1)
    out[:, _AT["duty_cycle"]] = count / n
    starts = high[:, 0] + np.count_nonzero(high[:, 1:] > high[:, :-1], axis=1)
    out[:, _AT["plateau_s"]] = count / np.maximum(starts, 1) * step
    mad = np.partition(np.abs(y - p50[:, None]), n // 2, axis=1)[:, n // 2]
    deviation = (_SPIKE_DEVIATIONS * np.maximum(1.4826 * mad, 0.01 * scale))[:, None]
    out[:, _AT["spike_share"]] = np.count_nonzero(y > p50[:, None] + deviation, axis=1) / n
    out[:, _AT["dip_share"]] = np.count_nonzero(y < p50[:, None] - deviation, axis=1) / n
