"""The interfaces the workload and scaling processors call, and what they exchange.

Three models stand behind host capacity, each a plain-Python implementation in
``models/`` reached only through these protocols (the stream core runs no model code):

- a :class:`WorkloadClassifier` names each host's workload type and pattern type from a
  long history of its metrics;
- a :class:`Forecaster` forecasts a host's demand at several horizons, with an interval;
- a :class:`ScalingController` turns demand, forecast and the capacity asked for so far
  into scaling decisions, under safety rules, one key at a time (its state per key is
  bytes the processor persists with the key's window).

Beside the forecaster, an :class:`OnlineDemandPath` (``online.demand.DemandOnline``)
may learn each host's demand online, watch the forecaster's residuals for drift and
correct the level of the forecast the controller acts on while the forecaster is
degraded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .predictor import Scored
from .records import ModelEvent, ModelRef

HOST_METRICS = (
    "cpu_pct",
    "mem_pct",
    "disk_io_mbps",
    "net_in_mbps",
    "net_out_mbps",
    "requests_per_s",
)
"""Columns of a host history, in this order (``telemetry.host.v1``'s named metrics)."""

WORKLOAD_TYPES = (
    "CPU_INTENSIVE",
    "MEMORY_INTENSIVE",
    "IO_INTENSIVE",
    "NETWORK_INTENSIVE",
    "BATCH_PROCESSING",
    "REAL_TIME",
    "INTERACTIVE",
    "BACKGROUND",
    "PERIODIC",
    "BURSTY",
    "STEADY_STATE",
    "UNKNOWN",
)
"""``workload.class.v1``'s ``workload_type`` values."""

PATTERN_TYPES = (
    "SEASONAL",
    "TRENDING",
    "CYCLIC",
    "IRREGULAR",
    "SPIKE",
    "VALLEY",
    "PLATEAU",
    "EXPONENTIAL_GROWTH",
    "EXPONENTIAL_DECAY",
    "BURSTY",
    "STEADY_STATE",
)
"""``workload.class.v1``'s ``pattern_type`` values."""

SCALING_ACTIONS = (
    "SCALE_UP",
    "SCALE_DOWN",
    "SCALE_OUT",
    "SCALE_IN",
    "MIGRATE",
    "CONSOLIDATE",
    "NO_ACTION",
)
SCALING_RESOURCES = ("cpu_pct", "mem_pct", "storage_gb", "network_mbps", "vm_count")
SCALING_POLICIES = (
    "REACTIVE",
    "PREDICTIVE",
    "PROACTIVE",
    "COST_OPTIMIZED",
    "PERFORMANCE_OPTIMIZED",
    "HYBRID",
)


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    """What the classifier made of one host's history.

    Attributes:
        workload_type: one of :data:`WORKLOAD_TYPES` (``UNKNOWN`` when no type is
            probable enough).
        pattern_type: one of :data:`PATTERN_TYPES`, from the features' rules.
        confidence: the probability of ``workload_type``, in [0, 1].
        probabilities: every type's probability.
        features: the named features the class was decided on (finite floats).
        cluster: the KMeans group of the host's features (discovery, not a label).
    """

    workload_type: str
    pattern_type: str
    confidence: float
    probabilities: Mapping[str, float]
    features: Mapping[str, float]
    cluster: int


class WorkloadClassifier(Protocol):
    """Classifies hosts from their histories (a served, versioned model)."""

    name: str
    version: str
    min_samples: int
    """Samples of history below which a host is not classified."""

    def classify_many(
        self, histories: Sequence[np.ndarray], step_s: Sequence[float]
    ) -> list[WorkloadClass]:
        """One class per history: a float array ``(n, len(HOST_METRICS))``, oldest row
        first, NaN where the host did not report a metric (or a sample is missing),
        sampled every ``step_s`` seconds."""
        ...


@dataclass(frozen=True, slots=True)
class DemandForecast:
    """A multi-horizon forecast of one series, in its own units.

    Attributes:
        horizons: steps ahead, ascending.
        point: the forecast per horizon.
        lower, upper: the interval per horizon, of nominal coverage ``interval_level``.
        interval_level: e.g. 0.8.
        confidence: in [0, 1], higher when the members agree and the interval is narrow.
        weights: the weight of each ensemble member in ``point``.
    """

    horizons: tuple[int, ...]
    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    interval_level: float
    confidence: float
    weights: Mapping[str, float] = field(default_factory=dict)


class Forecaster(Protocol):
    """Forecasts series from their last ``lookback`` values (a served, versioned model)."""

    name: str
    version: str
    lookback: int
    horizons: tuple[int, ...]

    def forecast_many(
        self,
        histories: np.ndarray,
        last_ts: np.ndarray,
        step_s: np.ndarray,
        workload_types: Sequence[str | None],
    ) -> list[DemandForecast]:
        """``histories``: ``(k, lookback)`` finite floats, oldest first; ``last_ts``:
        the event time of each history's last value; ``step_s``: seconds between values;
        ``workload_types``: each series' workload class, if known (it may select or
        weight the members)."""
        ...


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    """One scaling action and everything that justifies it.

    Attributes:
        action: one of :data:`SCALING_ACTIONS`.
        resource: one of :data:`SCALING_RESOURCES`.
        policy: one of :data:`SCALING_POLICIES`.
        current: capacity before the action (instances for ``vm_count``).
        target: capacity asked for.
        score: urgency x 0.4 + cost_perf_ratio x 0.6.
        urgency: in [0, 1], from the time to breach, utilisation and confidence.
        confidence: the forecast's confidence, in [0, 1].
        threshold: the demand at which the current capacity breaches its target.
        seconds_to_breach: forecast time until demand crosses ``threshold`` (``None``:
            no breach within the horizons).
        demand: the demand acted on (the actual one).
        forecast: the forecast the decision used (``None``: reactive only).
        cost_impact: expected cost change per hour, in dollars (cost model).
        performance_impact: expected SLA effect, in [0, 1]: share of the demand at risk
            the action removes (scale out) or adds (scale in).
        summary: one line for a person.
        rule: the safety rule or trigger that decided the action.
    """

    action: str
    resource: str
    policy: str
    current: float
    target: float
    score: float
    urgency: float
    confidence: float
    threshold: float
    seconds_to_breach: float | None
    demand: float
    forecast: DemandForecast | None
    cost_impact: float
    performance_impact: float
    summary: str
    rule: str


class ScalingController(Protocol):
    """Decides scaling for one target at a time; its per-target state is bytes."""

    name: str
    version: str
    policy: str
    resource: str
    ready_delay_s: float
    """Seconds new capacity takes to be ready (the lead time actions must allow)."""

    def new_state(self, first_demand: float) -> bytes:
        """The state of a target seen for the first time."""
        ...

    def step(
        self,
        state: bytes,
        ts: float,
        demand: float,
        forecast: DemandForecast | None,
        step_s: float,
    ) -> tuple[bytes, ScalingDecision | None]:
        """The state after one sample of the target's demand at event time ``ts``, and
        the action it calls for (``None``: hold). Pure: the same state and inputs give
        the same outputs (replay equals the worker)."""
        ...


def host_matrix(samples: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Rows of :data:`HOST_METRICS` from metric maps, NaN where a metric is absent.

    Examples:
        >>> host_matrix([{"cpu_pct": 50.0}]).tolist()[0][:2]
        [50.0, nan]
    """
    out = np.full((len(samples), len(HOST_METRICS)), np.nan)
    for i, metrics in enumerate(samples):
        for j, name in enumerate(HOST_METRICS):
            value = metrics.get(name)
            if value is not None:
                out[i, j] = value
    return out


@dataclass(slots=True)
class DemandStep:
    """What a host's online demand path made of one sample.

    Attributes:
        forecast: the forecast the controller acts on (the forecaster's own while it is
            champion; ``None`` where the forecaster made none).
        source: ``forecaster`` or ``online``: whose level ``forecast`` has.
        champion: ``forecaster`` or ``online``.
        online_point: the online learner's own one-step forecast (``None`` while it
            cannot make one).
        events: ``model.events.v1`` records (drift, accuracy summaries, champion
            changes), in the order they happened.
        scored: the host's earlier one-step forecasts checked against this sample's
            actual demand.
    """

    forecast: DemandForecast | None
    source: str
    champion: str
    online_point: float | None = None
    events: list[ModelEvent] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)


class OnlineDemandPath(Protocol):
    """Per-host online learning, drift detection and champion/challenger for demand.

    ``online.demand.DemandOnline`` implements it. The scaling processor keeps one state
    per host (opaque to it) with the controller's, loads it from its stored bytes
    (:meth:`load`), calls :meth:`step` once per new sample in event order, before the
    controller's step, and stores :meth:`dump` with the host's window once the batch is
    delivered.
    """

    name: str
    version: str
    lookback: int
    """Recent demands up to a sample that :meth:`step` reads from ``recent``."""

    def key_group(self, host_id: str) -> str:
        """The host's key group: the label its accuracy is reported under."""
        ...

    def new(self) -> Any: ...

    def load(self, blob: bytes) -> Any: ...

    def dump(self, state: Any) -> bytes: ...

    def step(
        self,
        state: Any,
        *,
        host_id: str,
        event_id: str,
        ts: float,
        recent: np.ndarray,
        forecast: DemandForecast | None,
        forecaster: ModelRef | None,
    ) -> DemandStep:
        """Advance ``state`` (in place) by one sample: ``recent`` is the host's demand
        up to and including it (oldest first; the last is the actual), ``forecast`` the
        forecaster's forecast made at this sample (``None``: none, e.g. too little
        history) and ``forecaster`` the model that made it."""
        ...
