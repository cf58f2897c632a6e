"""The anomaly ensemble: per-key statistical, seasonal, online and fitted detectors, each
turned into a likelihood against the key's own history, combined by the strongest.

For each host or link (a *key*), :class:`KeyEnsemble` keeps the recent values of the
metrics it reports and scores every sample with these detectors, per metric (a key's
detector output is its largest over the metrics; each metric's share is its
contribution):

- ``robust_z``: distance from the median of the last ``window`` values in robust
  standard deviations (MAD), capped by the seasonal residual so that a value that is
  normal for this time of the key's cycle is not an outlier;
- ``iqr``: distance beyond the IQR fences of the same window (capped the same way);
- ``forecast_residual``: the step from the last value against the typical step (the
  last value is the forecast), capped the same way;
- ``seasonal_residual``: distance from the median of the values one, two and three
  periods back, the period found by autocorrelation of the key's own history beyond
  its first dip below zero (silent without one);
- ``level_shift``: the median of the last ``shift_recent`` values against the window
  before them; ``variance_change``: the log-ratio of recent to older step sizes
  (averaged over the key's metrics: a change of variability is the key's, and the
  largest of several metrics' sampling noise would be a noise detector);
- ``half_space_trees``: River's Half-Space Trees learning online from the metrics
  scaled to [0, 1] by the key's recent range;
- ``isolation_forest``, ``one_class_svm``, ``local_outlier_factor``: scikit-learn
  detectors fitted on the key's recent (value, step) rows every ``refit_every``
  samples in a background thread (:mod:`models.anomaly_fitted`); a key with fewer
  than ``min_fit`` samples is scored without them, and says so.

Every detector's output is mapped to [0, 1]. The **likelihood step** then asks, per
detector, how unusual the mean of its last few outputs is against the distribution of
that mean over the key's last ``likelihood_history`` samples (Numenta's anomaly
likelihood: a Gaussian tail, log-scaled). The ensemble score is the largest
likelihood of the detectors in ``recipe.combine``, the learned ones speaking as one
voice (``learned``: the mean of those that speak, weighted by ``recipe.weights``); the
confidence is the share of all detectors that agree with it. The statistics of the
``window`` (the baseline) are taken every ``baseline_every`` samples. ``novacron eval
anomalies`` measures the recipe on the Numenta Anomaly Benchmark (README, "Anomaly
alerts").

Everything is computed for a run of a key's samples at once (vectorised over the run)
and gives the same result however the samples are split into batches. A key's state
is persisted in small fields: a header, the Half-Space Trees' masses (once per
``period_every`` samples; a restore relearns the samples since from the kept values),
the fitted detectors (only when refitted) and its histories in chunks of ``CHUNK``
samples, of which a batch rewrites only those it touched.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from numpy.lib.stride_tricks import sliding_window_view
from river.anomaly import HalfSpaceTrees
from scipy.special import erfc

from streams.detector import AnomalyScore
from streams.records import MetricView

from .anomaly_fitted import FittedDetectors, fit_detectors, hst_state, restore_hst

STATE_FORMAT = 3
"""Version of the state layout; a state of another version is dropped and relearned."""

CHUNK = 32
"""Samples per persisted chunk of a key's histories."""

PER_METRIC = (
    "robust_z",
    "iqr",
    "forecast_residual",
    "seasonal_residual",
    "level_shift",
    "variance_change",
)
FITTED = ("isolation_forest", "one_class_svm", "local_outlier_factor")
LEARNED = ("half_space_trees", *FITTED)
"""The detectors that learn a model of the key (online or fitted)."""
DETECTORS = (*PER_METRIC, *LEARNED, "learned")
"""Every detector, in the order of the key's likelihood histories; ``learned`` is the
mean of the :data:`LEARNED` ones that speak (their joint voice in the ensemble)."""


@dataclass(frozen=True, slots=True)
class Recipe:
    """The ensemble's parameters: one setting for every key, never per series.

    Chosen on the Numenta Anomaly Benchmark with the procedure in ``novacron eval
    anomalies`` (README, "Anomaly alerts"); the defaults are what that found.

    Attributes:
        window: values the statistical detectors compare a sample with.
        baseline_every: samples between the statistics of that window (a sample is
            compared with those of the window before the last such point).
        min_history: samples before a key's detectors speak (0 until then).
        shift_recent: recent values the level-shift detector takes the median of.
        variance_recent: recent values the variance-change detector looks at.
        variance_deadband: log-ratio of step sizes the variance-change detector ignores
            (the sampling noise of a median over ``variance_recent`` steps).
        period_every: samples between estimates of a key's period.
        period_history: values the period is estimated from.
        period_min_corr: autocorrelation a period needs.
        squash: scale of the map of a detector's distance to [0, 1], ``1 - exp(-d/s)``.
        short: per detector, samples averaged before the likelihood (others: 10).
        likelihood_history: samples of each detector's short mean the likelihood is
            judged against.
        likelihood_min: samples of that history before the likelihood speaks.
        combine: the detectors whose likelihoods make the score (the largest wins).
        weights: per detector of ``combine``, a factor on its likelihood (default 1): the
            learned detectors' joint voice alone needs a likelihood of 0.59 to reach
            the default threshold.
        min_fit: samples before the first fit of the fitted detectors.
        refit_every: samples between fits.
        fit_lag: samples between a fit's request and its use (it runs meanwhile in a
            background thread; the same sample in replay and in the worker).
        fit_rows: rows a fit learns from (the newest).
        hst_trees, hst_height, hst_window: River Half-Space Trees' parameters.
    """

    window: int = 512
    baseline_every: int = 16
    min_history: int = 16
    shift_recent: int = 10
    variance_recent: int = 20
    variance_deadband: float = 0.0
    period_every: int = 256
    period_history: int = 1024
    period_min_corr: float = 0.3
    squash: float = 3.0
    short: Mapping[str, int] = field(
        default_factory=lambda: {"robust_z": 6, "iqr": 6, "forecast_residual": 6}
    )
    likelihood_history: int = 2000
    likelihood_min: int = 150
    combine: tuple[str, ...] = (
        "robust_z",
        "forecast_residual",
        "seasonal_residual",
        "level_shift",
        "variance_change",
        "learned",
    )
    weights: Mapping[str, float] = field(default_factory=lambda: {"learned": 0.85})
    min_fit: int = 128
    refit_every: int = 512
    fit_lag: int = 16
    fit_rows: int = 256
    hst_trees: int = 10
    hst_height: int = 6
    hst_window: int = 250

    @property
    def max_period(self) -> int:
        return self.window

    @property
    def value_history(self) -> int:
        """Values kept per key: the window and three periods back."""
        return max(self.window + 3 * self.max_period, self.period_history) + CHUNK

    def short_of(self, detector: str) -> int:
        return self.short.get(detector, 10)


_FITTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomaly-fit")
"""Fits run here, off the scoring path."""

_LOG_DENOMINATOR = math.log(1.0 - 0.9999999999)


def _seed(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) & 0x7FFFFFFF


# -- histories --------------------------------------------------------------------


class History:
    """The newest ``capacity`` rows of a key's per-sample series, by global sample index,
    persisted in chunks of :data:`CHUNK` rows (a batch rewrites only the chunks it
    touched)."""

    def __init__(self, capacity: int, width: int) -> None:
        self.capacity = capacity
        self.width = width
        self.rows = np.empty((0, width))
        self.end = 0
        """Global index one past the newest row."""
        self.dumped = 0
        """``end`` at the last dump."""

    def extend(self, rows: np.ndarray) -> None:
        merged = np.vstack([self.rows, rows]) if len(self.rows) else rows
        self.rows = merged[-self.capacity :].copy()
        self.end += len(rows)

    def last(self, n: int) -> np.ndarray:
        return self.rows[max(0, len(self.rows) - n) :]

    def chunks(self, prefix: str) -> dict[str, bytes]:
        """The chunks changed since the last dump, as fields ``{prefix}{slot}``."""
        out: dict[str, bytes] = {}
        first = self.end - len(self.rows)
        for c in range(max(self.dumped, first) // CHUNK, (self.end - 1) // CHUNK + 1):
            lo, hi = max(c * CHUNK, first), min((c + 1) * CHUNK, self.end)
            if hi <= lo:
                continue
            part = self.rows[lo - first : hi - first]
            head = np.array([c, lo, hi], dtype=np.int64).tobytes()
            out[f"{prefix}{c % self.slots}"] = head + part.astype(np.float64).tobytes()
        self.dumped = self.end
        return out

    @property
    def slots(self) -> int:
        return self.capacity // CHUNK + 2

    def restore(self, fields: Mapping[str, bytes], prefix: str, end: int, kept: int) -> None:
        """The newest ``kept`` rows up to global index ``end`` from the chunk fields."""
        parts: list[tuple[int, np.ndarray]] = []
        for slot in range(self.slots):
            blob = fields.get(f"{prefix}{slot}")
            if not blob:
                continue
            _, lo, hi = (int(v) for v in np.frombuffer(blob[:24], dtype=np.int64))
            rows = np.frombuffer(blob[24:], dtype=np.float64).reshape(hi - lo, self.width)
            parts.append((lo, rows))
        parts.sort(key=lambda p: p[0])
        first = end - kept
        rows_out = np.empty((0, self.width))
        cursor = first
        for lo, rows in parts:
            hi = lo + len(rows)
            if hi <= cursor or lo > cursor:
                continue
            rows_out = np.vstack([rows_out, rows[cursor - lo :]])
            cursor = hi
        if cursor != end:
            msg = f"history chunks cover up to sample {cursor}, the state says {end}"
            raise ValueError(msg)
        self.rows = rows_out
        self.end = self.dumped = end


# -- statistical detectors ----------------------------------------------------------


def _median(w: np.ndarray) -> np.ndarray:
    """Median over the last axis, ignoring NaN padding (a young key's windows)."""
    if not np.isnan(w).any():
        return np.median(w, axis=-1)
    return _sorted_quantile(np.sort(w, axis=-1), np.sum(~np.isnan(w), axis=-1), 0.5)


def _sorted_quantile(ordered: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` (linear, as numpy's default) of rows sorted with NaN last, ``n``
    valid values each (NaN where none)."""
    pos = q * np.maximum(n - 1, 0)
    below = np.floor(pos).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(ordered, below[..., None], -1)[..., 0]
    b = np.take_along_axis(ordered, above[..., None], -1)[..., 0]
    return np.where(n > 0, a + (b - a) * (pos - below), np.nan)


def _spread(w: np.ndarray) -> np.ndarray:
    """Range over the last axis, ignoring NaN padding."""
    if np.isnan(w).any():
        return np.nanmax(w, axis=-1) - np.nanmin(w, axis=-1)
    return w.max(axis=-1) - w.min(axis=-1)


def _windows(series: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """``series[e - length : e]`` for each ``e`` of ``ends`` (rows, metrics, length);
    NaN where it would start before the series."""
    ends = np.maximum(ends, 0)
    if not len(ends):
        return np.empty((0, series.shape[1], length))
    lo = int(ends.min()) - length
    part = series[max(lo, 0) : int(ends.max())]
    if lo < 0:
        part = np.vstack([np.full((-lo, series.shape[1]), np.nan), part])
    view = sliding_window_view(part, length, axis=0)  # (windows, metrics, length)
    return view[ends - int(ends.min())]


@dataclass(frozen=True, slots=True)
class _Raw:
    """Per-metric detector distances of a run of rows, and what the alerts show."""

    distances: dict[str, np.ndarray]
    expected: np.ndarray
    low: np.ndarray
    high: np.ndarray
    scaled: np.ndarray
    """Each row scaled to [0.1, 0.9] by its baseline's range (clipped to [0, 1])."""


def _raw_detectors(
    values: np.ndarray,
    steps: np.ndarray,
    start: int,
    t0: int,
    periods: np.ndarray,
    r: Recipe,
    cached: tuple[int, _Baseline] | None,
) -> tuple[_Raw, tuple[int, _Baseline]]:
    """Distances of rows ``values[start:]`` (the key's ``t0``-th sample onwards) from
    what the key's history expects.

    ``values`` holds the key's kept values then the run's; ``steps`` the matching
    first differences; ``periods`` the period in force per row and metric. The
    history's statistics over ``window`` values (its baseline) are taken every
    ``baseline_every`` samples: a sample is compared with the baseline of the window
    before the last multiple of ``baseline_every`` at or before it. ``cached`` is the
    last baseline computed (the key's sample count there, and it); the newest one is
    returned with the distances, for the next run.
    """
    m = len(values) - start
    idx = np.arange(start, len(values))
    t = t0 + np.arange(m)
    lag = t % r.baseline_every
    base, first, inverse = np.unique(idx - lag, return_index=True, return_inverse=True)
    tb = (t - lag)[first]
    if cached is not None and cached[0] == tb[0]:
        b = cached[1]
        if len(base) > 1:
            b = _Baseline.stack(
                b, _baseline(values, steps, base[1:], tb[1:], periods[first[1:]], r)
            )
    else:
        b = _baseline(values, steps, base, tb, periods[first], r)
    med, scale, spread = b.med[inverse], b.scale[inverse], b.spread[inverse]
    q1, q3, lo, hi = b.q1[inverse], b.q3[inverse], b.lo[inverse], b.hi[inverse]
    rows = values[start:]
    z = np.abs(rows - med) / scale
    iqr = q3 - q1
    beyond = np.maximum(0.0, np.maximum(rows - (q3 + 1.5 * iqr), (q1 - 1.5 * iqr) - rows))
    fence = beyond / np.maximum(iqr, scale)
    residual = np.abs(steps[start:]) / b.step_scale[inverse]
    seasonal = np.abs(_season_residual(values, idx, periods)) / b.season_scale[inverse]
    seasonal = np.where((periods > 0) & (t >= 32)[:, None], seasonal, np.nan)
    capped = np.where(np.isnan(seasonal), np.inf, seasonal)
    k = r.shift_recent
    recent = _median(_windows(values, idx + 1, k))
    shift = np.where(((t + 1 - k) > 0)[:, None], np.abs(recent - b.old_med[inverse]), 0.0)
    shift = shift / b.old_scale[inverse]
    k2 = r.variance_recent
    s_recent = _median(np.abs(_windows(steps, idx + 1, k2 - 1)))
    floor = 0.01 * spread + 1e-9
    change = np.abs(np.log((s_recent + floor) / (b.old_step[inverse] + floor)))
    change = np.maximum(change - r.variance_deadband, 0.0)
    variance = np.where(((t + 1 - k2) > 1)[:, None], change, 0.0)
    ready = (np.minimum(tb[inverse], r.window) >= r.min_history)[:, None]
    distances = {
        "robust_z": np.minimum(z, capped),
        "iqr": np.minimum(fence, capped),
        "forecast_residual": np.minimum(residual, capped),
        "seasonal_residual": seasonal,
        "level_shift": shift,
        "variance_change": variance,
    }
    for name, v in distances.items():
        silent = np.nan if name == "seasonal_residual" else 0.0
        distances[name] = np.where(ready & np.isfinite(v), v, silent)
    previous = values[idx - 1] if start > 0 else np.vstack([rows[:1], rows[:-1]])
    expected = np.where(ready, previous, rows)
    low = np.where(ready, np.maximum(q1 - 1.5 * iqr, lo), rows)
    high = np.where(ready, np.minimum(q3 + 1.5 * iqr, hi), rows)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = np.clip((rows - lo) / span * 0.8 + 0.1, 0.0, 1.0)
    scaled = np.where(np.isnan(scaled), 0.5, scaled)
    return _Raw(distances, expected, low, high, scaled), (int(tb[-1]), b.last())


@dataclass(frozen=True, slots=True)
class _Baseline:
    """A key's history statistics at baseline points (rows: points, columns: metrics)."""

    med: np.ndarray
    scale: np.ndarray
    spread: np.ndarray
    q1: np.ndarray
    q3: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    step_scale: np.ndarray
    season_scale: np.ndarray
    old_med: np.ndarray
    old_scale: np.ndarray
    old_step: np.ndarray

    def last(self) -> _Baseline:
        """The newest point alone (what the next run starts from)."""
        return _Baseline(*(getattr(self, f)[-1:] for f in _FIELDS))

    @staticmethod
    def stack(first: _Baseline, rest: _Baseline) -> _Baseline:
        return _Baseline(*(np.vstack([getattr(first, f), getattr(rest, f)]) for f in _FIELDS))


_FIELDS = (
    "med", "scale", "spread", "q1", "q3", "lo", "hi", "step_scale", "season_scale",
    "old_med", "old_scale", "old_step",
)  # fmt: skip


def _baseline(
    values: np.ndarray,
    steps: np.ndarray,
    ends: np.ndarray,
    t: np.ndarray,
    periods: np.ndarray,
    r: Recipe,
) -> _Baseline:
    """Statistics of the ``window`` values (and steps) before each of ``ends`` (indexes
    into ``values``; ``t``: the key's sample count there)."""
    win = _windows(values, ends, r.window)
    med = _median(win)
    spread = _spread(win)
    with np.errstate(all="ignore"):
        if np.isnan(win).any():
            ordered, n = np.sort(win, axis=-1), np.sum(~np.isnan(win), axis=-1)
            q1, q3 = _sorted_quantile(ordered, n, 0.25), _sorted_quantile(ordered, n, 0.75)
            lo, hi = np.nanmin(win, axis=-1), np.nanmax(win, axis=-1)
        else:
            q1, q3 = np.percentile(win, [25.0, 75.0], axis=-1)
            lo, hi = win.min(axis=-1), win.max(axis=-1)
    floor = 1e-9 + 1e-6 * np.abs(med)
    scale = np.maximum(
        np.maximum(_median(np.abs(win - med[..., None])) * 1.4826, 0.01 * spread), floor
    )
    step_med = _median(np.abs(_windows(steps, ends, r.window)))
    step_scale = np.maximum(np.maximum(step_med * 1.4826, 0.01 * spread), floor)
    season_scale = np.full_like(med, np.nan)
    for k in range(values.shape[1]):
        for period in np.unique(periods[:, k]):
            if period <= 0:
                continue
            rows = np.flatnonzero(periods[:, k] == period)
            # residuals of the values the windows cover, not of all the key keeps
            offset = max(0, int(ends[rows].min()) - r.window)
            span = np.arange(offset, int(ends[rows].max()))
            e = _season_residual(values[:, k : k + 1], span, np.array([[period]]))
            past = _windows(e, ends[rows] - offset, r.window)[:, 0, :]
            # the residuals the key had: from two periods after its oldest kept value
            oldest = ends[rows] - np.minimum(t[rows], r.window + 2 * int(period))
            first = oldest + 2 * int(period)
            pos = ends[rows, None] - r.window + np.arange(r.window)[None, :]
            past = np.where(pos >= first[:, None], past, np.nan)
            med_e = _median(np.abs(past))
            season_scale[rows, k] = np.maximum(
                np.maximum(med_e * 1.4826, 0.01 * spread[rows, k]), floor[rows, k]
            )
    kr = r.shift_recent
    old = _windows(values, ends + 1 - kr, r.window)
    old_med = _median(old)
    old_scale = np.maximum(
        np.maximum(_median(np.abs(old - old_med[..., None])) * 1.4826, 0.01 * _spread(old)),
        1e-9 + 1e-6 * np.abs(old_med),
    )
    old_step = _median(np.abs(_windows(steps, ends + 1 - r.variance_recent, r.window - 1)))
    return _Baseline(
        med, scale, spread, q1, q3, lo, hi, step_scale, season_scale, old_med, old_scale, old_step
    )


def _season_residual(values: np.ndarray, idx: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """``x`` minus its seasonal reference at ``idx`` per metric: the median of the values
    one, two and three periods back (the mean of two while only two exist; NaN before),
    so that one past incident does not echo a period later."""
    p = periods.astype(np.int64)
    out = np.full((len(idx), values.shape[1]), np.nan)
    for k in range(values.shape[1]):
        pk = p[:, k] if p.shape[0] == len(idx) else np.full(len(idx), p[0, k])
        two = (pk > 0) & (idx - 2 * pk >= 0)
        three = two & (idx - 3 * pk >= 0)
        i, pp = idx[two], pk[two]
        out[two, k] = values[i, k] - 0.5 * (values[i - pp, k] + values[i - 2 * pp, k])
        i, pp = idx[three], pk[three]
        back = np.stack([values[i - pp, k], values[i - 2 * pp, k], values[i - 3 * pp, k]])
        out[three, k] = values[i, k] - np.median(back, axis=0)
    return out


def _period(series: np.ndarray, r: Recipe) -> int:
    """The key's dominant period by autocorrelation (0: none above ``period_min_corr``)."""
    h = series - series.mean()
    m = len(h)
    power = float((h * h).sum()) / m if m else 0.0
    longest = min(r.max_period, m // 3)
    if power <= 0 or longest <= 4:
        return 0
    f = np.fft.rfft(h, 2 * m)
    ac = np.fft.irfft(f * np.conj(f))[:m] / (m - np.arange(m)) / power
    a = ac[: longest + 1]
    # A cycle's peak lies beyond the autocorrelation's first dip below zero: nearer
    # lags are high only because neighbouring samples are alike.
    below = np.flatnonzero(a[1:] < 0.0)
    if not len(below):
        return 0
    lags = np.arange(max(4, int(below[0]) + 1), longest)
    if not len(lags):
        return 0
    peak = (a[lags] >= a[lags - 1]) & (a[lags] >= a[lags + 1]) & (a[lags] > r.period_min_corr)
    return int(lags[peak][np.argmax(a[lags][peak])]) if peak.any() else 0


# -- likelihood ---------------------------------------------------------------------


def _short_means(q: np.ndarray, start: int, shorts: np.ndarray) -> np.ndarray:
    """Per row of ``q[start:]`` and detector, the mean of its last ``shorts[k]`` outputs
    (fewer for a key's first rows: NaN padding is ignored)."""
    longest = int(shorts.max())
    idx = np.arange(start, len(q)) + 1
    win = _windows(q, idx, longest)  # (m, detectors, longest)
    mask = np.arange(longest)[None, None, :] >= (longest - shorts)[None, :, None]
    valid = mask & ~np.isnan(win)
    count = valid.sum(axis=-1)
    total = np.where(valid, win, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass(slots=True)
class _ScoreHistory:
    """Per detector, the sum, sum of squares and count of its short means over the last
    ``likelihood_history`` samples (NaN, a sample it did not speak on, counts nothing).
    Kept as running sums, recomputed exactly once per history length, so the result
    depends on the sequence of samples only, never on how it was batched."""

    total: np.ndarray
    total_sq: np.ndarray
    count: np.ndarray

    @classmethod
    def empty(cls, detectors: int) -> _ScoreHistory:
        return cls(np.zeros(detectors), np.zeros(detectors), np.zeros(detectors, dtype=np.int64))

    def likelihoods(self, means: np.ndarray, start: int, t0: int, r: Recipe) -> np.ndarray:
        """Log-scaled likelihood of each row of ``means[start:]`` (the key's ``t0``-th
        sample on) against the short means before it; advances the sums past them."""
        length = r.likelihood_history
        m = len(means) - start
        out = np.zeros((m, means.shape[1]))
        for j in range(m):
            g, t = start + j, t0 + j
            n = self.count
            mu = self.total / np.maximum(n, 1)
            var = np.maximum(self.total_sq / np.maximum(n, 1) - mu * mu, 0.0)
            mu = np.maximum(mu, 0.03)
            sd = np.sqrt(np.maximum(var, 3e-4))
            current = means[g]
            tail = 0.5 * erfc((current - mu) / sd / math.sqrt(2.0))
            level = np.minimum(1.0, np.log(1.0000000001 - (1.0 - tail)) / _LOG_DENOMINATOR)
            out[j] = np.where((n >= r.likelihood_min) & ~np.isnan(current), level, 0.0)
            self._push(current, means[g - length] if t >= length else None)
            if (t + 1) % length == 0:
                self._refresh(means[max(0, g + 1 - length) : g + 1])
        return out

    def _push(self, value: np.ndarray, leaving: np.ndarray | None) -> None:
        ok = ~np.isnan(value)
        self.total += np.where(ok, value, 0.0)
        self.total_sq += np.where(ok, value * value, 0.0)
        self.count += ok
        if leaving is not None:
            gone = ~np.isnan(leaving)
            self.total -= np.where(gone, leaving, 0.0)
            self.total_sq -= np.where(gone, leaving * leaving, 0.0)
            self.count -= gone

    def _refresh(self, window: np.ndarray) -> None:
        clean = np.nan_to_num(window)
        self.total = clean.sum(axis=0)
        self.total_sq = (clean * clean).sum(axis=0)
        self.count = np.sum(~np.isnan(window), axis=0)


@dataclass(frozen=True, slots=True)
class _LazyViews(Sequence[MetricView]):
    """A sample's metric views, built when read (by alerts), not for every score."""

    raw: _Raw
    values: np.ndarray
    contributions: np.ndarray
    row: int
    names: tuple[str, ...]

    def _views(self) -> tuple[MetricView, ...]:
        j = self.row
        return tuple(
            MetricView(
                name,
                float(self.values[j, k]),
                float(self.raw.expected[j, k]),
                float(self.raw.low[j, k]),
                float(self.raw.high[j, k]),
                float(self.contributions[j, k]),
            )
            for k, name in enumerate(self.names)
        )

    def __getitem__(self, index: Any) -> Any:
        return self._views()[index]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[MetricView]:
        return iter(self._views())


class KeyEnsemble:
    """One key's detectors and state (implements ``streams.detector.KeyDetector``)."""

    def __init__(self, key: str, recipe: Recipe, names: tuple[str, ...] = ()) -> None:
        self.key = key
        self.recipe = recipe
        self.upto: str | None = None
        self.names = names
        self.t = 0
        d = len(names)
        self.values = History(recipe.value_history, d)
        self.steps = History(recipe.value_history, d)
        self.outputs = History(CHUNK, len(DETECTORS))
        self.short_means = History(recipe.likelihood_history + CHUNK, len(DETECTORS))
        self.score_history = _ScoreHistory.empty(len(DETECTORS))
        self.shorts = np.array([recipe.short_of(name) for name in DETECTORS])
        self.combine = [DETECTORS.index(name) for name in recipe.combine]
        self.weights = np.array([recipe.weights.get(name, 1.0) for name in recipe.combine])
        self.periods = np.zeros(d, dtype=np.int64)
        self.hst: HalfSpaceTrees | None = None
        self.fitted: FittedDetectors | None = None
        self.fit_at = 0
        self.pending_at: int | None = None
        self._pending: Future[FittedDetectors] | None = None
        self._fit_changed = False
        self._baseline: tuple[int, _Baseline] | None = None
        self._hst_saved: int | None = None

    # -- scoring -------------------------------------------------------------------

    def score_many(
        self, event_ids: Sequence[str], samples: Sequence[Mapping[str, float]]
    ) -> list[AnomalyScore]:
        """Score a run of the key's samples in order, learning from each after it."""
        out: list[AnomalyScore] = []
        start = 0
        for i, values in enumerate(samples):
            present = {k for k, v in values.items() if not math.isnan(v)}
            if not present <= set(self.names):
                out += self._run(event_ids[start:i], samples[start:i])
                self.__init__(self.key, self.recipe, tuple(sorted(set(self.names) | present)))  # type: ignore[misc]
                start = i
        out += self._run(event_ids[start:], samples[start:])
        return out

    def _rows(self, samples: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The samples as rows in ``names`` order; an absent metric repeats its last value."""
        rows = np.empty((len(samples), len(self.names)))
        kept = self.values.last(1)
        last = kept[0] if len(kept) else np.zeros(len(self.names))
        for i, values in enumerate(samples):
            for k, name in enumerate(self.names):
                v = float(values.get(name, math.nan))
                rows[i, k] = last[k] if math.isnan(v) else v
            last = rows[i]
        return rows

    def _run(
        self, event_ids: Sequence[str], samples: Sequence[Mapping[str, float]]
    ) -> list[AnomalyScore]:
        if not samples:
            return []
        r = self.recipe
        rows = self._rows(samples)
        m = len(rows)
        kept = self.values.rows
        values = np.vstack([kept, rows]) if len(kept) else rows
        start = len(kept)
        previous = np.vstack([kept[-1:], rows[:-1]]) if start else np.vstack([rows[:1], rows[:-1]])
        steps_new = rows - previous
        steps = np.vstack([self.steps.rows, steps_new]) if start else steps_new
        t0 = self.t
        periods = np.empty((m, len(self.names)), dtype=np.int64)
        fits: list[FittedDetectors | None] = []
        for j in range(m):
            t = t0 + j
            if t % r.period_every == 0 and t >= 64:
                history = values[max(0, start + j - r.period_history) : start + j]
                self.periods = np.array([_period(history[:, k], r) for k in range(len(self.names))])
            periods[j] = self.periods
            self._activate_fit(values[: start + j], t)
            fits.append(self.fitted)
            if self._fit_due(t + 1):
                self._request_fit(values[: start + j + 1], t + 1)
        with warnings.catch_warnings():
            # a young key's windows are NaN-padded; all-NaN slices are masked below
            warnings.simplefilter("ignore", RuntimeWarning)
            raw, self._baseline = _raw_detectors(
                values, steps, start, t0, periods, r, self._baseline
            )
            scaled = raw.scaled
        q = {
            name: 1.0 - np.exp(-np.nan_to_num(dist) / r.squash)
            for name, dist in raw.distances.items()
        }
        per_metric = np.stack([q[name] for name in PER_METRIC])  # (detectors, m, d)
        share = per_metric.mean(axis=0)
        totals = share.sum(axis=1, keepdims=True)
        contributions = np.where(
            totals > 0, share / np.where(totals > 0, totals, 1.0), 1.0 / len(self.names)
        )
        fitted_q = _fitted_scores(fits, rows, previous)
        online = np.zeros(m)
        for j in range(m):
            features = dict(zip(self.names, scaled[j].tolist(), strict=True))
            if self.hst is None:
                self.hst = self._new_hst()
            else:
                online[j] = self.hst.score_one(features)
            self.hst.learn_one(features)
        t_rows = t0 + np.arange(m)
        ready = t_rows >= r.min_history
        has_fit = np.array([f is not None for f in fits])
        speaking = np.repeat(ready[:, None], len(DETECTORS), axis=1)
        speaking[:, PER_METRIC.index("seasonal_residual")] &= ~np.isnan(
            raw.distances["seasonal_residual"]
        ).all(axis=1)
        speaking[:, len(PER_METRIC)] &= t_rows >= r.hst_window
        speaking[:, len(PER_METRIC) + 1 :] &= has_fit[:, None]
        outputs = np.full((m, len(DETECTORS)), np.nan)
        for k, name in enumerate(PER_METRIC):
            # a change of variability is judged on the key as a whole: each metric's
            # sampling noise would otherwise make the largest of them a noise detector
            reduce = np.mean if name == "variance_change" else np.max
            outputs[:, k] = reduce(q[name], axis=1)
        outputs[:, len(PER_METRIC)] = online
        for k, name in enumerate(FITTED, start=len(PER_METRIC) + 1):
            outputs[:, k] = [row.get(name, np.nan) for row in fitted_q]
        outputs[~speaking] = np.nan
        group = [DETECTORS.index(name) for name in LEARNED]
        speaking[:, -1] = speaking[:, group].any(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            outputs[:, -1] = np.nanmean(outputs[:, group], axis=1)
        kept_q = self.outputs.rows
        all_q = np.vstack([kept_q, outputs]) if len(kept_q) else outputs
        with warnings.catch_warnings():
            # a detector's outputs are NaN where it did not speak; it is judged on its own
            warnings.simplefilter("ignore", RuntimeWarning)
            means_new = _short_means(all_q, len(kept_q), self.shorts)
            kept_means = self.short_means.rows
            all_means = np.vstack([kept_means, means_new]) if len(kept_means) else means_new
            levels = self.score_history.likelihoods(all_means, len(kept_means), t0, r)
        levels[~speaking] = 0.0
        score = (levels[:, self.combine] * self.weights).max(axis=1)
        verdict = score >= 0.5
        agree = np.sum(((levels >= 0.5) == verdict[:, None]) & speaking, axis=1)
        confidence = np.where(ready, agree / np.maximum(speaking.sum(axis=1), 1), 1.0)
        out: list[AnomalyScore] = []
        for j in range(m):
            detectors = (
                {name: float(outputs[j, k]) for k, name in enumerate(DETECTORS) if speaking[j, k]}
                if ready[j]
                else {}
            )
            out.append(
                AnomalyScore(
                    score=float(score[j]),
                    raw=float(outputs[j, speaking[j]].mean()) if speaking[j].any() else 0.0,
                    confidence=float(confidence[j]),
                    detectors=detectors,
                    metrics=_LazyViews(raw, rows, contributions, j, self.names),
                    fitted=bool(has_fit[j]),
                    history=t0 + j,
                )
            )
        self.outputs.extend(outputs)
        self.short_means.extend(means_new)
        self.values.extend(rows)
        self.steps.extend(steps_new)
        self.t += m
        self.upto = event_ids[-1]
        return out

    # -- learning --------------------------------------------------------------------

    def _fit_due(self, n: int) -> bool:
        r = self.recipe
        due = n == r.min_fit or (n > r.min_fit and n - self.fit_at >= r.refit_every)
        return due and self.pending_at is None

    def _new_hst(self) -> HalfSpaceTrees:
        r = self.recipe
        return HalfSpaceTrees(
            n_trees=r.hst_trees, height=r.hst_height, window_size=r.hst_window, seed=_seed(self.key)
        )

    def _training(self, values: np.ndarray) -> np.ndarray:
        rows = values[-(self.recipe.fit_rows + 1) :]
        return _features(rows[1:], rows[:-1])

    def _request_fit(self, values: np.ndarray, n: int) -> None:
        self.pending_at = n
        self._pending = _FITTER.submit(fit_detectors, self._training(values), _seed(self.key))

    def _activate_fit(self, values: np.ndarray, n: int) -> None:
        """Use a requested fit ``fit_lag`` samples after its request (waiting for it if
        not done; refitting from the kept values if the request was lost to a restart).
        ``values``: the key's kept values before its ``n``-th sample, about to be scored."""
        if self.pending_at is None or n < self.pending_at + self.recipe.fit_lag:
            return
        if self._pending is not None:
            self.fitted = self._pending.result()
        else:
            since = n - self.pending_at
            self.fitted = fit_detectors(
                self._training(values[: len(values) - since]), _seed(self.key)
            )
        self.fit_at = self.pending_at
        self.pending_at = None
        self._pending = None
        self._fit_changed = True

    def rebaseline(self) -> None:
        """Take the recent level as normal: forget the detectors' score history and the
        values before the last ``shift_recent``, relearn the online and fitted ones."""
        keep = self.recipe.shift_recent
        names, t, upto = self.names, self.t, self.upto
        recent_values, recent_steps = self.values.last(keep), self.steps.last(keep)
        self.__init__(self.key, self.recipe, names)  # type: ignore[misc]
        self.t, self.upto = t, upto
        for h, rows in ((self.values, recent_values), (self.steps, recent_steps)):
            h.rows, h.end, h.dumped = rows.copy(), t, t - len(rows)
        for h in (self.outputs, self.short_means):
            h.end = h.dumped = t
        self.fit_at = t
        self._fit_changed = True

    # -- persistence -----------------------------------------------------------------

    def dump(self) -> dict[str, bytes]:
        header = {
            "format": STATE_FORMAT,
            "upto": self.upto,
            "names": list(self.names),
            "t": self.t,
            "periods": self.periods.tolist(),
            "fit_at": self.fit_at,
            "pending_at": self.pending_at,
            "score_history": [
                self.score_history.total.tolist(),
                self.score_history.total_sq.tolist(),
                self.score_history.count.tolist(),
            ],
            "kept": [
                len(self.values.rows),
                len(self.steps.rows),
                len(self.outputs.rows),
                len(self.short_means.rows),
            ],
        }
        fields = {"head": orjson.dumps(header)}
        fields |= self.values.chunks("v")
        fields |= self.steps.chunks("s")
        fields |= self.outputs.chunks("q")
        fields |= self.short_means.chunks("l")
        every = self.recipe.period_every
        due = self._hst_saved is None or self.t // every != self._hst_saved // every
        if self.hst is None and self._hst_saved is None:
            fields["hst"] = b""  # a re-baselined key's trees start over
        elif self.hst is not None and hasattr(self.hst, "trees") and due:
            # A checkpoint per period_every samples; a restore relearns the samples since
            # (their values are kept), so the trees are exact without a dump per batch.
            fields["hst"] = _frame_hst(self.t, hst_state(self.hst))
            self._hst_saved = self.t
        if self._fit_changed:
            fields["fit"] = b"" if self.fitted is None else self.fitted.to_bytes()
            self._fit_changed = False
        return fields

    @classmethod
    def restore(cls, key: str, recipe: Recipe, fields: Mapping[str, bytes]) -> KeyEnsemble:
        head = fields.get("head")
        if not head:
            return cls(key, recipe)
        header: dict[str, Any] = orjson.loads(head)
        if header.get("format") != STATE_FORMAT:
            return cls(key, recipe)
        ens = cls(key, recipe, tuple(header["names"]))
        t = int(header["t"])
        ens.t, ens.upto = t, header["upto"]
        ens.periods = np.array(header["periods"], dtype=np.int64)
        ens.fit_at, ens.pending_at = int(header["fit_at"]), header["pending_at"]
        total, total_sq, count = header["score_history"]
        ens.score_history = _ScoreHistory(
            np.array(total), np.array(total_sq), np.array(count, dtype=np.int64)
        )
        for history, prefix, kept in zip(
            (ens.values, ens.steps, ens.outputs, ens.short_means),
            "vsql",
            header["kept"],
            strict=True,
        ):
            history.restore(fields, prefix, t, kept)
        fit = fields.get("fit")
        if fit:
            ens.fitted = FittedDetectors.from_bytes(fit)
        hst = fields.get("hst")
        if hst:
            saved_at, masses = _unframe_hst(hst)
            ens.hst = ens._new_hst()
            restore_hst(ens.hst, ens.names, masses)
            ens._hst_saved = saved_at
            ens._relearn_hst(saved_at)
        return ens

    def _relearn_hst(self, saved_at: int) -> None:
        """Let the restored trees learn the samples after their checkpoint, as they did."""
        behind = self.t - saved_at
        if behind <= 0 or self.hst is None:
            return
        values, steps = self.values.rows, self.steps.rows
        start = len(values) - behind
        if start < 1:  # the values it learned from are gone: it starts over
            self.hst, self._hst_saved = None, None
            return
        periods = np.repeat(self.periods[None, :], behind, axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            raw, _ = _raw_detectors(values, steps, start, saved_at, periods, self.recipe, None)
        for row in raw.scaled:
            self.hst.learn_one(dict(zip(self.names, row.tolist(), strict=True)))


def _frame_hst(t: int, masses: bytes) -> bytes:
    return t.to_bytes(8, "big") + masses


def _unframe_hst(blob: bytes) -> tuple[int, bytes]:
    return int.from_bytes(blob[:8], "big"), blob[8:]


def _features(x: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Fitted detectors see each metric's value and its step from the last sample."""
    return np.hstack([x, x - previous])


def _fitted_scores(
    fits: Sequence[FittedDetectors | None], rows: np.ndarray, previous: np.ndarray
) -> list[dict[str, float]]:
    """Each row's fitted-detector scores, one call per run of rows under the same fit."""
    out: list[dict[str, float]] = [{} for _ in fits]
    j = 0
    while j < len(fits):
        fit = fits[j]
        end = j
        while end < len(fits) and fits[end] is fit:
            end += 1
        if fit is not None:
            scores = fit.scores(_features(rows[j:end], previous[j:end]))
            for k in range(j, end):
                out[k] = {name: float(v[k - j]) for name, v in scores.items()}
        j = end
    return out


class AnomalyEnsemble:
    """The worker's anomaly model: makes and restores :class:`KeyEnsemble` detectors
    (implements ``streams.detector.AnomalyModel``)."""

    name = "anomaly-ensemble"

    def __init__(self, recipe: Recipe | None = None, version: str = "1") -> None:
        self.recipe = recipe or Recipe()
        self.version = version
        probe = KeyEnsemble("", self.recipe)
        self.state_fields = (
            "head",
            "hst",
            "fit",
            *(f"v{i}" for i in range(probe.values.slots)),
            *(f"s{i}" for i in range(probe.steps.slots)),
            *(f"q{i}" for i in range(probe.outputs.slots)),
            *(f"l{i}" for i in range(probe.short_means.slots)),
        )

    def new(self, key: str) -> KeyEnsemble:
        return KeyEnsemble(key, self.recipe)

    def restore(self, key: str, fields: Mapping[str, bytes]) -> KeyEnsemble:
        return KeyEnsemble.restore(key, self.recipe, fields)


__all__ = ["DETECTORS", "AnomalyEnsemble", "KeyEnsemble", "Recipe"]
