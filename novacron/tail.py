"""``novacron tail TOPIC``: read a topic and show one readable line per record."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from agents.connections import kafka_options
from agents.settings import Settings
from streams.errors import StackError
from streams.topics import Topics, roles

__all__ = ["TailRecord", "format_record", "line_style", "resolve_topic", "tail"]


@dataclass(frozen=True)
class TailRecord:
    """One consumed record.

    Attributes:
        topic: topic it was read from.
        partition: its partition.
        offset: its offset.
        timestamp_ms: the broker or producer timestamp, if any.
        key: the key as UTF-8 text (undecodable bytes replaced), or None.
        value: the decoded JSON value, or None when it is not JSON.
        raw: the value bytes as received.
        error: why ``value`` is None, when it is.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    value: Any
    raw: bytes | None
    error: str | None = None

    def line(self) -> str:
        """The record as :func:`format_record` shows it."""
        if self.error is not None:
            text = (self.raw or b"").decode("utf-8", "replace")
            return f"{self.key or '-'}  <{self.error}>  {text[:200]}"
        return format_record(self.topic, self.key, self.value)


def resolve_topic(settings: Settings, name: str) -> str:
    """The topic a short name stands for (``predictions``, ``model-events``), else ``name``.

    Examples:
        >>> s = Settings()
        >>> resolve_topic(s, "dlq"), resolve_topic(s, "model-events"), resolve_topic(s, "x.y")
        ('telemetry.dlq.v1', 'model.events.v1', 'x.y')
    """
    role = name.replace("-", "_")
    return settings.topics.name(role) if role in roles() else name


def _decode(msg: Any) -> TailRecord:
    key = None if msg.key is None else bytes(msg.key).decode("utf-8", "replace")
    raw = None if msg.value is None else bytes(msg.value)
    value: Any = None
    error = None
    if raw is None:
        error = "tombstone"
    else:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            error = f"not JSON: {exc}"
    return TailRecord(msg.topic, msg.partition, msg.offset, msg.timestamp, key, value, raw, error)


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    key: str | None = None,
    timeout_s: float | None = None,
    on_record: Callable[[TailRecord], None],
) -> int:
    """Consume ``topic`` and hand each record to ``on_record``.

    Reads without a consumer group, so nothing is committed and other readers
    are not disturbed.

    Args:
        settings: where Kafka is.
        topic: topic name.
        from_beginning: start at the earliest offsets instead of new records only.
        limit: stop after this many records (after the key filter).
        key: show only records with this key.
        timeout_s: stop once no record has been shown for this many seconds
            (idle time); None runs until cancelled.
        on_record: called with every record shown.

    Returns:
        The number of records handed to ``on_record``.

    Raises:
        StackError: the broker cannot be reached.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        client_id="novacron-tail",
        **kafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        msg = f"cannot reach Kafka at {settings.bootstrap_servers!r} ({exc})"
        raise StackError(msg) from exc
    loop = asyncio.get_running_loop()
    idle_since = loop.time()
    shown = 0
    try:
        while limit is None or shown < limit:
            left_s = None if timeout_s is None else idle_since + timeout_s - loop.time()
            wait_s = 0.5 if left_s is None else min(0.5, left_s)
            if wait_s <= 0:
                break
            batches = await consumer.getmany(timeout_ms=int(wait_s * 1000))
            messages = sorted(
                (m for ms in batches.values() for m in ms), key=lambda m: (m.timestamp, m.offset)
            )
            for message in messages:
                record = _decode(message)
                if key is not None and record.key != key:
                    continue
                on_record(record)
                shown += 1
                idle_since = loop.time()
                if limit is not None and shown >= limit:
                    break
    except KafkaError as exc:
        msg = f"reading {topic!r} from {settings.bootstrap_servers!r} failed: {exc}"
        raise StackError(msg) from exc
    finally:
        await consumer.stop()
    return shown


# --------------------------------------------------------------------------- formatting


def _hms(ts: Any) -> str:
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts):
        return "--:--:--"
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "--:--:--"


def _num(value: Any, fmt: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, fmt)
    return "?"


def _model(value: Mapping[str, Any]) -> str:
    model = value.get("model")
    if not isinstance(model, Mapping):
        return "?"
    version = str(model.get("version", "?"))
    return f"{model.get('name', '?')} {version if version.startswith('v') else 'v' + version}"


def _compact(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _prediction(key: str | None, v: Mapping[str, Any]) -> str:
    return (
        f"{v.get('link_id', key)}  {_hms(v.get('ts'))}  "
        f"pred {_num(v.get('predicted_bandwidth_mbps'), '.1f')} Mbps "
        f"[{_num(v.get('lower_mbps'), '.1f')}, {_num(v.get('upper_mbps'), '.1f')}] "
        f"conf {_num(v.get('confidence'), '.2f')}  {_model(v)}"
    )


def _dead_letter(key: str | None, v: Mapping[str, Any]) -> str:
    source = v.get("source")
    src: Mapping[str, Any] = source if isinstance(source, Mapping) else {}
    if src.get("file") is not None:
        where = f"{src['file']}:{src.get('row', '?')}"
    else:
        where = f"{src.get('topic', '?')}[{src.get('partition', '?')}]@{src.get('offset', '?')}"
    index = v.get("sample_index")
    sample = f" sample {index}" if index is not None else ""
    shown_key = src.get("key", key)
    return (
        f"{_hms(v.get('produced_at'))}  {v.get('error_kind', '?')}  {where}{sample}  "
        f"key {shown_key or '-'}  {v.get('reason', '')}"
    )


def _summary(v: Mapping[str, Any]) -> str:
    """The one-line summary of a record's structured ``reason``, if it has one."""
    reason = v.get("reason")
    return str(reason.get("summary", "")) if isinstance(reason, Mapping) else ""


def _alert(key: str | None, v: Mapping[str, Any]) -> str:
    status = str(v.get("status", "open"))
    head = (
        f"{v.get('entity_id', key)}  {_hms(v.get('ts'))}  {status.upper():<7} "
        f"{str(v.get('severity', '?')).upper():<8} {v.get('anomaly_type', '?')}  "
        f"score {_num(v.get('anomaly_score'), '.2f')}"
    )
    if status == "resolve":
        head += f"  {v.get('resolution') or 'resolved'}"
    elif v.get("previous_severity"):
        head += f" (was {str(v['previous_severity']).upper()})"
    metrics = [m for m in v.get("metrics") or () if isinstance(m, Mapping)]
    if metrics:
        top = max(metrics, key=lambda m: float(m.get("contribution") or 0.0))
        head += (
            f"  {top.get('name')} {_num(top.get('value'), '.4g')} "
            f"(expected {_num(top.get('expected'), '.4g')}, "
            f"normal {_num(top.get('low'), '.4g')}..{_num(top.get('high'), '.4g')}, "
            f"{_num(100 * float(top.get('contribution') or 0.0), '.0f')}%)"
        )
    else:
        head += f"  {_summary(v)}"
    alert = f"  {v['alert_id']} #{v.get('seq', 0)}" if v.get("alert_id") else ""
    return f"{head}{alert}  {_model(v)}"


SEVERITY_STYLES = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
}
"""Terminal style of an alert line by severity (a resolve is green)."""


def line_style(topic: str, value: Any) -> str | None:
    """The terminal style of a record's line: alerts by severity, else none.

    Examples:
        >>> line_style("alerts.anomaly.v1", {"anomaly_score": 0.9, "severity": "critical"})
        'bold red'
        >>> line_style("alerts.anomaly.v1", {"anomaly_score": 0.1, "status": "resolve"})
        'green'
    """
    if not isinstance(value, Mapping) or _formatter(topic, value) is not _alert:
        return None
    if value.get("status") == "resolve":
        return "green"
    return SEVERITY_STYLES.get(str(value.get("severity")))


def _workload(key: str | None, v: Mapping[str, Any]) -> str:
    pattern = f" ({v['pattern_type']})" if v.get("pattern_type") else ""
    return (
        f"{v.get('host_id', key)}  {_hms(v.get('ts'))}  {v.get('workload_type', '?')}{pattern}  "
        f"conf {_num(v.get('confidence'), '.2f')}  {_model(v)}"
    )


def _scaling(key: str | None, v: Mapping[str, Any]) -> str:
    change = ""
    if "current_value" in v or "target_value" in v:
        change = f" {_num(v.get('current_value'), '.1f')} -> {_num(v.get('target_value'), '.1f')}"
    return (
        f"{v.get('target', key)}  {_hms(v.get('ts'))}  {v.get('action', '?')} "
        f"{v.get('resource', '?')}{change}  {v.get('policy', '?')}  "
        f"score {_num(v.get('score'), '.2f')} conf {_num(v.get('confidence'), '.2f')}  "
        f"{_summary(v)}  {_model(v)}"
    )


def _model_event(key: str | None, v: Mapping[str, Any]) -> str:
    previous = v.get("previous_version")
    before = f" (was {previous})" if previous else ""
    detail = v.get("detail")
    extra = f"  {_compact(detail)}" if detail else ""
    return f"{_hms(v.get('ts'))}  {v.get('event', '?')}  {_model(v)}{before}{extra}"


_LINK_MEASURES = (
    ("bandwidth_mbps", "bw", "Mbps", ".1f"),
    ("latency_ms", "lat", "ms", ".1f"),
    ("packet_loss_pct", "loss", "%", ".3g"),
    ("jitter_ms", "jit", "ms", ".2f"),
    ("throughput_mbps", "thr", "Mbps", ".1f"),
)


def _link_sample(key: str | None, s: Mapping[str, Any]) -> str:
    parts = [
        f"{label} {_num(s[f], fmt)} {unit}" for f, label, unit, fmt in _LINK_MEASURES if f in s
    ]
    return f"{s.get('link_id', key)}  {_hms(s.get('ts'))}  {'  '.join(parts)}  {s.get('mode', '?')}"


def _host_sample(key: str | None, s: Mapping[str, Any]) -> str:
    given = s.get("metrics")
    metrics: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    parts = [f"{name} {_num(value, '.1f')}" for name, value in metrics.items()]
    return f"{s.get('host_id', key)}  {_hms(s.get('ts'))}  {'  '.join(parts)}"


def _telemetry(one: Callable[[str | None, Mapping[str, Any]], str]) -> Callable[..., str]:
    def fmt(key: str | None, v: Mapping[str, Any]) -> str:
        samples = v.get("samples")
        if not isinstance(samples, list):
            return one(key, v)
        if not samples or not isinstance(samples[-1], Mapping):
            return f"{key or '-'}  batch of {len(samples)} samples"
        return f"[{len(samples)} samples, last] {one(key, samples[-1])}"

    return fmt


_FORMATTERS: dict[str, Callable[[str | None, Mapping[str, Any]], str]] = {
    "predictions": _prediction,
    "dlq": _dead_letter,
    "alerts": _alert,
    "workload": _workload,
    "scaling": _scaling,
    "model_events": _model_event,
    "link": _telemetry(_link_sample),
    "host": _telemetry(_host_sample),
}
"""Formatter per topic role."""

_BY_BASE = {Topics.schema(role).rsplit(".v", 1)[0]: role for role in _FORMATTERS}
"""Roles by topic name without its version suffix, so a newer version still formats."""

# Renamed topics are recognised by a field only their records carry.
_SIGNATURES: tuple[tuple[str, str], ...] = (
    ("predicted_bandwidth_mbps", "predictions"),
    ("error_kind", "dlq"),
    ("anomaly_score", "alerts"),
    ("workload_type", "workload"),
    ("action_id", "scaling"),
    ("event", "model_events"),
)


def _formatter(topic: str, value: Mapping[str, Any]) -> Callable[..., str] | None:
    base = topic.rsplit(".v", 1)[0] if topic.rsplit(".v", 1)[-1].isdigit() else topic
    if base in _BY_BASE:
        return _FORMATTERS[_BY_BASE[base]]
    for fieldname, role in _SIGNATURES:
        if fieldname in value:
            return _FORMATTERS[role]
    return None


def format_record(topic: str, key: str | bytes | None, value: Any) -> str:
    """One readable line for a record of ``topic``; times are UTC.

    Unknown topics, and values a formatter cannot read, show as compact JSON.

    Examples:
        >>> format_record("predictions.bandwidth.v1", "link-0007", {
        ...     "link_id": "link-0007", "ts": 1700000401.0, "predicted_bandwidth_mbps": 812.44,
        ...     "lower_mbps": 701.2, "upper_mbps": 903.94, "confidence": 0.812,
        ...     "model": {"name": "lstm-internet", "version": "3"}})
        'link-0007  22:20:01  pred 812.4 Mbps [701.2, 903.9] conf 0.81  lstm-internet v3'
        >>> format_record("my.topic", b"k", {"b": 1, "a": [2]})
        'k  {"a":[2],"b":1}'
    """
    if isinstance(key, bytes | bytearray):
        key = bytes(key).decode("utf-8", "replace")
    if isinstance(value, Mapping):
        formatter = _formatter(topic, value)
        if formatter is not None:
            try:
                return formatter(key, value)
            except (TypeError, ValueError, KeyError, AttributeError):
                pass  # a malformed record still gets shown, as JSON below
    try:
        body = _compact(value)
    except TypeError:
        body = repr(value)
    return f"{key or '-'}  {body}"
