"""Scale-free LSTM inputs from windows of link measures, shared by training and serving.

One model serves a 0.2 Mbit/s mobile link and a 10 Gbit/s datacenter link because every
bandwidth-like channel is a log ratio to the window's last bandwidth value, and the
model predicts ``log(next / last)``: a residual on the last value, the strongest simple
predictor on real traces. Channels per time step (``CHANNELS``):

* ``bw``, ``bw_present``: log(bandwidth_s / last), and whether the sample had one
  (bandwidth, else throughput, as :func:`streams.predictor.bandwidth_target` defines);
* ``thr``, ``thr_present``: log(throughput_s / last), when both were measured;
* ``lat``, ``loss``, ``jit`` and their presence flags: log1p of the value,
  standardised with training statistics;
* ``ewma``, ``hm5``: log(smoother_s / last), causal EWMA (alpha 0.3) and harmonic mean
  of the last 5 bandwidth values, so the model can blend last value and smoothers;
* ``level``: standardised log bandwidth (absolute scale, training statistics);
* ``pad``: 1 where the step holds a sample, 0 for left padding of a short window.

A missing measure is 0 with its flag 0, never refused; ``features_seen`` records which
were present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from streams.predictor import bandwidth_target

CHANNELS: tuple[str, ...] = (
    "bw", "bw_present", "thr", "thr_present",
    "lat", "lat_present", "loss", "loss_present", "jit", "jit_present",
    "ewma", "hm5", "level", "pad",
)  # fmt: skip
EPS_MBPS = 1e-3
"""Floor before taking logs: traces hold a few exact zeros."""
EWMA_ALPHA = 0.3
CLIP = 5.0


@dataclass(frozen=True, slots=True)
class FeatureStats:
    """Standardisation statistics fitted on training windows, stored with the model."""

    level_mean: float = 0.0
    level_std: float = 1.0
    lat_mean: float = 0.0
    lat_std: float = 1.0
    loss_mean: float = 0.0
    loss_std: float = 1.0
    jit_mean: float = 0.0
    jit_std: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> FeatureStats:
        return cls(**{k: float(v) for k, v in data.items()})


def fit_stats(series: list[np.ndarray]) -> FeatureStats:
    """Statistics of the measures over training series of shape ``(n, 5)``.

    Examples:
        >>> s = np.array([[100.0, 10.0, 0.0, 1.0, 90.0], [200.0, 10.0, 0.0, 1.0, 180.0]])
        >>> round(fit_stats([s]).level_mean, 3)
        4.952
    """
    stacked = np.concatenate(series, axis=0)

    def mean_std(values: np.ndarray) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return 0.0, 1.0
        return float(values.mean()), float(max(values.std(), 1e-3))

    level = np.log(np.maximum(bandwidth_target(stacked[None])[0], EPS_MBPS))
    lm, ls = mean_std(level)
    am, asd = mean_std(np.log1p(stacked[:, 1]))
    pm, psd = mean_std(np.log1p(stacked[:, 2]))
    jm, jsd = mean_std(np.log1p(stacked[:, 3]))
    return FeatureStats(lm, ls, am, asd, pm, psd, jm, jsd)


def _ffill(values: np.ndarray) -> np.ndarray:
    """Forward-fill NaN along the last axis (leading NaN stay NaN)."""
    mask = np.isfinite(values)
    index = np.where(mask, np.arange(values.shape[-1]), 0)
    np.maximum.accumulate(index, axis=-1, out=index)
    filled = np.take_along_axis(values, index, axis=-1)
    seen = np.maximum.accumulate(mask, axis=-1)
    return np.where(seen, filled, np.nan)


def _ewma(log_x: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Causal EWMA of the bandwidth, started at the first value; a gap keeps the level.

    This is the reference; serving runs the compiled twin in :mod:`models.compiled`.
    Not :func:`models.baseline.window_ewma`: this one works in log space, starts at the
    first step (padding included), floors at ``EPS_MBPS`` and returns every step.
    """
    x = np.exp(log_x)
    out = np.empty_like(x)
    level = x[:, 0].copy()
    for s in range(x.shape[1]):
        level = np.where(present[:, s], EWMA_ALPHA * x[:, s] + (1 - EWMA_ALPHA) * level, level)
        level = np.where(np.isfinite(level), level, x[:, s])
        out[:, s] = level
    return np.log(np.maximum(out, EPS_MBPS))


def _hm5(log_x: np.ndarray) -> np.ndarray:
    inv = np.exp(-log_x)
    padded = np.concatenate([np.repeat(inv[:, :1], 4, axis=1), inv], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 5, axis=1)
    return np.log(5.0 / windows.sum(axis=-1))


def encode_windows(windows: np.ndarray, stats: FeatureStats) -> tuple[np.ndarray, np.ndarray]:
    """Encode raw windows ``(B, T, 5)`` (NaN = absent) into ``(B, T, len(CHANNELS))``.

    Returns the float32 inputs and the log of each window's last bandwidth value (NaN
    where the window holds no bandwidth at all: nothing can be predicted there).

    Examples:
        >>> w = np.full((1, 3, 5), np.nan)
        >>> w[0, :, 4] = [10.0, 20.0, 40.0]          # throughput only
        >>> x, last = encode_windows(w, FeatureStats())
        >>> x.shape, round(float(np.exp(last[0])), 1)
        ((1, 3, 14), 40.0)
        >>> [round(float(v), 3) for v in x[0, :, 0]]  # log(x_s / last)
        [-1.386, -0.693, 0.0]
    """
    batch, steps, _ = windows.shape
    target = bandwidth_target(windows)
    present = np.isfinite(target)
    log_t = np.log(np.maximum(_ffill(target), EPS_MBPS))
    last = log_t[:, -1]
    seen = np.isfinite(log_t)
    # Before the first bandwidth value a step has nothing to be relative to: treat as padding.
    log_t = np.where(seen, log_t, last[:, None])
    out = np.zeros((batch, steps, len(CHANNELS)), dtype=np.float32)
    rel = log_t - last[:, None]
    out[..., 0] = np.where(present, rel, 0.0)
    out[..., 1] = present
    both = np.isfinite(windows[..., 0]) & np.isfinite(windows[..., 4])
    thr = np.log(np.maximum(np.where(both, windows[..., 4], 1.0), EPS_MBPS)) - last[:, None]
    out[..., 2] = np.where(both, thr, 0.0)
    out[..., 3] = both
    for column, channel, mean, std in (
        (1, 4, stats.lat_mean, stats.lat_std),
        (2, 6, stats.loss_mean, stats.loss_std),
        (3, 8, stats.jit_mean, stats.jit_std),
    ):
        values = windows[..., column]
        ok = np.isfinite(values)
        out[..., channel] = np.where(ok, (np.log1p(np.where(ok, values, 0.0)) - mean) / std, 0.0)
        out[..., channel + 1] = ok
    out[..., 10] = np.where(seen, _ewma(log_t, present) - last[:, None], 0.0)
    out[..., 11] = np.where(seen, _hm5(log_t) - last[:, None], 0.0)
    out[..., 12] = np.where(seen, (log_t - stats.level_mean) / stats.level_std, 0.0)
    out[..., 13] = seen
    np.clip(out, -CLIP * 4, CLIP * 4, out=out)
    return np.nan_to_num(out, copy=False), last


def last_bandwidth(windows: np.ndarray) -> np.ndarray:
    """Each raw window's last bandwidth value, NaN where it holds none.

    Examples:
        >>> w = np.full((2, 3, 5), np.nan)
        >>> w[0, :2, 4] = [10.0, 20.0]
        >>> last_bandwidth(w).tolist()[0], bool(np.isnan(last_bandwidth(w)[1]))
        (20.0, True)
    """
    target = bandwidth_target(windows)
    finite = np.isfinite(target)
    last_index = target.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    last = target[np.arange(target.shape[0]), last_index]
    return np.where(finite.any(axis=1), last, np.nan)


def seen_features(windows: np.ndarray) -> np.ndarray:
    """Which of the five measures each window held at least once, ``(B, 5)`` bool."""
    return np.asarray(np.any(np.isfinite(windows), axis=1))


def series_windows(
    series: np.ndarray, window: int, horizon: int = 1, start: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training windows from one series ``(n, 5)``: every target ``t >= start``.

    Returns raw windows ``(N, window, 5)`` ending at ``t - horizon`` (left-padded with
    NaN), the target bandwidth at ``t`` and the target's index ``t``.

    Examples:
        >>> s = np.arange(1.0, 9.0)[:, None] * np.ones((1, 5))
        >>> w, y, t = series_windows(s, window=3, start=2)
        >>> w.shape, y.tolist()[:2], bool(np.isnan(w[0, 0, 0]))
        ((6, 3, 5), [3.0, 4.0], True)
    """
    n = series.shape[0]
    target = bandwidth_target(series[None])[0]
    idx = np.arange(max(start, horizon), n)
    padded = np.concatenate([np.full((window - 1, series.shape[1]), np.nan), series], axis=0)
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (n, 5, window)
    raw = np.transpose(views[idx - horizon], (0, 2, 1)).copy()
    return raw, target[idx], idx
