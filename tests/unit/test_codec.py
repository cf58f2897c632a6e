"""Decoding telemetry: accepted samples, dead letters with reasons, event ids."""

from __future__ import annotations

import base64

import orjson
import pytest

from streams.codec import decode_host, decode_link
from streams.records import SourceRef

SRC = SourceRef("telemetry.link.v1", partition=1, offset=10, key="l1")


def link(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "link_id": "l1",
        "ts": 1.7e9,
        "mode": "internet",
        "bandwidth_mbps": 500.0,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("raw", "kind", "reason_part"),
    [
        (b"{oops", "malformed_json", "not valid JSON"),
        (b"", "malformed_json", "not valid JSON"),
        (b'{"link_id":"l1","ts":1.7e9,"mode":"internet","latency_ms":NaN}', "invalid_value", "NaN"),
        (b"[1, 2]", "schema_violation", "got list"),
        (orjson.dumps(link(schema_version=2)), "unknown_schema_version", "schema_version 2"),
        (orjson.dumps(link(mode="dc")), "schema_violation", "mode: 'dc' is not one of"),
        (
            orjson.dumps(link(ts="yesterday")),
            "schema_violation",
            "ts: 'yesterday' is not of type 'number'",
        ),
        (orjson.dumps(link(ts=12.0)), "schema_violation", "ts: 12.0 is less than the minimum"),
        (orjson.dumps(link(link_id=None)), "schema_violation", "'link_id' is a required property"),
        (
            orjson.dumps(link(latency_ms=-5)),
            "schema_violation",
            "latency_ms: -5 is less than the minimum of 0",
        ),
        (orjson.dumps(link(bandwidth_mbps=1e9)), "schema_violation", "greater than the maximum"),
        (orjson.dumps(link(packet_loss_pct=150)), "schema_violation", "packet_loss_pct"),
        (orjson.dumps(link(bandwidth_mbps=True)), "schema_violation", "not of type 'number'"),
        (orjson.dumps(link(bandwith_mbps=3)), "schema_violation", "check the field name"),
        (orjson.dumps(link(bandwidth_mbps=None)), "schema_violation", "none of the measures"),
        (orjson.dumps({"samples": []}), "schema_violation", "non-empty array"),
        (orjson.dumps({"samples": [link()], "extra": 1}), "schema_violation", "only 'samples'"),
    ],
)
def test_bad_link_messages_become_dead_letters_with_reason(
    raw: bytes, kind: str, reason_part: str
) -> None:
    ok, dead = decode_link(raw, SRC)
    assert ok == []
    assert len(dead) == 1
    assert dead[0].error_kind == kind
    assert reason_part in dead[0].reason
    assert dead[0].original == raw
    assert dead[0].source == SRC


def test_single_sample_gets_event_id_from_position() -> None:
    ok, dead = decode_link(orjson.dumps(link()), SRC)
    assert dead == []
    assert [s.event_id for s in ok] == ["telemetry.link.v1:1:10"]


def test_producer_event_id_is_kept() -> None:
    ok, _ = decode_link(orjson.dumps(link(event_id="probe-42")), SRC)
    assert ok[0].event_id == "probe-42"


def test_absent_measures_are_none_and_nan_in_values() -> None:
    ok, _ = decode_link(orjson.dumps(link(bandwidth_mbps=None, throughput_mbps=12.5)), SRC)
    sample = ok[0]
    assert sample.bandwidth_mbps is None
    assert sample.throughput_mbps == 12.5
    values = sample.values()
    assert values[4] == 12.5
    assert values[0] != values[0]  # NaN


def test_batch_keeps_good_samples_and_dead_letters_the_bad_one() -> None:
    raw = orjson.dumps({"samples": [link(ts=1.7e9), link(latency_ms=-1), link(ts=1.7e9 + 2)]})
    ok, dead = decode_link(raw, SRC)
    assert [s.event_id for s in ok] == ["telemetry.link.v1:1:10:0", "telemetry.link.v1:1:10:2"]
    assert len(dead) == 1
    assert dead[0].sample_index == 1
    assert dead[0].reason.startswith("samples[1]: latency_ms")


def test_host_sample_decodes_open_metric_map() -> None:
    raw = orjson.dumps(
        {"host_id": "h1", "ts": 1.7e9, "metrics": {"cpu_pct": 51, "requests_per_s": 3.5}}
    )
    ok, dead = decode_host(raw, SourceRef("telemetry.host.v1", 0, 3))
    assert dead == []
    assert ok[0].metrics == {"cpu_pct": 51.0, "requests_per_s": 3.5}


@pytest.mark.parametrize(
    "metrics",
    [{}, {"CPU": 1.0}, {"cpu_pct": "high"}, {"cpu_pct": 1e15}],
)
def test_bad_host_metrics_are_refused(metrics: dict[str, object]) -> None:
    raw = orjson.dumps({"host_id": "h1", "ts": 1.7e9, "metrics": metrics})
    ok, dead = decode_host(raw, SourceRef("telemetry.host.v1", 0, 3))
    assert ok == []
    assert dead[0].error_kind == "schema_violation"


def test_dead_letter_record_carries_original_bytes() -> None:
    raw = b"\xff\xfe not utf-8"
    _, dead = decode_link(raw, SRC)
    record = dead[0].to_record(produced_at=1.8e9)
    assert base64.b64decode(record["original_bytes_b64"]) == raw
    assert record["original_text"] is None
    assert record["source"] == {
        "topic": "telemetry.link.v1",
        "partition": 1,
        "offset": 10,
        "key": "l1",
        "file": None,
        "row": None,
    }
