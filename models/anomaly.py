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

The worker scores a batch's keys together (:func:`score_runs`): the keys that report
as many metrics share one array of their histories (a tape), so every detector, the
baselines and the likelihood step are a few array operations for the whole batch, and
what a batch costs hardly grows with its number of keys. River's Half-Space Trees are
walked as arrays (:mod:`models.anomaly_hst`). A key's scores are the same whichever
keys share its batches and however its samples are split into batches. A key's state
is persisted in small fields: a header, the Half-Space Trees' masses (once per
``period_every`` samples; a restore relearns the samples since from the kept values),
the fitted detectors (only when refitted) and its histories in chunks of ``CHUNK``
samples, of which a batch rewrites only those it touched.
"""

from __future__ import annotations

import functools
import math
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from numpy.lib.stride_tricks import sliding_window_view
from river.anomaly import HalfSpaceTrees
from scipy.special import erfc

from streams.detector import AnomalyScore, KeyDetector
from streams.records import MetricView

from .anomaly_fitted import (
    FittedDetectors,
    fit_detectors,
    restore_hst,
    scores_many,
)
from .anomaly_fitter import fit_result, submit_fit
from .anomaly_hst import CompiledHST, score_and_learn

STATE_FORMAT = 4
"""Version of the state layout; a state of another version is dropped and relearned."""

CHUNK = 8
"""Samples per persisted chunk of a key's histories. A batch rewrites each chunk it
touched: with one sample per key in a batch (the worker's usual case), chunks of 8 write
about 2.3 KB a sample for a five-metric host (32 wrote 8.7 KB, and Redis's CPU grew
with it)."""

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
        refit_every: samples between fits (a fit costs about 30 ms of CPU, most of it
            scikit-learn's per-tree overhead: every 2048 samples it is about 15 µs a
            sample; NAB scored 64.6 with it, 64.5 refitting every 512).
        fit_lag: samples between a fit's request and its use (it runs meanwhile in a
            background thread or process, :mod:`models.anomaly_fitter`; the same sample
            in replay and in the worker). 64: when 200 keys ask at once (7 s of
            fitting) the worker has not caught up with them 16 samples later; NAB
            scores the same as with 16.
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
    refit_every: int = 2048
    fit_lag: int = 64
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


_LOG_DENOMINATOR = math.log(1.0 - 0.9999999999)


def _seed(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) & 0x7FFFFFFF


# -- histories --------------------------------------------------------------------


class History:
    """The newest ``capacity`` rows of a key's per-sample series, by global sample index,
    persisted in chunks of :data:`CHUNK` rows (a batch rewrites only the chunks it
    touched). Rows are appended in place to a buffer with some room beyond
    ``capacity``, moved to its front only when it fills."""

    def __init__(self, capacity: int, width: int) -> None:
        self.capacity = capacity
        self.width = width
        self._buffer = np.empty((0, width))
        self._lo = self._hi = 0
        self.end = 0
        """Global index one past the newest row."""
        self.dumped = 0
        """``end`` at the last dump."""

    @property
    def rows(self) -> np.ndarray:
        """The kept rows, oldest first (a view: valid until the next :meth:`extend`)."""
        return self._buffer[self._lo : self._hi]

    @rows.setter
    def rows(self, rows: np.ndarray) -> None:
        self._buffer = np.array(rows[-self.capacity :], dtype=np.float64).reshape(-1, self.width)
        self._lo, self._hi = 0, len(self._buffer)

    def extend(self, rows: np.ndarray) -> None:
        m = len(rows)
        self.end += m
        if m >= self.capacity:
            self.rows = rows
            return
        if self._hi + m > len(self._buffer):
            keep = self.rows[max(0, self._hi - self._lo + m - self.capacity) :]
            room = self.capacity + 8 * CHUNK
            buffer = np.empty((room, self.width))
            buffer[: len(keep)] = keep
            self._buffer, self._lo, self._hi = buffer, 0, len(keep)
        self._buffer[self._hi : self._hi + m] = rows
        self._hi += m
        self._lo = max(self._lo, self._hi - self.capacity)

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


def _ordered(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``w`` sorted over the last axis (NaN padding last) and their valid counts."""
    return np.sort(w, axis=-1), w.shape[-1] - np.isnan(w).sum(axis=-1)


def _median(w: np.ndarray) -> np.ndarray:
    """Median over the last axis, ignoring NaN padding (a young key's windows)."""
    return _sorted_quantile(*_ordered(w), 0.5)


def _sorted_quantile(ordered: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` (linear, as numpy's default) of rows sorted with NaN last, ``n``
    valid values each (NaN where none). Selection and one interpolation: exact whatever
    the shape of the batch of rows."""
    pos = q * np.maximum(n - 1, 0)
    below = np.floor(pos).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(ordered, below[..., None], -1)[..., 0]
    b = np.take_along_axis(ordered, above[..., None], -1)[..., 0]
    return np.where(n > 0, a + (b - a) * (pos - below), np.nan)


def _sorted_range(ordered: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest valid value of sorted rows (NaN where none)."""
    top = np.take_along_axis(ordered, np.maximum(n - 1, 0)[..., None], -1)[..., 0]
    return np.where(n > 0, ordered[..., 0], np.nan), np.where(n > 0, top, np.nan)


def _recent_rows(r: Recipe) -> int:
    """Rows before a run row that the detectors but the baseline read (the level shift's
    and the variance change's recent windows)."""
    return max(r.shift_recent, r.variance_recent) + 1


@dataclass(slots=True)
class _Tape:
    """The runs of a batch's keys that report the same number of metrics, on one array:
    per key, its kept values then its run's, right-aligned, NaN before its oldest value
    (so that every window a detector takes is a slice, and a young key's is NaN-padded).
    Rows of a key are contiguous and in order."""

    values: np.ndarray
    """(keys, positions, metrics)."""
    steps: np.ndarray
    """First differences of ``values`` (the first value's step is 0)."""
    origin: np.ndarray
    """Per key, the position of its oldest value."""
    key: np.ndarray
    """Per run row, its key."""
    pos: np.ndarray
    """Per run row, its position."""
    t: np.ndarray
    """Per run row, the key's sample count before it."""
    periods: np.ndarray
    """Per run row and metric, the period in force (0: none)."""
    lengths: np.ndarray
    """Per key, its run's length."""
    starts: np.ndarray
    """Per key, its run's first row."""
    place: np.ndarray
    """Per run row, its place in its key's run."""

    @classmethod
    def build(
        cls,
        kept: Sequence[tuple[np.ndarray, np.ndarray]],
        runs: Sequence[tuple[np.ndarray, np.ndarray]],
        t0: Sequence[int],
        r: Recipe,
        lookback: Sequence[int] | None = None,
    ) -> _Tape:
        """From each key's kept (values, steps) and run (values, steps).

        ``lookback``: per key, how many of its kept rows the tape holds (the newest);
        ``None`` holds them all, padded for the baseline's windows. A tape that holds
        fewer serves every detector but the baseline (see :func:`_raw_detectors`'s
        ``wide``); a key's ``origin`` is still where its oldest kept row would be.
        """
        width = runs[0][0].shape[1]
        m = np.array([len(v) for v, _ in runs], dtype=np.int64)
        n = np.array([len(v) for v, _ in kept], dtype=np.int64) + m
        if lookback is None:
            held, pad = n, r.window + _recent_rows(r)
        else:
            held, pad = np.minimum(n, np.asarray(lookback, dtype=np.int64) + m), _recent_rows(r)
        length = pad + int(held.max())
        values = np.empty((len(runs), length, width))
        steps = np.empty((len(runs), length, width))
        for k, ((kv, ks), (rv, rs)) in enumerate(zip(kept, runs, strict=True)):
            lo, mid = length - held[k], length - m[k]
            first = len(kv) - (mid - lo)  # the oldest kept row the tape holds
            values[k, :lo], values[k, lo:mid], values[k, mid:] = np.nan, kv[first:], rv
            steps[k, :lo], steps[k, lo:mid], steps[k, mid:] = np.nan, ks[first:], rs
        key = np.repeat(np.arange(len(runs)), m)
        starts = np.cumsum(m) - m
        j = np.arange(len(key)) - starts[key]
        return cls(
            values,
            steps,
            length - n,
            key,
            (length - m)[key] + j,
            np.asarray(t0, dtype=np.int64)[key] + j,
            np.zeros((len(key), width), dtype=np.int64),
            m,
            starts,
            j,
        )

    def windows(
        self, series: np.ndarray, key: np.ndarray, ends: np.ndarray, length: int
    ) -> np.ndarray:
        """``series[key, e - length : e]`` per row (rows, metrics, length)."""
        return sliding_window_view(series, length, axis=1)[key, ends - length]


@dataclass(frozen=True, slots=True)
class _Raw:
    """Per-metric detector distances of a tape's run rows, and what the alerts show."""

    distances: dict[str, np.ndarray]
    rows: np.ndarray
    previous: np.ndarray
    """Each row's previous value (its own for a key's first sample)."""
    expected: np.ndarray
    low: np.ndarray
    high: np.ndarray
    scaled: np.ndarray
    """Each row scaled to [0.1, 0.9] by its baseline's range (clipped to [0, 1])."""


def _raw_detectors(
    tape: _Tape,
    r: Recipe,
    cached: Sequence[tuple[int, np.ndarray] | None],
    wide: Callable[[np.ndarray, np.ndarray], tuple[_Tape, np.ndarray, np.ndarray]] | None = None,
) -> tuple[_Raw, list[tuple[int, np.ndarray]]]:
    """Distances of a tape's run rows from what their key's history expects.

    The history's statistics over ``window`` values (its baseline) are taken every
    ``baseline_every`` samples: a sample is compared with the baseline of the window
    before the last multiple of ``baseline_every`` at or before it. ``cached``: per
    key, the last baseline computed (the key's sample count there, and its statistics:
    a row per :data:`_FIELDS` name); the newest per key is returned with the
    distances, for the next run. ``wide``: for a tape that holds only the keys' recent
    rows, a tape of whole histories for the keys whose baseline is due (their keys and
    positions there), from their keys and positions in ``tape``.
    """
    key, pos, t, periods = tape.key, tape.pos, tape.t, tape.periods
    values, origin = tape.values, tape.origin
    lag = t % r.baseline_every
    tb = t - lag
    starts = np.r_[True, (key[1:] != key[:-1]) | (tb[1:] != tb[:-1])]
    first = np.flatnonzero(starts)  # each baseline point's first row
    point = np.cumsum(starts) - 1
    pk, ptb = key[first], tb[first]
    key_first = np.r_[True, pk[1:] != pk[:-1]]
    reuse = np.array(
        [
            bool(kf) and (c := cached[k]) is not None and c[0] == b
            for kf, k, b in zip(key_first, pk.tolist(), ptb.tolist(), strict=True)
        ],
        dtype=bool,
    )
    fresh = np.flatnonzero(~reuse)
    computed = None
    if len(fresh):
        source, fk, ends = tape, pk[fresh], (pos - lag)[first[fresh]]
        if wide is not None:
            source, fk, ends = wide(fk, ends)
        computed = _baseline(source, fk, ends, ptb[fresh], periods[first[fresh]], r)
    reused = np.flatnonzero(reuse)
    # the reused keys' points in one array: (point, field, metric)
    held = np.stack([cached[k][1] for k in pk[reused].tolist()]) if len(reused) else None  # type: ignore[index]
    table = []
    for j, f in enumerate(_FIELDS):
        column = np.empty((len(first), values.shape[2]))
        if computed is not None:
            column[fresh] = getattr(computed, f)
        if held is not None:
            column[reused] = held[:, j]
        table.append(column)
    b = _Baseline(*table)
    last = np.flatnonzero(np.r_[pk[1:] != pk[:-1], True])
    rows = np.stack(table, axis=1)[last]
    newest = {
        k: (point, rows[i].copy())
        for i, (k, point) in enumerate(zip(pk[last].tolist(), ptb[last].tolist(), strict=True))
    }
    med, scale, spread = b.med[point], b.scale[point], b.spread[point]
    q1, q3, lo, hi = b.q1[point], b.q3[point], b.lo[point], b.hi[point]
    rows = values[key, pos]
    z = np.abs(rows - med) / scale
    iqr = q3 - q1
    beyond = np.maximum(0.0, np.maximum(rows - (q3 + 1.5 * iqr), (q1 - 1.5 * iqr) - rows))
    fence = beyond / np.maximum(iqr, scale)
    residual = np.abs(tape.steps[key, pos]) / b.step_scale[point]
    metric = np.arange(values.shape[2])[None, :]
    season = _season_residual_at(
        values, key[:, None], pos[:, None], periods, origin[key][:, None], metric
    )
    seasonal = np.abs(season) / b.season_scale[point]
    seasonal = np.where((periods > 0) & (t >= 32)[:, None], seasonal, np.nan)
    capped = np.where(np.isnan(seasonal), np.inf, seasonal)
    k = r.shift_recent
    recent = _median(tape.windows(values, key, pos + 1, k))
    shift = np.where(((t + 1 - k) > 0)[:, None], np.abs(recent - b.old_med[point]), 0.0)
    shift = shift / b.old_scale[point]
    k2 = r.variance_recent
    s_recent = _median(np.abs(tape.windows(tape.steps, key, pos + 1, k2 - 1)))
    floor = 0.01 * spread + 1e-9
    change = np.abs(np.log((s_recent + floor) / (b.old_step[point] + floor)))
    change = np.maximum(change - r.variance_deadband, 0.0)
    variance = np.where(((t + 1 - k2) > 1)[:, None], change, 0.0)
    ready = (np.minimum(tb, r.window) >= r.min_history)[:, None]
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
    previous = np.where((pos - 1 >= origin[key])[:, None], values[key, pos - 1], rows)
    expected = np.where(ready, previous, rows)
    low = np.where(ready, np.maximum(q1 - 1.5 * iqr, lo), rows)
    high = np.where(ready, np.minimum(q3 + 1.5 * iqr, hi), rows)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = np.clip((rows - lo) / span * 0.8 + 0.1, 0.0, 1.0)
    scaled = np.where(np.isnan(scaled), 0.5, scaled)
    keys = len(tape.origin)
    return _Raw(distances, rows, previous, expected, low, high, scaled), [
        newest[k] for k in range(keys)
    ]


@dataclass(frozen=True, slots=True)
class _Baseline:
    """History statistics at baseline points (rows: points, columns: metrics)."""

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


_FIELDS = (
    "med", "scale", "spread", "q1", "q3", "lo", "hi", "step_scale", "season_scale",
    "old_med", "old_scale", "old_step",
)  # fmt: skip


def _baseline(
    tape: _Tape,
    key: np.ndarray,
    ends: np.ndarray,
    t: np.ndarray,
    periods: np.ndarray,
    r: Recipe,
) -> _Baseline:
    """Statistics of the ``window`` values (and steps) of ``key`` before each of ``ends``
    (tape positions; ``t``: the key's sample count there), all points at once. One sort
    per window gives its median, quartiles and range."""
    values, steps = tape.values, tape.steps
    win = tape.windows(values, key, ends, r.window)
    ordered, n = _ordered(win)
    med = _sorted_quantile(ordered, n, 0.5)
    q1, q3 = _sorted_quantile(ordered, n, 0.25), _sorted_quantile(ordered, n, 0.75)
    lo, hi = _sorted_range(ordered, n)
    spread = hi - lo
    floor = 1e-9 + 1e-6 * np.abs(med)
    scale = np.maximum(
        np.maximum(_median(np.abs(win - med[..., None])) * 1.4826, 0.01 * spread), floor
    )
    step_med = _median(np.abs(tape.windows(steps, key, ends, r.window)))
    step_scale = np.maximum(np.maximum(step_med * 1.4826, 0.01 * spread), floor)
    # the seasonal residuals the window's values had, from two periods after the key's
    # oldest kept value (a reference needs two periods back)
    p = periods[:, :, None]
    pos = (ends[:, None] - r.window + np.arange(r.window)[None, :])[:, None, :]
    first = ends[:, None, None] - np.minimum(t[:, None, None], r.window + 2 * p) + 2 * p
    metric = np.arange(values.shape[2])[None, :, None]
    origin = tape.origin[key][:, None, None]
    past = _season_residual_at(values, key[:, None, None], pos, p, origin, metric)
    past = np.where(pos >= first, past, np.nan)
    season_scale = np.maximum(np.maximum(_median(np.abs(past)) * 1.4826, 0.01 * spread), floor)
    season_scale = np.where(periods > 0, season_scale, np.nan)
    kr = r.shift_recent
    old = tape.windows(values, key, ends + 1 - kr, r.window)
    old_ordered, old_n = _ordered(old)
    old_med = _sorted_quantile(old_ordered, old_n, 0.5)
    old_lo, old_hi = _sorted_range(old_ordered, old_n)
    old_scale = np.maximum(
        np.maximum(_median(np.abs(old - old_med[..., None])) * 1.4826, 0.01 * (old_hi - old_lo)),
        1e-9 + 1e-6 * np.abs(old_med),
    )
    old_step = _median(np.abs(tape.windows(steps, key, ends + 1 - r.variance_recent, r.window - 1)))
    return _Baseline(
        med, scale, spread, q1, q3, lo, hi, step_scale, season_scale, old_med, old_scale, old_step
    )


def _season_residual_at(
    values: np.ndarray,
    key: np.ndarray,
    pos: np.ndarray,
    p: np.ndarray,
    origin: np.ndarray,
    metric: np.ndarray,
) -> np.ndarray:
    """``values[key, pos, metric]`` minus its seasonal reference (the arguments broadcast
    together; ``p``: the period, 0 for none; ``origin``: the key's oldest position): the
    median of the values one, two and three periods back (the mean of two while only
    two exist; NaN before), so that one past incident does not echo a period later."""
    key, pos, p, origin, metric = np.broadcast_arrays(key, pos, p, origin, metric)
    last = values.shape[1] - 1
    two = (p > 0) & (pos - 2 * p >= origin) & (pos <= last)
    three = two & (pos - 3 * p >= origin)

    def at(back: int) -> np.ndarray:
        return values[key, np.clip(pos - back * p, 0, last), metric]

    x0, x1, x2, x3 = at(0), at(1), at(2), at(3)
    mid = np.maximum(np.minimum(x1, x2), np.minimum(np.maximum(x1, x2), x3))
    return np.where(three, x0 - mid, np.where(two, x0 - 0.5 * (x1 + x2), np.nan))


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


def _short_means(
    kept: Sequence[np.ndarray], outputs: np.ndarray, rows_of: _Tape, shorts: np.ndarray
) -> np.ndarray:
    """Per run row of ``rows_of`` (its ``outputs``; ``kept``: per key, its outputs before
    them) and detector, the mean of its last ``shorts[k]`` outputs (fewer for a key's
    first rows: NaN, a sample the detector did not speak on, is ignored)."""
    key, j = rows_of.key, rows_of.place
    longest = int(shorts.max())
    before = longest - 1
    tape = np.full((len(kept), before + int(rows_of.lengths.max()), outputs.shape[1]), np.nan)
    for k, rows in enumerate(kept):
        tail = rows[len(rows) - min(len(rows), before) :]
        tape[k, before - len(tail) : before] = tail
    tape[key, before + j] = outputs
    win = sliding_window_view(tape, longest, axis=1)[key, j]  # (rows, detectors, longest)
    valid = (np.arange(longest)[None, :] >= (longest - shorts)[:, None]) & ~np.isnan(win)
    total = np.zeros(outputs.shape)
    for i in range(longest):  # in order: the same sum however the rows were batched
        total = total + np.where(valid[..., i], win[..., i], 0.0)
    count = valid.sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _level(
    total: np.ndarray, total_sq: np.ndarray, count: np.ndarray, current: np.ndarray, r: Recipe
) -> np.ndarray:
    """Log-scaled likelihood of short means ``current`` against the sums of those before."""
    mu = total / np.maximum(count, 1)
    var = np.maximum(total_sq / np.maximum(count, 1) - mu * mu, 0.0)
    mu = np.maximum(mu, 0.03)
    sd = np.sqrt(np.maximum(var, 3e-4))
    tail = 0.5 * erfc((current - mu) / sd / math.sqrt(2.0))
    level = np.minimum(1.0, np.log(1.0000000001 - (1.0 - tail)) / _LOG_DENOMINATOR)
    return np.where((count >= r.likelihood_min) & ~np.isnan(current), level, 0.0)


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
        """Likelihood of each row of ``means[start:]`` (the key's ``t0``-th sample on)
        against the short means before it, one row at a time; advances the sums past
        them. A mean leaves the sums ``likelihood_history`` samples after it entered
        (none that the key no longer keeps: a re-baselined key's earlier ones never
        entered)."""
        length = r.likelihood_history
        m = len(means) - start
        out = np.zeros((m, means.shape[1]))
        for j in range(m):
            g, t = start + j, t0 + j
            current = means[g]
            out[j] = _level(self.total, self.total_sq, self.count, current, r)
            self._push(current, means[g - length] if g >= length else None)
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


def _likelihoods(
    histories: Sequence[_ScoreHistory],
    kept: Sequence[np.ndarray],
    means: np.ndarray,
    rows_of: _Tape,
    r: Recipe,
) -> np.ndarray:
    """:meth:`_ScoreHistory.likelihoods` for the run rows of many keys at once (their short
    ``means``; ``kept``: per key, its short means before them). The running
    sums are cumulative sums in the same order as one row at a time, so the results are
    the same; a key whose run reaches a recomputation of its sums goes row by row."""
    key, j, t = rows_of.key, rows_of.place, rows_of.t
    runs, starts = rows_of.lengths, rows_of.starts
    length = r.likelihood_history
    out = np.zeros_like(means)
    stepwise = np.zeros(len(histories), dtype=bool)
    stepwise[key[(t + 1) % length == 0]] = True
    leaving = np.full_like(means, np.nan)
    for k, rows in enumerate(kept):
        if not runs[k]:
            continue
        at = slice(starts[k], starts[k] + runs[k])
        if stepwise[k]:
            all_means = np.vstack([rows, means[at]])
            out[at] = histories[k].likelihoods(all_means, len(rows), int(t[starts[k]]), r)
            continue
        back = len(rows) + np.arange(runs[k]) - length  # index into rows, then the run's
        old = (back >= 0) & (back < len(rows))
        leaving[at][old] = rows[back[old]]
        new = back >= len(rows)
        leaving[at][new] = means[at][back[new] - len(rows)]
    fast = ~stepwise[key]
    if not fast.any():
        return out
    width = int(runs[~stepwise].max())
    # per key: its sums, then per row the mean entering and the one leaving (negated)
    seq_total = np.zeros((len(histories), 1 + 2 * width, means.shape[1]))
    seq_sq = np.zeros_like(seq_total)
    seq_count = np.zeros(seq_total.shape, dtype=np.int64)
    for k, h in enumerate(histories):
        seq_total[k, 0], seq_sq[k, 0], seq_count[k, 0] = h.total, h.total_sq, h.count
    rows_k, rows_j, current, gone = key[fast], j[fast], means[fast], leaving[fast]
    ok, left = ~np.isnan(current), ~np.isnan(gone)
    seq_total[rows_k, 1 + 2 * rows_j] = np.where(ok, current, 0.0)
    seq_total[rows_k, 2 + 2 * rows_j] = -np.where(left, gone, 0.0)
    seq_sq[rows_k, 1 + 2 * rows_j] = np.where(ok, current * current, 0.0)
    seq_sq[rows_k, 2 + 2 * rows_j] = -np.where(left, gone * gone, 0.0)
    seq_count[rows_k, 1 + 2 * rows_j] = ok
    seq_count[rows_k, 2 + 2 * rows_j] = -left.astype(np.int64)
    total, total_sq = np.cumsum(seq_total, axis=1), np.cumsum(seq_sq, axis=1)
    count = np.cumsum(seq_count, axis=1)
    before = (rows_k, 2 * rows_j)
    out[fast] = _level(total[before], total_sq[before], count[before], current, r)
    for k in np.flatnonzero(~stepwise & (runs > 0)).tolist():
        end = 2 * int(runs[k])
        histories[k].total = total[k, end].copy()
        histories[k].total_sq = total_sq[k, end].copy()
        histories[k].count = count[k, end].copy()
    return out


@dataclass(frozen=True, slots=True, eq=False)
class _LazyDetectors(Mapping[str, float]):
    """A sample's detector outputs (those that spoke), built when read (by alerts)."""

    outputs: np.ndarray
    speaking: np.ndarray
    row: int

    def _spoke(self) -> dict[str, float]:
        j = self.row
        return {
            name: float(self.outputs[j, d])
            for d, name in enumerate(DETECTORS)
            if self.speaking[j, d]
        }

    def __getitem__(self, name: str) -> float:
        return self._spoke()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._spoke())

    def __len__(self) -> int:
        return len(self._spoke())


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
        self.shorts = np.array([recipe.short_of(name) for name in DETECTORS])
        # the outputs a short mean needs, in whole chunks
        self.outputs = History(CHUNK * -(-int(self.shorts.max()) // CHUNK), len(DETECTORS))
        self.short_means = History(recipe.likelihood_history + CHUNK, len(DETECTORS))
        self.score_history = _ScoreHistory.empty(len(DETECTORS))
        self.combine = [DETECTORS.index(name) for name in recipe.combine]
        self.weights = np.array([recipe.weights.get(name, 1.0) for name in recipe.combine])
        self.periods = np.zeros(d, dtype=np.int64)
        self.hst: CompiledHST | None = None
        self.fitted: FittedDetectors | None = None
        self.fit_at = 0
        self.pending_at: int | None = None
        self._pending: Future[FittedDetectors | bytes] | None = None
        self._fit_changed = False
        self._baseline: tuple[int, np.ndarray] | None = None
        """The last baseline point: the key's sample count there, and its statistics
        (one row per :data:`_FIELDS` name, one column per metric)."""
        self._hst_saved: int | None = None

    # -- scoring -------------------------------------------------------------------

    def score_many(
        self, event_ids: Sequence[str], samples: Sequence[Mapping[str, float]]
    ) -> list[AnomalyScore]:
        """Score a run of the key's samples in order, learning from each after it."""
        return score_runs([(self, event_ids, samples)])[0]

    def _accept(self, samples: Sequence[Mapping[str, float]]) -> int:
        """How many of ``samples`` (from the first) the key scores with its metrics; a
        first sample with a metric it never reported restarts its learning with it."""

        def present(values: Mapping[str, float]) -> set[str]:
            return {k for k, v in values.items() if not math.isnan(v)}

        names = set(self.names)
        if not present(samples[0]) <= names:
            self.__init__(self.key, self.recipe, tuple(sorted(names | present(samples[0]))))  # type: ignore[misc]
            names = set(self.names)
        for i, values in enumerate(samples):
            if not present(values) <= names:
                return i
        return len(samples)

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

    def _advance(
        self, kept: np.ndarray, run: np.ndarray
    ) -> tuple[np.ndarray, list[FittedDetectors | None]]:
        """Per row of the run (``run``, after the key's ``kept`` values), the periods in
        force and the fit that scores it: periods are estimated, fits requested and
        activated on the way (the only steps that read the history: it is joined for
        them alone)."""
        r = self.recipe
        start, m = len(kept), len(run)
        values = functools.cache(lambda: np.concatenate([kept, run]))
        periods = np.empty((m, len(self.names)), dtype=np.int64)
        fits: list[FittedDetectors | None] = []
        for j in range(m):
            t = self.t + j
            if t % r.period_every == 0 and t >= 64:
                history = values()[max(0, start + j - r.period_history) : start + j]
                self.periods = np.array([_period(history[:, k], r) for k in range(len(self.names))])
            periods[j] = self.periods
            self._activate_fit(values, start + j, t)
            fits.append(self.fitted)
            if self._fit_due(t + 1):
                self._request_fit(values()[: start + j + 1], t + 1)
        return periods, fits

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
        self._pending = submit_fit(self._training(values), _seed(self.key))

    def _activate_fit(self, values: Callable[[], np.ndarray], end: int, n: int) -> None:
        """Use a requested fit ``fit_lag`` samples after its request (waiting for it if
        not done; refitting from the kept values if the request was lost to a restart).
        ``values()[:end]``: the key's kept values before its ``n``-th sample, about to be
        scored (taken only for a refit)."""
        if self.pending_at is None or n < self.pending_at + self.recipe.fit_lag:
            return
        fitted = None if self._pending is None else fit_result(self._pending)
        if fitted is None:  # lost to a restart, or its fitting process died
            since = n - self.pending_at
            kept = values()[:end]
            fitted = fit_detectors(self._training(kept[: len(kept) - since]), _seed(self.key))
        self.fitted = fitted
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
        elif self.hst is not None and due:
            # A checkpoint per period_every samples; a restore relearns the samples since
            # (their values are kept), so the trees are exact without a dump per batch.
            fields["hst"] = _frame_hst(self.t, self.hst.state())
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
            model = ens._new_hst()
            restore_hst(model, ens.names, masses)
            ens.hst = CompiledHST.of(model, ens.names)
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
        tape = _Tape.build(
            [(values[:start], steps[:start])],
            [(values[start:], steps[start:])],
            [saved_at],
            self.recipe,
        )
        tape.periods[:] = self.periods
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            raw, _ = _raw_detectors(tape, self.recipe, [None])
        score_and_learn([self.hst], raw.scaled, tape.key)


def _frame_hst(t: int, masses: bytes) -> bytes:
    return t.to_bytes(8, "big") + masses


def _unframe_hst(blob: bytes) -> tuple[int, bytes]:
    return int.from_bytes(blob[:8], "big"), blob[8:]


def _features(x: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Fitted detectors see each metric's value and its step from the last sample."""
    return np.hstack([x, x - previous])


def _fitted_scores(
    fits: Sequence[FittedDetectors | None], rows: np.ndarray, previous: np.ndarray
) -> np.ndarray:
    """Each row's fitted-detector scores (columns: :data:`FITTED`; NaN without a fit), all
    rows of all fits at once."""
    out = np.full((len(fits), len(FITTED)), np.nan)
    distinct: dict[int, int] = {}
    used: list[FittedDetectors] = []
    which = np.full(len(fits), -1, dtype=np.intp)
    for j, fit in enumerate(fits):
        if fit is not None:
            if id(fit) not in distinct:
                distinct[id(fit)] = len(used)
                used.append(fit)
            which[j] = distinct[id(fit)]
    scored = np.flatnonzero(which >= 0)
    if len(scored):
        x = _features(rows[scored], previous[scored])
        out[scored] = scores_many(used, x, which[scored])
    return out


def score_runs(
    runs: Sequence[tuple[KeyEnsemble, Sequence[str], Sequence[Mapping[str, float]]]],
) -> list[list[AnomalyScore]]:
    """Score runs of many keys' samples (each key at most once), each in order, learning
    from each sample after it: the keys that report as many metrics are scored
    together, and each key's scores are those it would get alone."""
    out: list[list[AnomalyScore]] = [[] for _ in runs]
    pending = [(i, key, list(ids), list(samples)) for i, (key, ids, samples) in enumerate(runs)]
    while pending:
        groups: dict[int, list[tuple[int, KeyEnsemble, list[str], list[Mapping[str, float]]]]]
        groups, rest = {}, []
        for i, key, ids, samples in pending:
            if not samples:
                continue
            n = key._accept(samples)
            groups.setdefault(len(key.names), []).append((i, key, ids[:n], samples[:n]))
            if n < len(samples):
                rest.append((i, key, ids[n:], samples[n:]))
        for items in groups.values():
            scored = _score_group(
                [key for _, key, _, _ in items],
                [ids for _, _, ids, _ in items],
                [samples for _, _, _, samples in items],
            )
            for (i, _, _, _), scores in zip(items, scored, strict=True):
                out[i] += scores
        pending = rest
    return out


def _score_group(
    keys: Sequence[KeyEnsemble],
    event_ids: Sequence[Sequence[str]],
    samples: Sequence[Sequence[Mapping[str, float]]],
) -> list[list[AnomalyScore]]:
    """Score the runs of keys that report as many metrics, on one tape."""
    r = keys[0].recipe
    rows_in = [key._rows(s) for key, s in zip(keys, samples, strict=True)]
    runs = []
    for key, rows in zip(keys, rows_in, strict=True):
        kept = key.values.rows
        first = kept[-1:] if len(kept) else rows[:1]
        runs.append((rows, rows - np.vstack([first, rows[:-1]])))
    fits: list[FittedDetectors | None] = []
    in_force = []
    for key, (rows, _) in zip(keys, runs, strict=True):
        periods, key_fits = key._advance(key.values.rows, rows)
        in_force.append(periods)
        fits += key_fits
    history = [(key.values.rows, key.steps.rows) for key in keys]
    t0 = [key.t for key in keys]
    # Only the baseline reads further back than three periods (the seasonal reference):
    # the tape holds that much, and the keys whose baseline is due get a tape of their own.
    lookback = [max(3 * int(p.max(initial=0)), _recent_rows(r)) for p in in_force]
    tape = _Tape.build(history, runs, t0, r, lookback)
    tape.periods[:] = np.concatenate(in_force)
    m, starts = tape.lengths, tape.starts

    def wide(key: np.ndarray, ends: np.ndarray) -> tuple[_Tape, np.ndarray, np.ndarray]:
        due, at = np.unique(key, return_inverse=True)
        whole = _Tape.build(
            [history[k] for k in due], [runs[k] for k in due], [t0[k] for k in due], r
        )
        return whole, at, ends + (whole.values.shape[1] - tape.values.shape[1])

    with warnings.catch_warnings():
        # a young key's windows are NaN-padded; all-NaN slices are masked below
        warnings.simplefilter("ignore", RuntimeWarning)
        raw, baselines = _raw_detectors(tape, r, [key._baseline for key in keys], wide)
    q = {
        name: 1.0 - np.exp(-np.nan_to_num(dist) / r.squash) for name, dist in raw.distances.items()
    }
    share = sum((q[name] for name in PER_METRIC), np.zeros(raw.rows.shape)) / len(PER_METRIC)
    totals = _row_sum(share)[:, None]
    width = share.shape[1]
    contributions = np.where(totals > 0, share / np.where(totals > 0, totals, 1.0), 1.0 / width)
    for key in keys:
        if key.hst is None:
            key.hst = CompiledHST.grow(key._new_hst(), key.names)
    online = score_and_learn([key.hst for key in keys], raw.scaled, tape.key)  # type: ignore[misc]
    t_rows = tape.t
    ready = t_rows >= r.min_history
    has_fit = np.array([f is not None for f in fits], dtype=bool)
    speaking = np.repeat(ready[:, None], len(DETECTORS), axis=1)
    speaking[:, PER_METRIC.index("seasonal_residual")] &= ~np.isnan(
        raw.distances["seasonal_residual"]
    ).all(axis=1)
    speaking[:, len(PER_METRIC)] &= t_rows >= r.hst_window
    speaking[:, len(PER_METRIC) + 1 :] &= has_fit[:, None]
    outputs = np.full((len(t_rows), len(DETECTORS)), np.nan)
    for k, name in enumerate(PER_METRIC):
        # a change of variability is judged on the key as a whole: each metric's
        # sampling noise would otherwise make the largest of them a noise detector
        if name == "variance_change":
            outputs[:, k] = _row_sum(q[name]) / width
        else:
            outputs[:, k] = q[name].max(axis=1)
    outputs[:, len(PER_METRIC)] = online
    outputs[:, len(PER_METRIC) + 1 : len(PER_METRIC) + 1 + len(FITTED)] = _fitted_scores(
        fits, raw.rows, raw.previous
    )
    outputs[~speaking] = np.nan
    group = [DETECTORS.index(name) for name in LEARNED]
    speaking[:, -1] = speaking[:, group].any(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        outputs[:, -1] = np.nanmean(outputs[:, group], axis=1)
    shorts = keys[0].shorts
    means = _short_means([key.outputs.rows for key in keys], outputs, tape, shorts)
    levels = _likelihoods(
        [key.score_history for key in keys], [key.short_means.rows for key in keys], means, tape, r
    )
    levels[~speaking] = 0.0
    combine, weights = keys[0].combine, keys[0].weights
    score = (levels[:, combine] * weights).max(axis=1)
    verdict = score >= 0.5
    agree = np.sum(((levels >= 0.5) == verdict[:, None]) & speaking, axis=1)
    confidence = np.where(ready, agree / np.maximum(speaking.sum(axis=1), 1), 1.0)
    spoke = speaking.sum(axis=1)
    raw_mean = _row_sum(np.where(speaking, outputs, 0.0)) / np.maximum(spoke, 1)
    out: list[list[AnomalyScore]] = []
    scores, raws, confidences = score.tolist(), raw_mean.tolist(), confidence.tolist()
    for k, key in enumerate(keys):
        at = slice(int(starts[k]), int(starts[k] + m[k]))
        key_scores = []
        for g in range(at.start, at.stop):
            key_scores.append(
                AnomalyScore(
                    score=scores[g],
                    raw=raws[g],
                    confidence=confidences[g],
                    detectors=_LazyDetectors(outputs, speaking, g),
                    metrics=_LazyViews(raw, raw.rows, contributions, g, key.names),
                    fitted=bool(has_fit[g]),
                    history=int(t_rows[g]),
                )
            )
        out.append(key_scores)
        key.outputs.extend(outputs[at])
        key.short_means.extend(means[at])
        key.values.extend(runs[k][0])
        key.steps.extend(runs[k][1])
        key.t += int(m[k])
        key.upto = event_ids[k][-1]
        key._baseline = baselines[k]
    return out


def _row_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis, column by column (the same sum whatever the rows)."""
    total = np.zeros(a.shape[:-1])
    for c in range(a.shape[-1]):
        total = total + a[..., c]
    return total


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

    def score_batch(
        self, runs: Sequence[tuple[KeyDetector, Sequence[str], Sequence[Mapping[str, float]]]]
    ) -> list[list[AnomalyScore]]:
        own = []
        for detector, ids, samples in runs:
            if not isinstance(detector, KeyEnsemble):
                msg = f"{type(detector).__name__} is not a detector this model made"
                raise TypeError(msg)
            own.append((detector, ids, samples))
        return score_runs(own)


__all__ = ["DETECTORS", "AnomalyEnsemble", "KeyEnsemble", "Recipe"]
