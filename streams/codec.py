"""Decode and validate telemetry messages; encode output records.

A message is refused with a reason, never with a crash: decoding returns the accepted
samples and a dead letter for every refused message or sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastjsonschema
import jsonschema
import orjson

import schemas
from streams.errors import DecodeError

from .records import DeadLetter, HostSample, LinkSample, OutputRecord, SourceRef
from .topics import Topics

LINK_SCHEMA = Topics.schema("link")
HOST_SCHEMA = Topics.schema("host")
SUPPORTED_SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_BATCH = 10_000

_NON_FINITE = (b"NaN", b"Infinity", b"-Infinity")

# Dead-letter error kinds (the ``error_kind`` enum of telemetry.dlq.v1).
MALFORMED_JSON = "malformed_json"
SCHEMA_VIOLATION = "schema_violation"
UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
INVALID_VALUE = "invalid_value"


@cache
def _fast_sample_validator(schema_name: str) -> Callable[[Any], Any]:
    # The sample schemas use only draft-07 keywords, so fastjsonschema's compiled
    # draft-07 validator accepts exactly what the draft 2020-12 schema accepts
    # (tests/property checks this against the jsonschema reference implementation).
    sample = schemas.sample_schema(schema_name)
    sample["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(sample)


@cache
def _reference_sample_validator(schema_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schemas.sample_schema(schema_name))


def _explain(schema_name: str, sample: Any) -> str:
    """A readable reason for a sample that failed validation (slow path only)."""
    error = jsonschema.exceptions.best_match(
        _reference_sample_validator(schema_name).iter_errors(sample)
    )
    if error is None:  # pragma: no cover - the fast and reference validators agree
        return "the sample does not match the schema"
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    field = where.lstrip(".") or "the sample"
    if error.validator == "anyOf" and not error.absolute_path:
        return (
            "the sample has none of the measures bandwidth_mbps, latency_ms, "
            "packet_loss_pct, jitter_ms, throughput_mbps; send at least one"
        )
    if error.validator == "additionalProperties":
        return f"{field}: {error.message}; check the field name against {schema_name}"
    return f"{field}: {error.message}"


def _parse(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_MESSAGE_BYTES:
        msg = f"message of {len(raw)} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes"
        raise DecodeError(INVALID_VALUE, msg)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if any(token in raw for token in _NON_FINITE):
            msg = (
                "a number is NaN or Infinity, which JSON does not allow; "
                "leave an unmeasured field out instead"
            )
            raise DecodeError(INVALID_VALUE, msg) from exc
        msg = f"value is not valid JSON ({exc}); send one UTF-8 JSON object per message"
        raise DecodeError(MALFORMED_JSON, msg) from exc
    if not isinstance(obj, dict):
        msg = (
            f"expected a JSON object (one sample or {{'samples': [...]}}), got {type(obj).__name__}"
        )
        raise DecodeError(SCHEMA_VIOLATION, msg)
    version = obj.get("schema_version", SUPPORTED_SCHEMA_VERSION)
    if version != SUPPORTED_SCHEMA_VERSION or isinstance(version, bool):
        msg = (
            f"schema_version {version!r} is not supported; this worker reads version "
            f"{SUPPORTED_SCHEMA_VERSION}. Send it to the topic of its version or upgrade the worker"
        )
        raise DecodeError(UNKNOWN_SCHEMA_VERSION, msg)
    return obj


def _samples_of(obj: dict[str, Any]) -> tuple[list[Any], bool]:
    """The samples of a message and whether it was a batch."""
    if "samples" not in obj:
        return [obj], False
    extra = sorted(set(obj) - {"samples", "schema_version"})
    if extra:
        msg = f"a batch message may hold only 'samples' and 'schema_version'; got also {extra}"
        raise DecodeError(SCHEMA_VIOLATION, msg)
    samples = obj["samples"]
    if not isinstance(samples, list) or not samples:
        msg = f"'samples' must be a non-empty array, got {type(samples).__name__}"
        raise DecodeError(SCHEMA_VIOLATION, msg)
    if len(samples) > MAX_BATCH:
        msg = f"'samples' holds {len(samples)} samples; at most {MAX_BATCH} per message"
        raise DecodeError(SCHEMA_VIOLATION, msg)
    return samples, True


def _decode(
    schema_name: str,
    raw: bytes,
    source: SourceRef,
    build: Callable[[dict[str, Any], str], Any],
) -> tuple[list[Any], list[DeadLetter]]:
    try:
        samples, is_batch = _samples_of(_parse(raw))
    except DecodeError as exc:
        return [], [DeadLetter(exc.kind, exc.reason, source, raw)]
    fast = _fast_sample_validator(schema_name)
    accepted: list[Any] = []
    dead: list[DeadLetter] = []
    for index, sample in enumerate(samples):
        where = index if is_batch else None
        try:
            fast(sample)
        except fastjsonschema.JsonSchemaException:
            reason = _explain(schema_name, sample)
            if is_batch:
                reason = f"samples[{index}]: {reason}"
            dead.append(DeadLetter(SCHEMA_VIOLATION, reason, source, raw, where))
            continue
        if sample.get("schema_version", SUPPORTED_SCHEMA_VERSION) != SUPPORTED_SCHEMA_VERSION:
            reason = (
                f"samples[{index}]: schema_version {sample['schema_version']!r} is not supported"
            )
            dead.append(DeadLetter(UNKNOWN_SCHEMA_VERSION, reason, source, raw, where))
            continue
        event_id = sample.get("event_id") or source.event_id(where)
        accepted.append(build(sample, event_id))
    return accepted, dead


def _link(sample: dict[str, Any], event_id: str) -> LinkSample:
    return LinkSample(
        event_id=event_id,
        link_id=sample["link_id"],
        ts=float(sample["ts"]),
        mode=sample["mode"],
        bandwidth_mbps=_num(sample.get("bandwidth_mbps")),
        latency_ms=_num(sample.get("latency_ms")),
        packet_loss_pct=_num(sample.get("packet_loss_pct")),
        jitter_ms=_num(sample.get("jitter_ms")),
        throughput_mbps=_num(sample.get("throughput_mbps")),
    )


def _host(sample: dict[str, Any], event_id: str) -> HostSample:
    return HostSample(
        event_id=event_id,
        host_id=sample["host_id"],
        ts=float(sample["ts"]),
        metrics={k: float(v) for k, v in sample["metrics"].items()},
        cluster=sample.get("cluster"),
    )


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def decode_link(raw: bytes, source: SourceRef) -> tuple[list[LinkSample], list[DeadLetter]]:
    """Decode one ``telemetry.link.v1`` message into samples and dead letters.

    Examples:
        >>> src = SourceRef("telemetry.link.v1", 0, 5)
        >>> ok, bad = decode_link(b'{"link_id": "l1", "ts": 1.7e9, "mode": "internet",'
        ...                       b' "throughput_mbps": 42.0}', src)
        >>> ok[0].event_id, ok[0].throughput_mbps, bad
        ('telemetry.link.v1:0:5', 42.0, [])
        >>> ok, bad = decode_link(b'{"link_id": "l1", "ts": 1.7e9, "mode": "internet",'
        ...                       b' "latency_ms": -5}', src)
        >>> ok, bad[0].error_kind, bad[0].reason
        ([], 'schema_violation', 'latency_ms: -5 is less than the minimum of 0')
    """
    return _decode(LINK_SCHEMA, raw, source, _link)


def decode_host(raw: bytes, source: SourceRef) -> tuple[list[HostSample], list[DeadLetter]]:
    """Decode one ``telemetry.host.v1`` message into samples and dead letters."""
    return _decode(HOST_SCHEMA, raw, source, _host)


def encode(record: dict[str, Any]) -> bytes:
    """Serialize an output record; refuses NaN rather than writing invalid JSON."""
    for value in record.values():
        if isinstance(value, float) and not math.isfinite(value):
            msg = f"refusing to encode a non-finite number in record {record!r}"
            raise ValueError(msg)
    return orjson.dumps(record)


@dataclass(frozen=True, slots=True)
class EncodedRecord:
    """A record ready to send: topic name, key and value as the bytes on the wire."""

    topic: str
    key: str
    value: bytes


def encode_output(record: OutputRecord, topics: Topics, produced_at: float) -> EncodedRecord:
    """Encode an output record for its configured topic: the one place records are encoded.

    Examples:
        >>> from streams.records import ModelEvent, ModelRef
        >>> out = encode_output(ModelEvent("loaded", ModelRef("m", "1"), 2.0), Topics(), 3.0)
        >>> out.topic, out.key, out.value[:40]
        ('model.events.v1', 'm', b'{"schema_version":1,"event":"loaded","mo')
    """
    return EncodedRecord(
        topics.name(record.topic), record.key, encode(record.to_record(produced_at))
    )
