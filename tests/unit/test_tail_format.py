"""One readable line per record, for every topic the worker writes and reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import novacron.tail as tail_module
from agents.settings import Settings
from novacron.tail import TailRecord, format_record, resolve_topic, tail

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
TS = 1_700_000_401.0  # 2023-11-14 22:20:01 UTC
PRODUCED = 1_700_000_402.5
MODEL = {"name": "lstm-internet", "version": "3"}

PREDICTION = {
    "schema_version": 1,
    "prediction_id": "lstm-internet:3:p-link-0007-41",
    "link_id": "link-0007",
    "mode": "internet",
    "ts": TS,
    "target_ts": TS + 1,
    "horizon_steps": 1,
    "predicted_bandwidth_mbps": 812.44,
    "lower_mbps": 701.2,
    "upper_mbps": 903.94,
    "interval_level": 0.9,
    "confidence": 0.812,
    "model": MODEL,
    "source_event_ids": ["p-link-0007-41"],
    "input_window": {"from_ts": TS - 59, "to_ts": TS, "samples": 60},
    "produced_at": PRODUCED,
}
DEAD_LETTER = {
    "schema_version": 1,
    "error_kind": "schema_violation",
    "reason": "latency_ms: -5.0 is less than the minimum of 0",
    "source": {"topic": "telemetry.link.v1", "partition": 2, "offset": 1534, "key": "link-0003"},
    "sample_index": None,
    "original_bytes_b64": "e30=",
    "produced_at": PRODUCED,
}
DEAD_LETTER_FILE = {
    **DEAD_LETTER,
    "error_kind": "malformed_json",
    "reason": "value is not valid JSON",
    "source": {"topic": "telemetry.link.v1", "file": "links.jsonl", "row": 12},
    "sample_index": 3,
}
ALERT = {
    "schema_version": 1,
    "alert_id": "host-0002:cpu:e9",
    "status": "update",
    "seq": 2,
    "entity_kind": "host",
    "entity_id": "host-0002",
    "ts": TS,
    "opened_ts": TS - 60,
    "anomaly_score": 0.873,
    "confidence": 0.71,
    "severity": "critical",
    "previous_severity": "high",
    "anomaly_type": "cpu",
    "resolution": None,
    "model": {"name": "anomaly-ensemble", "version": "v2"},
    "source_event_ids": ["p-host-0002-9"],
    "time_range": {"from_ts": TS - 60, "to_ts": TS},
    "reason": {
        "summary": "cpu anomaly continues (critical); cpu_pct = 97, expected 41",
        "threshold": 0.5,
        "fitted_detectors": True,
        "history_samples": 400,
        "peak_score": 0.9,
        "top_features": [{"name": "cpu_pct", "value": 97.0, "contribution": 0.82}],
        "detectors": {"robust_z": 0.99},
    },
    "metrics": [
        {
            "name": "cpu_pct",
            "value": 97.0,
            "expected": 41.0,
            "low": 35.0,
            "high": 48.0,
            "contribution": 0.82,
        },
        {
            "name": "mem_pct",
            "value": 50.0,
            "expected": 50.0,
            "low": 45.0,
            "high": 55.0,
            "contribution": 0.18,
        },
    ],
    "produced_at": PRODUCED,
}
WORKLOAD = {
    "schema_version": 1,
    "host_id": "host-0001",
    "ts": TS,
    "workload_type": "CPU_INTENSIVE",
    "pattern_type": "SEASONAL",
    "confidence": 0.914,
    "model": {"name": "workload-rf", "version": "1"},
    "input_window": {"from_ts": TS - 3600, "to_ts": TS, "samples": 60},
    "produced_at": PRODUCED,
}
SCALING = {
    "schema_version": 1,
    "action_id": "s-1",
    "target": "host-0001",
    "ts": TS,
    "action": "SCALE_UP",
    "resource": "cpu_pct",
    "policy": "PREDICTIVE",
    "current_value": 78.0,
    "target_value": 60.0,
    "score": 1.234,
    "confidence": 0.8,
    "model": {"name": "scaling-ensemble", "version": "1"},
    "reason": {"summary": "cpu_pct breaches 85 in 9 min"},
    "produced_at": PRODUCED,
}
MODEL_EVENT = {
    "schema_version": 1,
    "event": "activated",
    "model": MODEL,
    "previous_version": "2",
    "ts": TS,
    "detail": {"mae": 12.5},
    "produced_at": PRODUCED,
}
LINK_SAMPLE = {
    "link_id": "link-0001",
    "ts": TS,
    "mode": "internet",
    "bandwidth_mbps": 612.34,
    "latency_ms": 85.25,
    "packet_loss_pct": 0.1234,
    "jitter_ms": 4.123,
}
HOST_SAMPLE = {"host_id": "host-0000", "ts": TS, "metrics": {"cpu_pct": 41.26, "mem_pct": 60.0}}

CASES = [
    (
        "predictions.bandwidth.v1",
        "link-0007",
        PREDICTION,
        "link-0007  22:20:01  pred 812.4 Mbps [701.2, 903.9] conf 0.81  lstm-internet v3",
    ),
    (
        "telemetry.dlq.v1",
        "link-0003",
        DEAD_LETTER,
        "22:20:02  schema_violation  telemetry.link.v1[2]@1534  key link-0003  "
        "latency_ms: -5.0 is less than the minimum of 0",
    ),
    (
        "telemetry.dlq.v1",
        None,
        DEAD_LETTER_FILE,
        "22:20:02  malformed_json  links.jsonl:12 sample 3  key -  value is not valid JSON",
    ),
    (
        "alerts.anomaly.v1",
        "host-0002",
        ALERT,
        "host-0002  22:20:01  UPDATE  CRITICAL cpu  score 0.87 (was HIGH)  cpu_pct 97 "
        "(expected 41, normal 35..48, 82%)  host-0002:cpu:e9 #2  anomaly-ensemble v2",
    ),
    (
        "workload.class.v1",
        "host-0001",
        WORKLOAD,
        "host-0001  22:20:01  CPU_INTENSIVE (SEASONAL)  conf 0.91  workload-rf v1",
    ),
    (
        "actions.scaling.v1",
        "host-0001",
        SCALING,
        "host-0001  22:20:01  SCALE_UP cpu_pct 78.0 -> 60.0  PREDICTIVE  score 1.23 conf 0.80  "
        "cpu_pct breaches 85 in 9 min  scaling-ensemble v1",
    ),
    (
        "model.events.v1",
        "lstm-internet",
        MODEL_EVENT,
        '22:20:01  activated  lstm-internet v3 (was 2)  {"mae":12.5}',
    ),
    (
        "telemetry.link.v1",
        "link-0001",
        LINK_SAMPLE,
        "link-0001  22:20:01  bw 612.3 Mbps  lat 85.2 ms  loss 0.123 %  jit 4.12 ms  internet",
    ),
    (
        "telemetry.link.v1",
        "link-0001",
        {"samples": [LINK_SAMPLE, {**LINK_SAMPLE, "ts": TS + 1, "bandwidth_mbps": 600.0}]},
        "[2 samples, last] link-0001  22:20:02  bw 600.0 Mbps  lat 85.2 ms  loss 0.123 %  "
        "jit 4.12 ms  internet",
    ),
    (
        "telemetry.host.v1",
        "host-0000",
        HOST_SAMPLE,
        "host-0000  22:20:01  cpu_pct 41.3  mem_pct 60.0",
    ),
    ("some.other.topic", "k1", {"b": 1, "a": [1, 2]}, 'k1  {"a":[1,2],"b":1}'),
]


@pytest.mark.parametrize(("topic", "key", "value", "expected"), CASES)
def test_format_record(topic: str, key: str | None, value: dict[str, Any], expected: str) -> None:
    assert format_record(topic, key, value) == expected


@pytest.mark.parametrize(("topic", "key", "value", "expected"), CASES[:-1])
def test_sample_records_are_schema_valid(
    topic: str, key: str | None, value: dict[str, Any], expected: str
) -> None:
    schema = json.loads((SCHEMAS / f"{topic}.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(value)


def test_renamed_topic_is_recognised_by_its_fields() -> None:
    line = format_record("staging-predictions", "link-0007", PREDICTION)
    assert line.startswith("link-0007  22:20:01  pred 812.4 Mbps")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {**PREDICTION, "confidence": "high", "ts": "noon"},
            "link-0007  --:--:--  pred 812.4 Mbps [701.2, 903.9] conf ?  lstm-internet v3",
        ),
        ({"link_id": "x"}, "x  --:--:--  pred ? Mbps [?, ?] conf ?  ?"),
        ([1, 2], "link-0007  [1,2]"),
    ],
)
def test_odd_values_never_raise(value: Any, expected: str) -> None:
    assert format_record("predictions.bandwidth.v1", "link-0007", value) == expected


def test_bytes_key_is_decoded() -> None:
    assert format_record("x", b"link-1", {}) == "link-1  {}"


def test_tail_record_line_shows_undecodable_values() -> None:
    record = TailRecord("t", 0, 5, None, "k", None, b"{oops", "not JSON: unexpected character")
    assert record.line() == "k  <not JSON: unexpected character>  {oops"


@pytest.mark.parametrize(
    ("name", "topic"),
    [
        ("predictions", "predictions.bandwidth.v1"),
        ("model-events", "model.events.v1"),
        ("dlq", "telemetry.dlq.v1"),
        ("alerts.anomaly.v1", "alerts.anomaly.v1"),
    ],
)
def test_resolve_topic(name: str, topic: str) -> None:
    assert resolve_topic(Settings(), name) == topic


# --------------------------------------------------------------------------- tail(), no broker


class _Msg:
    def __init__(self, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.topic, self.partition, self.offset = "predictions.bandwidth.v1", 0, offset
        self.timestamp, self.key, self.value = 1_700_000_000_000 + offset, key, value


class _FakeConsumer:
    """Stands in for AIOKafkaConsumer: one batch of records, then nothing."""

    config: dict[str, Any] = {}

    def __init__(self, topic: str, **config: Any) -> None:
        type(self).config = {"topic": topic, **config}
        self._batches = [
            {
                "tp": [
                    _Msg(0, b"link-0007", orjson.dumps(PREDICTION)),
                    _Msg(1, b"link-0001", orjson.dumps({**PREDICTION, "link_id": "link-0001"})),
                    _Msg(2, b"link-0007", b"{oops"),
                ]
            }
        ]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def getmany(self, timeout_ms: int = 0) -> dict[str, list[_Msg]]:
        if self._batches:
            return self._batches.pop(0)
        await asyncio.sleep(timeout_ms / 1000)
        return {}


@pytest.fixture
def fake_consumer(monkeypatch: pytest.MonkeyPatch) -> type[_FakeConsumer]:
    monkeypatch.setattr(tail_module, "AIOKafkaConsumer", _FakeConsumer)
    return _FakeConsumer


@pytest.mark.parametrize(
    ("kwargs", "offsets"),
    [({"limit": 2}, [0, 1]), ({"key": "link-0007", "timeout_s": 0.2}, [0, 2])],
)
def test_tail_filters_limits_and_times_out(
    fake_consumer: type[_FakeConsumer], kwargs: dict[str, Any], offsets: list[int]
) -> None:
    seen: list[TailRecord] = []
    count = asyncio.run(
        tail(Settings(), "predictions.bandwidth.v1", on_record=seen.append, **kwargs)
    )
    assert count == len(offsets)
    assert [r.offset for r in seen] == offsets
    assert fake_consumer.config["group_id"] is None
    assert fake_consumer.config["auto_offset_reset"] == "latest"
    assert seen[0].line().startswith("link-0007  22:20:01  pred 812.4 Mbps")
    if 2 in offsets:
        assert seen[-1].value is None
        assert seen[-1].line().startswith("link-0007  <not JSON")
