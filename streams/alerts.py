"""The alert lifecycle: when a key's anomaly scores open, update and resolve an alert.

On-call engineers want one alert per incident, not one per anomalous sample. Per key
and anomaly type, :class:`AlertTracker` opens an alert once there is enough evidence
(``evidence_k`` of the last ``evidence_n`` samples over the threshold), updates it
(same alert id) when its severity moves or every ``update_every`` samples while it
lasts, and resolves it with an explicit record after ``resolve_after`` quiet samples.
A resolved type stays quiet for ``cooldown`` samples, so a flapping metric holds one
alert open instead of opening a new one each time. An alert that lasts
``new_normal_after`` samples is a level shift, not an incident: it is resolved as the
new normal and the key's model re-baselines. Pure: no clock, no I/O; its state is a
small JSON document kept with the key's window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from .detector import AnomalyScore
from .records import MetricView

SEVERITIES: tuple[tuple[float, str], ...] = (
    (0.8, "critical"),
    (0.6, "high"),
    (0.4, "medium"),
    (0.2, "low"),
)
"""Severity bands of the anomaly score: above the bound, that severity."""

TYPE_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cpu", ("cpu", "load")),
    ("memory", ("mem", "swap", "heap")),
    ("disk", ("disk", "io_", "iops", "fs_")),
    (
        "network",
        (
            "net",
            "bandwidth",
            "throughput",
            "latency",
            "packet",
            "jitter",
            "loss",
            "requests",
            "conn",
            "rtt",
        ),
    ),
)
"""Anomaly type of a metric, by the start of its name; anything else is ``general``."""


def severity(score: float) -> str | None:
    """The severity band of an anomaly score (``None`` at or below 0.2).

    Examples:
        >>> [severity(s) for s in (0.1, 0.3, 0.5, 0.7, 0.9)]
        [None, 'low', 'medium', 'high', 'critical']
    """
    for bound, name in SEVERITIES:
        if score > bound:
            return name
    return None


def metric_type(name: str) -> str:
    """The anomaly type a metric belongs to.

    Examples:
        >>> [metric_type(m) for m in ("cpu_pct", "mem_pct", "disk_io_mbps", "latency_ms", "temp_c")]
        ['cpu', 'memory', 'disk', 'network', 'general']
    """
    for kind, prefixes in TYPE_PREFIXES:
        if name.startswith(prefixes):
            return kind
    return "general"


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """When alerts open, update and resolve (the worker's ``NOVACRON_ALERT_*`` settings).

    Attributes:
        threshold: anomaly score at or above which a sample is evidence.
        evidence_k: evidence samples needed among the last ``evidence_n`` to open.
        evidence_n: samples the evidence is counted over.
        resolve_after: consecutive quiet samples that resolve an open alert.
        cooldown: samples after a resolve during which the same type does not open.
        update_every: an open alert is re-sent (same id) at least this often while it
            lasts, and whenever its severity moves.
        new_normal_after: samples an alert may last before its level is taken as the
            new normal (resolved, model re-baselined); 0 never.
        floors: per metric, the value under which it never drives an alert (for
            example ``{"cpu_pct": 20.0}``: no CPU alert below 20%).
    """

    threshold: float = 0.5
    evidence_k: int = 2
    evidence_n: int = 3
    resolve_after: int = 12
    cooldown: int = 60
    update_every: int = 60
    new_normal_after: int = 288
    floors: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            msg = f"alert threshold must be in (0, 1], got {self.threshold}"
            raise ValueError(msg)
        if not 1 <= self.evidence_k <= self.evidence_n:
            msg = f"alert evidence needs 1 <= k <= n, got k={self.evidence_k} n={self.evidence_n}"
            raise ValueError(msg)
        if self.resolve_after < 1 or self.cooldown < 0 or self.update_every < 1:
            msg = "resolve_after and update_every must be >= 1 and cooldown >= 0"
            raise ValueError(msg)


@dataclass(slots=True)
class OpenAlert:
    """An alert that is open: what its records carry from one to the next."""

    alert_id: str
    opened_ts: float
    first_event_id: str
    severity: str
    seq: int = 0
    samples: int = 0
    since_update: int = 0
    quiet: int = 0
    peak: float = 0.0
    event_ids: list[str] = field(default_factory=list)
    recent: list[float] = field(default_factory=list)
    """Scores of its last :data:`SEVERITY_MEMORY` samples (0 for a quiet one)."""


@dataclass(slots=True)
class TypeState:
    """One anomaly type of a key: recent evidence, the open alert, the cooldown."""

    evidence: list[bool] = field(default_factory=list)
    open: OpenAlert | None = None
    cooldown: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert record to send: ``status`` is ``open``, ``update`` or ``resolve``.

    Attributes:
        resolution: why a ``resolve`` closed it: ``recovered`` or ``new_normal``.
        rebaseline: the key's model should take its recent level as normal.
    """

    status: str
    anomaly_type: str
    alert: OpenAlert
    score: AnomalyScore
    event_id: str
    ts: float
    resolution: str | None = None
    previous_severity: str | None = None
    rebaseline: bool = False


SEVERITY_MEMORY = 6
"""Samples an open alert's severity looks back over: it rises at once, falls only when
all of them are lower (so a flapping metric does not send an update per sample)."""

DOMINANT = 0.5
"""Share of a sample's score one metric must drive to open a second type of alert while
another is open."""

EVENT_IDS_KEPT = 16
"""Evidence event ids an alert carries (its first and the newest)."""


class AlertTracker:
    """The lifecycle of one key's alerts, one sample at a time."""

    def __init__(self, key: str, policy: AlertPolicy) -> None:
        self.key = key
        self.policy = policy
        self.types: dict[str, TypeState] = {}

    def driving_type(self, score: AnomalyScore) -> str | None:
        """The type of the metrics that drive the score, floors applied (``None``: the
        sample is not evidence: under the threshold, or only floored metrics drive it).

        A type weighs as its largest metric's contribution. While an alert is open, the
        evidence stays with it unless another type's metric clearly dominates (over
        :data:`DOMINANT` of the score): an incident moves several metrics, and its end
        (metrics coming back) is part of it, not a new incident.
        """
        if score.score < self.policy.threshold:
            return None
        weights: dict[str, float] = {}
        floored = 0.0
        for m in score.metrics:
            floor = self.policy.floors.get(m.name)
            if floor is not None and m.value < floor:
                floored += m.contribution
                continue
            kind = metric_type(m.name)
            weights[kind] = max(weights.get(kind, 0.0), m.contribution)
        if not weights or max(weights.values()) <= 0.0 or floored >= 0.5:
            return None  # what drives the score is under its floor
        top = max(weights, key=lambda k: weights[k])
        open_types = [k for k, s in self.types.items() if s.open is not None]
        if open_types and top not in open_types and weights[top] < DOMINANT:
            return max(open_types, key=lambda k: weights.get(k, 0.0))
        return top

    def until_new_normal(self) -> int | None:
        """Samples until an open alert is taken as the new normal (``None``: never)."""
        if not self.policy.new_normal_after:
            return None
        left = [
            self.policy.new_normal_after - s.open.samples
            for s in self.types.values()
            if s.open is not None
        ]
        return max(1, min(left)) if left else None

    def step(self, event_id: str, ts: float, score: AnomalyScore) -> list[Transition]:
        """Take one sample's score; the alert records it causes, if any."""
        policy = self.policy
        driving = self.driving_type(score)
        if driving is not None:
            self.types.setdefault(driving, TypeState())
        out: list[Transition] = []
        for kind, state in self.types.items():
            hit = kind == driving
            state.evidence = [*state.evidence, hit][-policy.evidence_n :]
            if state.open is None:
                if state.cooldown > 0:
                    state.cooldown -= 1
                    continue
                if hit and sum(state.evidence) >= policy.evidence_k:
                    out.append(self._open(kind, state, event_id, ts, score))
                continue
            out.extend(self._follow(kind, state, hit, event_id, ts, score))
        self.types = {
            k: s for k, s in self.types.items() if s.open or s.cooldown or any(s.evidence)
        }
        return out

    def _open(
        self, kind: str, state: TypeState, event_id: str, ts: float, score: AnomalyScore
    ) -> Transition:
        level = severity(score.score) or "low"
        state.open = OpenAlert(
            alert_id=f"{self.key}:{kind}:{event_id}",
            opened_ts=ts,
            first_event_id=event_id,
            severity=level,
            samples=1,
            peak=score.score,
            event_ids=[event_id],
            recent=[score.score],
        )
        return Transition("open", kind, state.open, score, event_id, ts)

    def _follow(
        self,
        kind: str,
        state: TypeState,
        hit: bool,
        event_id: str,
        ts: float,
        score: AnomalyScore,
    ) -> list[Transition]:
        policy = self.policy
        alert = state.open
        assert alert is not None
        alert.samples += 1
        alert.since_update += 1
        alert.recent = [*alert.recent, score.score if hit else 0.0][-SEVERITY_MEMORY:]
        if policy.new_normal_after and alert.samples >= policy.new_normal_after:
            return [self._resolve(kind, state, event_id, ts, score, "new_normal")]
        if not hit:
            alert.quiet += 1
            if alert.quiet >= policy.resolve_after:
                return [self._resolve(kind, state, event_id, ts, score, "recovered")]
            return []
        alert.quiet = 0
        alert.peak = max(alert.peak, score.score)
        alert.event_ids = [*alert.event_ids, event_id][-EVENT_IDS_KEPT:]
        if alert.first_event_id not in alert.event_ids:
            alert.event_ids[0] = alert.first_event_id
        # escalate at once, de-escalate only when the last SEVERITY_MEMORY samples agree
        level = severity(max(alert.recent)) or "low"
        if level != alert.severity or alert.since_update >= policy.update_every:
            previous = alert.severity
            alert.severity = level
            alert.seq += 1
            alert.since_update = 0
            return [
                Transition("update", kind, alert, score, event_id, ts, previous_severity=previous)
            ]
        return []

    def _resolve(
        self,
        kind: str,
        state: TypeState,
        event_id: str,
        ts: float,
        score: AnomalyScore,
        resolution: str,
    ) -> Transition:
        alert = state.open
        assert alert is not None
        alert.seq += 1
        state.open = None
        state.evidence = []
        state.cooldown = self.policy.cooldown
        return Transition(
            "resolve",
            kind,
            alert,
            score,
            event_id,
            ts,
            resolution=resolution,
            rebaseline=resolution == "new_normal",
        )

    def dump(self) -> bytes:
        """The lifecycle state as JSON."""
        return orjson.dumps({k: asdict(s) for k, s in self.types.items()})

    @classmethod
    def restore(cls, key: str, policy: AlertPolicy, raw: bytes | None) -> AlertTracker:
        """The tracker :meth:`dump` saved (a fresh one for ``None``)."""
        tracker = cls(key, policy)
        if raw:
            doc: dict[str, Any] = orjson.loads(raw)
            for kind, s in doc.items():
                opened = s.get("open")
                tracker.types[kind] = TypeState(
                    evidence=[bool(b) for b in s.get("evidence", [])],
                    open=None if opened is None else OpenAlert(**opened),
                    cooldown=int(s.get("cooldown", 0)),
                )
        return tracker


def top_metric(metrics: Sequence[MetricView]) -> MetricView | None:
    """The metric with the largest contribution (``None`` for none)."""
    return max(metrics, key=lambda m: m.contribution, default=None)
