"""The serving interface every bandwidth model implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .records import ModelEvent, ModelRef


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


@dataclass(frozen=True, slots=True)
class Scored:
    """One earlier prediction checked against the actual it was about.

    Attributes:
        role: ``batch`` (the batch model's point), ``online`` (the online learner's) or
            ``served`` (what was published).
        model: the model that made it.
        abs_error: ``|actual - predicted|`` (Mbps).
        within_20: whether the prediction was within 20% of the actual.
        in_interval: whether the actual fell in the published interval (``None`` where
            no interval was published for this role).
    """

    role: str
    model: ModelRef
    abs_error: float
    within_20: bool
    in_interval: bool | None = None


@dataclass(slots=True)
class OnlineStep:
    """What a link's online path made of one sample.

    Attributes:
        point, lower, upper: the prediction to publish for the next step (``None``: the
            batch model's, as it made it).
        served: the model whose prediction is published.
        champion: ``batch`` or ``online``.
        online_point: the online learner's own prediction (``None`` while it cannot make
            one).
        serving: what the prediction record says about the choice (JSON values).
        events: ``model.events.v1`` records (drift, accuracy summaries, champion changes,
            retrain requests), in the order they happened.
        scored: the link's earlier predictions checked against this sample's actual.
    """

    point: float | None
    lower: float | None
    upper: float | None
    served: ModelRef
    champion: str
    online_point: float | None = None
    serving: dict[str, Any] = field(default_factory=dict)
    events: list[ModelEvent] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)


class OnlineLinkPath(Protocol):
    """Per-link online learning, drift detection and champion/challenger selection.

    ``online.link.LinkOnline`` implements it. The bandwidth processor keeps one state
    per link (opaque to it), loads it from its stored bytes (:meth:`load`), calls
    :meth:`step` once per new sample in event order (warm-up samples included, with no
    batch point), and stores :meth:`dump` with the link's window once the batch is
    delivered.
    """

    name: str
    version: str
    lookback: int
    """Window entries up to a sample that :meth:`step` needs as ``recent``."""

    def key_group(self, link_id: str) -> str:
        """The link's key group: the label its accuracy is reported under."""
        ...

    def new(self) -> Any: ...

    def load(self, blob: bytes) -> Any: ...

    def dump(self, state: Any) -> bytes: ...

    def step(
        self,
        state: Any,
        *,
        link_id: str,
        mode: str,
        event_id: str,
        ts: float,
        recent: np.ndarray,
        batch_point: float | None,
        batch_lower: float | None,
        batch_upper: float | None,
        batch_model: ModelRef | None,
    ) -> OnlineStep:
        """Advance ``state`` (in place) by one sample: ``recent`` is the link's
        bandwidth series up to and including it (oldest first; the last is the actual),
        the batch point what the batch model predicts for the next step."""
        ...
