"""The serving interface every bandwidth model implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class IntervalForecast:
    """Point forecasts with an interval, one row per window of the batch.

    ``confidence`` is in [0, 1]; ``interval_level`` is the nominal coverage of
    ``[lower, upper]``.
    """

    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: np.ndarray
    interval_level: float


@runtime_checkable
class BandwidthPredictor(Protocol):
    """Predicts a link's bandwidth from windows of the five link measures.

    ``predict`` takes a float64 array of shape ``(batch, window_steps, 5)``, columns in
    ``streams.records.MEASURES`` order, NaN where a measure was not sent, oldest sample
    first (a link with fewer samples than ``window_steps`` but at least ``min_history``
    is left-padded with NaN rows), and returns one forecast per window. A NaN point
    means the window held no usable bandwidth history; the caller publishes nothing.
    """

    name: str
    version: str
    mode: str
    window_steps: int
    min_history: int
    horizon_steps: int

    def predict(self, windows: np.ndarray) -> IntervalForecast: ...


def bandwidth_target(windows: np.ndarray) -> np.ndarray:
    """The series a link's prediction is about: bandwidth, else measured throughput.

    Many probes send throughput only; where ``bandwidth_mbps`` is absent the sample's
    ``throughput_mbps`` stands in.

    Examples:
        >>> w = np.array([[[100.0, 1, 0, 1, 90.0], [np.nan, 1, 0, 1, 80.0]]])
        >>> bandwidth_target(w)
        array([[100.,  80.]])
    """
    bandwidth = windows[..., 0]
    return np.where(np.isnan(bandwidth), windows[..., 4], bandwidth)


class OnlineAdjuster(Protocol):
    """Adapts a model's points per key from the key's recent (prediction, actual) pairs.

    ``online.gain.OnlineGain`` implements it; the bandwidth processor calls it when the
    pipeline is built with one.
    """

    def gains_for(
        self, series: np.ndarray, predicted: np.ndarray, horizon: int = 1
    ) -> np.ndarray: ...

    def adapt(self, point: np.ndarray, last: np.ndarray, gain: np.ndarray) -> np.ndarray: ...
