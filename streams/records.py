"""Records that flow through the core: decoded samples, window entries, outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MEASURES: tuple[str, ...] = (
    "bandwidth_mbps",
    "latency_ms",
    "packet_loss_pct",
    "jitter_ms",
    "throughput_mbps",
)
"""The five link measures, in the column order used by every window array."""

MODES: tuple[str, ...] = ("datacenter", "internet")


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a message came from: a Kafka position, or a file row in replay."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    file: str | None = None
    row: int | None = None

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


@dataclass(frozen=True, slots=True)
class WindowEntry:
    """One sample as kept in a rolling window: id, event time and its values.

    Link entries hold the five measures in ``MEASURES`` order (NaN = absent) and, once
    the model has run on the window ending at this sample, its unadapted prediction in
    ``predicted`` (the online gain learns from these; see :mod:`online.gain`). Host
    entries hold their metrics with the metric names in ``names``.
    """

    event_id: str
    ts: float
    values: tuple[float, ...]
    names: tuple[str, ...] | None = None
    predicted: float | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message (or one sample of a batch) that was refused, with the reason."""

    error_kind: str
    reason: str
    source: SourceRef
    original: bytes
    sample_index: int | None = None


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Name and version of the model that produced an output."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class BandwidthPrediction:
    """A prediction of a link's bandwidth ``horizon_steps`` samples ahead."""

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

    @property
    def prediction_id(self) -> str:
        """Deterministic id, the same for a redelivered event and the same model."""
        return f"{self.model.name}:{self.model.version}:{self.event_id}"

    def to_record(self, produced_at: float) -> dict[str, Any]:
        """The ``predictions.bandwidth.v1`` record."""
        return {
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
        } | ({} if self.online_gain is None else {"online_gain": self.online_gain})
