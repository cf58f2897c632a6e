"""Records that flow through the core: decoded samples, window entries, outputs.

Every output record type has a ``topic`` role (a field of :class:`streams.topics.Topics`),
a ``key`` and one ``to_record(produced_at)`` giving the dict its schema describes; the
pipeline encodes it (:func:`streams.codec.encode_output`), so the worker and replay
write the same bytes. :data:`OUTPUT_RECORD_TYPES` lists them for the contract tests.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

MEASURES: tuple[str, ...] = (
    "bandwidth_mbps",
    "latency_ms",
    "packet_loss_pct",
    "jitter_ms",
    "throughput_mbps",
)
"""The five link measures, in the column order used by every window array."""

MODES: tuple[str, ...] = ("datacenter", "internet")
"""Link modes; each has its own bandwidth model."""

DLQ_ORIGINAL_MAX_BYTES = 64 * 1024
"""Original bytes a dead-letter record carries at most (base64 makes them 4/3 larger)."""
DLQ_REASON_MAX_CHARS = 2_000
"""Longest reason a dead-letter record carries (a reason may quote the input)."""


class OutputRecord(Protocol):
    """What every record the system emits provides."""

    topic: ClassVar[str]

    @property
    def key(self) -> str: ...

    def to_record(self, produced_at: float) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a message came from: a Kafka position, or a file row in replay."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    file: str | None = None
    row: int | None = None

    @property
    def position(self) -> tuple[int, int] | None:
        """``(partition, offset)`` of a Kafka message, ``(-1, row)`` of a file row.

        Examples:
            >>> SourceRef("t", 2, 41).position, SourceRef("t", file="f", row=7).position
            ((2, 41), (-1, 7))
        """
        if self.partition is not None and self.offset is not None:
            return (self.partition, self.offset)
        if self.row is not None:
            return (-1, self.row)
        return None

    def event_id(self, index: int | None = None) -> str:
        """A deterministic event id for a message (and a sample index in a batch).

        Examples:
            >>> SourceRef("telemetry.link.v1", 2, 41).event_id()
            'telemetry.link.v1:2:41'
            >>> SourceRef("telemetry.link.v1", 2, 41).event_id(3)
            'telemetry.link.v1:2:41:3'
            >>> SourceRef("telemetry.link.v1", file="trace 1.csv", row=7).event_id()
            'trace_1.csv:7'
        """
        if self.file is not None:
            base = f"{_safe(self.file)}:{self.row}"
        else:
            base = f"{self.topic}:{self.partition}:{self.offset}"
        return base if index is None else f"{base}:{index}"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


@dataclass(frozen=True, slots=True)
class LinkSample:
    """One validated link measurement; absent measures are ``None``."""

    event_id: str
    link_id: str
    ts: float
    mode: str
    bandwidth_mbps: float | None = None
    latency_ms: float | None = None
    packet_loss_pct: float | None = None
    jitter_ms: float | None = None
    throughput_mbps: float | None = None

    @property
    def key(self) -> str:
        return self.link_id

    def entry(self, position: tuple[int, int] | None = None) -> WindowEntry:
        """The sample as its link's window keeps it."""
        return WindowEntry(self.event_id, self.ts, self.values(), position=position)

    def values(self) -> tuple[float, ...]:
        """The five measures in ``MEASURES`` order, NaN where absent."""
        return tuple(
            math.nan if v is None else float(v)
            for v in (
                self.bandwidth_mbps,
                self.latency_ms,
                self.packet_loss_pct,
                self.jitter_ms,
                self.throughput_mbps,
            )
        )


@dataclass(frozen=True, slots=True)
class HostSample:
    """One validated host measurement: an open map of metric name to value."""

    event_id: str
    host_id: str
    ts: float
    metrics: dict[str, float]
    cluster: str | None = None

    @property
    def key(self) -> str:
        return self.host_id

    def entry(self, position: tuple[int, int] | None = None) -> WindowEntry:
        """The sample as its host's window keeps it: values with their metric names.

        Examples:
            >>> HostSample("e1", "h1", 1.7e9, {"cpu_pct": 50.0}).entry().names
            ('cpu_pct',)
        """
        return WindowEntry(
            self.event_id,
            self.ts,
            tuple(self.metrics.values()),
            names=tuple(self.metrics),
            position=position,
        )


@dataclass(frozen=True, slots=True)
class WindowEntry:
    """One sample as kept in a rolling window: id, event time and its values.

    Link entries hold the five measures in ``MEASURES`` order (NaN = absent) and, once
    the model has run on the window ending at this sample, its unadapted prediction in
    ``predicted`` (the online gain learns from these; see :mod:`online.gain`). Host
    entries hold their metrics with the metric names in ``names``. ``position`` is
    where the message it came in sits, ``(partition, offset)`` (``(-1, row)`` for a
    file): a key's messages come in partition order, so a message at or before the
    window's newest position is a redelivery, whatever the window still holds.
    """

    event_id: str
    ts: float
    values: tuple[float, ...]
    names: tuple[str, ...] | None = None
    predicted: float | None = None
    position: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message (or one sample of a batch) that was refused, with the reason."""

    topic: ClassVar[str] = "dlq"

    error_kind: str
    reason: str
    source: SourceRef
    original: bytes
    sample_index: int | None = None

    @property
    def key(self) -> str:
        return self.source.key or ""

    def to_record(self, produced_at: float) -> dict[str, Any]:
        """The ``telemetry.dlq.v1`` record, with the original bytes (their head if large).

        The record always fits the broker's message limit: an original over
        :data:`DLQ_ORIGINAL_MAX_BYTES` is cut there (``original_truncated``), and its size,
        sha256 and source position say where to fetch the whole. The text copy is left
        out then, and a reason is cut at :data:`DLQ_REASON_MAX_CHARS`.

        Examples:
            >>> big = DeadLetter("invalid_value", "too big", SourceRef("t", 0, 9), b"x" * 70_000)
            >>> r = big.to_record(1.8e9)
            >>> r["original_truncated"], r["original_size_bytes"], len(r["original_bytes_b64"])
            (True, 70000, 87384)
        """
        original = self.original
        truncated = len(original) > DLQ_ORIGINAL_MAX_BYTES
        if truncated:
            original = original[:DLQ_ORIGINAL_MAX_BYTES]
            text: str | None = None
        else:
            try:
                text = original.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        reason = self.reason
        if len(reason) > DLQ_REASON_MAX_CHARS:
            reason = reason[: DLQ_REASON_MAX_CHARS - 1] + "…"
        src = self.source
        return {
            "schema_version": 1,
            "error_kind": self.error_kind,
            "reason": reason,
            "source": {
                "topic": src.topic,
                "partition": src.partition,
                "offset": src.offset,
                "key": src.key,
                "file": src.file,
                "row": src.row,
            },
            "sample_index": self.sample_index,
            "original_bytes_b64": base64.b64encode(original).decode("ascii"),
            "original_text": text,
            "original_size_bytes": len(self.original),
            "original_sha256": hashlib.sha256(self.original).hexdigest(),
            "original_truncated": truncated,
            "produced_at": produced_at,
        }


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Name and version of the model that produced an output."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class BandwidthPrediction:
    """A prediction of a link's bandwidth ``horizon_steps`` samples ahead."""

    topic: ClassVar[str] = "predictions"

    link_id: str
    mode: str
    event_id: str
    ts: float
    target_ts: float
    horizon_steps: int
    predicted_bandwidth_mbps: float
    lower_mbps: float
    upper_mbps: float
    interval_level: float
    confidence: float
    model: ModelRef
    window_from_ts: float
    window_samples: int
    features_seen: tuple[str, ...] = field(default_factory=tuple)
    online_gain: float | None = None
    """The per-link gain on the model's correction (``None``: published as the model made it)."""
    serving: dict[str, Any] | None = None
    """Champion/challenger: which model was champion, both models' points and their recent
    accuracy (``None``: no online path)."""

    @property
    def key(self) -> str:
        return self.link_id

    @property
    def prediction_id(self) -> str:
        """Deterministic id, the same for a redelivered event and the same model."""
        return f"{self.model.name}:{self.model.version}:{self.event_id}"

    def to_record(self, produced_at: float) -> dict[str, Any]:
        """The ``predictions.bandwidth.v1`` record."""
        return (
            {
                "schema_version": 1,
                "prediction_id": self.prediction_id,
                "link_id": self.link_id,
                "mode": self.mode,
                "ts": self.ts,
                "target_ts": self.target_ts,
                "horizon_steps": self.horizon_steps,
                "predicted_bandwidth_mbps": self.predicted_bandwidth_mbps,
                "lower_mbps": self.lower_mbps,
                "upper_mbps": self.upper_mbps,
                "interval_level": self.interval_level,
                "confidence": self.confidence,
                "model": {"name": self.model.name, "version": self.model.version},
                "source_event_ids": [self.event_id],
                "input_window": {
                    "from_ts": self.window_from_ts,
                    "to_ts": self.ts,
                    "samples": self.window_samples,
                },
                "features_seen": list(self.features_seen),
                "produced_at": produced_at,
            }
            | ({} if self.online_gain is None else {"online_gain": self.online_gain})
            | ({} if self.serving is None else {"serving": self.serving})
        )


@dataclass(slots=True)
class Score:
    """One ``scores.v1`` line: what the processors made of one input event.

    Replay writes one per accepted event (evaluation reads them); the worker sends none.
    Processors add their figures to ``fields`` (``None`` where they made none).
    """

    topic: ClassVar[str] = "scores"

    event_id: str
    key: str
    ts: float
    source_topic: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_record(self, produced_at: float) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "key": self.key,
            "ts": self.ts,
            "topic": self.source_topic,
            **self.fields,
        }


@dataclass(frozen=True, slots=True)
class ModelEvent:
    """A ``model.events.v1`` record: a model was loaded, activated, rolled back, ...

    Examples:
        >>> e = ModelEvent("loaded", ModelRef("m", "2"), 1.8e9, previous_version="1")
        >>> e.key, e.to_record(1.8e9)["previous_version"]
        ('m', '1')
    """

    topic: ClassVar[str] = "model_events"

    event: str
    model: ModelRef
    ts: float
    previous_version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.model.name

    def to_record(self, produced_at: float) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "event": self.event,
            "model": {"name": self.model.name, "version": self.model.version},
            "previous_version": self.previous_version,
            "ts": self.ts,
            "detail": self.detail,
            "produced_at": produced_at,
        }


@dataclass(frozen=True, slots=True)
class MetricView:
    """One metric of a scored sample: its value against what the key's history expects.

    Attributes:
        name: metric name (``cpu_pct``, ``latency_ms``, ...).
        value: the sample's value.
        expected: the value the key's recent history expects (its forecast).
        low: low end of the recent normal range.
        high: high end of the recent normal range.
        contribution: share of the sample's anomaly score this metric drives (the
            contributions of a sample sum to 1).
    """

    name: str
    value: float
    expected: float
    low: float
    high: float
    contribution: float


@dataclass(frozen=True, slots=True)
class AnomalyAlert:
    """An ``alerts.anomaly.v1`` record: an alert opened, updated or resolved.

    One alert per key and anomaly type and incident: ``alert_id`` stays the same from
    ``open`` through its ``update`` records (``seq`` counts them) to ``resolve``.
    """

    topic: ClassVar[str] = "alerts"

    alert_id: str
    status: str
    seq: int
    entity_kind: str
    entity_id: str
    event_id: str
    ts: float
    opened_ts: float
    anomaly_score: float
    confidence: float
    severity: str
    anomaly_type: str
    model: ModelRef
    source_event_ids: tuple[str, ...]
    summary: str
    threshold: float
    metrics: tuple[MetricView, ...]
    detectors: dict[str, float]
    fitted: bool
    history: int
    peak_score: float
    previous_severity: str | None = None
    resolution: str | None = None

    @property
    def key(self) -> str:
        return self.entity_id

    def to_record(self, produced_at: float) -> dict[str, Any]:
        """The ``alerts.anomaly.v1`` record."""
        metrics = [
            {
                "name": m.name,
                "value": m.value,
                "expected": m.expected,
                "low": m.low,
                "high": m.high,
                "contribution": m.contribution,
            }
            for m in self.metrics
        ]
        return {
            "schema_version": 1,
            "alert_id": self.alert_id,
            "status": self.status,
            "seq": self.seq,
            "entity_kind": self.entity_kind,
            "entity_id": self.entity_id,
            "ts": self.ts,
            "opened_ts": self.opened_ts,
            "anomaly_score": self.anomaly_score,
            "confidence": self.confidence,
            "severity": self.severity,
            "previous_severity": self.previous_severity,
            "anomaly_type": self.anomaly_type,
            "resolution": self.resolution,
            "model": {"name": self.model.name, "version": self.model.version},
            "source_event_ids": list(self.source_event_ids),
            "time_range": {"from_ts": self.opened_ts, "to_ts": self.ts},
            "reason": {
                "summary": self.summary,
                "threshold": self.threshold,
                "fitted_detectors": self.fitted,
                "history_samples": self.history,
                "peak_score": self.peak_score,
                "top_features": [
                    {"name": m.name, "value": m.value, "contribution": m.contribution}
                    for m in sorted(self.metrics, key=lambda m: -m.contribution)[:3]
                ],
                "detectors": dict(self.detectors),
            },
            "metrics": metrics,
            "produced_at": produced_at,
        }


@dataclass(frozen=True, slots=True)
class WorkloadClassRecord:
    """A ``workload.class.v1`` record: a host's workload class, published when it changes
    or every so many samples, with the features it was decided on."""

    topic: ClassVar[str] = "workload"

    host_id: str
    event_id: str
    ts: float
    workload_type: str
    pattern_type: str
    confidence: float
    probabilities: dict[str, float]
    features: dict[str, float]
    group: int
    model: ModelRef
    window_from_ts: float
    window_samples: int
    previous_type: str | None
    trigger: str
    """Why it was published: ``first``, ``changed`` or ``periodic``."""

    @property
    def key(self) -> str:
        return self.host_id

    def to_record(self, produced_at: float) -> dict[str, Any]:
        """The ``workload.class.v1`` record."""
        return {
            "schema_version": 1,
            "class_id": f"{self.model.name}:{self.model.version}:{self.event_id}",
            "host_id": self.host_id,
            "ts": self.ts,
            "workload_type": self.workload_type,
            "pattern_type": self.pattern_type,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities),
            "features": dict(self.features),
            "group": self.group,
            "previous_type": self.previous_type,
            "trigger": self.trigger,
            "model": {"name": self.model.name, "version": self.model.version},
            "source_event_ids": [self.event_id],
            "input_window": {
                "from_ts": self.window_from_ts,
                "to_ts": self.ts,
                "samples": self.window_samples,
            },
            "produced_at": produced_at,
        }


@dataclass(frozen=True, slots=True)
class ForecastView:
    """The forecast a scaling action was decided on, in the demand's units."""

    horizons_s: tuple[float, ...]
    point: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    interval_level: float


@dataclass(frozen=True, slots=True)
class ScalingAction:
    """An ``actions.scaling.v1`` record: one action for the autoscaler, with its reasons.

    ``action_id`` is deterministic (the target, the event acted on and the action), so a
    redelivered decision has the same id and the autoscaler can drop it.
    """

    topic: ClassVar[str] = "scaling"

    target: str
    event_id: str
    ts: float
    action: str
    resource: str
    policy: str
    current_value: float
    target_value: float
    score: float
    urgency: float
    confidence: float
    model: ModelRef
    models: tuple[ModelRef, ...]
    summary: str
    rule: str
    metric: str
    demand: float
    threshold: float
    seconds_to_breach: float | None
    lead_time_s: float
    cost_impact: float
    performance_impact: float
    forecast: ForecastView | None
    workload_type: str | None
    window_from_ts: float
    window_samples: int
    forecast_source: str | None = None
    """Whose level the forecast acted on has: ``forecaster`` or ``online`` (the online
    demand learner's level correction while it was champion); ``None`` without the
    online demand path."""

    @property
    def key(self) -> str:
        return self.target

    @property
    def action_id(self) -> str:
        return f"{self.target}:{self.event_id}:{self.action}"

    def to_record(self, produced_at: float) -> dict[str, Any]:
        """The ``actions.scaling.v1`` record."""
        reason: dict[str, Any] = {
            "summary": self.summary,
            "rule": self.rule,
            "metric": self.metric,
            "demand": self.demand,
            "threshold": self.threshold,
            "seconds_to_breach": self.seconds_to_breach,
            "lead_time_s": self.lead_time_s,
            "cost_impact": self.cost_impact,
            "performance_impact": self.performance_impact,
            "urgency": self.urgency,
            "workload_type": self.workload_type,
        }
        if self.forecast is not None:
            f = self.forecast
            reason |= {
                "forecast": list(f.point),
                "forecast_lower": list(f.lower),
                "forecast_upper": list(f.upper),
                "forecast_horizons_s": list(f.horizons_s),
                "interval_level": f.interval_level,
            }
            if self.forecast_source is not None:
                reason["forecast_source"] = self.forecast_source
        return {
            "schema_version": 1,
            "action_id": self.action_id,
            "target": self.target,
            "ts": self.ts,
            "action": self.action,
            "resource": self.resource,
            "policy": self.policy,
            "current_value": self.current_value,
            "target_value": self.target_value,
            "score": self.score,
            "confidence": self.confidence,
            "model": {"name": self.model.name, "version": self.model.version},
            "models": [{"name": m.name, "version": m.version} for m in self.models],
            "source_event_ids": [self.event_id],
            "input_window": {
                "from_ts": self.window_from_ts,
                "to_ts": self.ts,
                "samples": self.window_samples,
            },
            "reason": reason,
            "produced_at": produced_at,
        }
