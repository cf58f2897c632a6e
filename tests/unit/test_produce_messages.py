"""Producer messages: schema-valid, keyed by entity, unique event ids, bad ones bad on purpose."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import novacron.produce as produce_module
from agents.settings import Settings
from novacron.produce import produce
from novacron.produce_messages import (
    DEFAULT_START_TS,
    ProduceOptions,
    iter_host_messages,
    iter_link_messages,
    iter_messages,
)
from novacron.produce_samples import BAD_KINDS, link_sample_dict
from streams.errors import ConfigError

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


LINK = _validator("telemetry.link.v1")
HOST = _validator("telemetry.host.v1")


def _samples(value: dict[str, Any]) -> list[dict[str, Any]]:
    return value["samples"] if "samples" in value else [value]


def _leaf_errors(validator: jsonschema.Draft202012Validator, value: Any) -> list[Any]:
    """Every error, descending into the branches of oneOf/anyOf."""
    out = []
    stack = list(validator.iter_errors(value))
    while stack:
        error = stack.pop()
        out.append(error)
        stack.extend(error.context or [])
    return out


@pytest.mark.parametrize("mode", ["datacenter", "internet", "mixed"])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_link_messages_validate_and_are_keyed_by_link(mode: str, batch_size: int) -> None:
    pairs = list(itertools.islice(iter_link_messages(4, mode=mode, batch_size=batch_size), 80))
    for key, raw in pairs:
        value = orjson.loads(raw)
        LINK.validate(value)
        samples = _samples(value)
        assert ("samples" in value) == (batch_size > 1)
        assert len(samples) == batch_size
        for sample in samples:
            assert sample["link_id"].encode() == key
            assert set(sample) >= {"bandwidth_mbps", "latency_ms", "packet_loss_pct"}
            expected_mode = mode
            if mode == "mixed":
                expected_mode = "datacenter" if int(sample["link_id"][-4:]) % 2 == 0 else "internet"
            assert sample["mode"] == expected_mode
    assert {k for k, _ in pairs} == {b"link-0000", b"link-0001", b"link-0002", b"link-0003"}


@pytest.mark.parametrize("batch_size", [1, 3])
def test_host_messages_validate(batch_size: int) -> None:
    for key, raw in itertools.islice(iter_host_messages(3, batch_size=batch_size), 30):
        value = orjson.loads(raw)
        HOST.validate(value)
        for sample in _samples(value):
            assert sample["host_id"].encode() == key
            assert 0.0 <= sample["metrics"]["cpu_pct"] <= 100.0


@pytest.mark.parametrize("batch_size", [1, 7])
def test_event_ids_are_unique_and_follow_the_pattern(batch_size: int) -> None:
    seen = []
    for key, raw in iter_link_messages(3, batch_size=batch_size, event_id_prefix="run1", count=600):
        for sample in _samples(orjson.loads(raw)):
            assert sample["event_id"].startswith(f"run1-{key.decode()}-")
            seen.append(sample["event_id"])
    assert len(seen) == 600
    assert len(set(seen)) == len(seen)


def test_no_prefix_means_no_event_id() -> None:
    for _, raw in iter_link_messages(2, event_id_prefix=None, count=10):
        assert "event_id" not in orjson.loads(raw)


def test_simulated_time_steps_per_link() -> None:
    by_link: dict[str, list[float]] = {}
    for _, raw in iter_link_messages(2, batch_size=4, step_s=2.5, start_ts=1.8e9, count=40):
        for sample in _samples(orjson.loads(raw)):
            by_link.setdefault(sample["link_id"], []).append(sample["ts"])
    for stamps in by_link.values():
        assert stamps == [1.8e9 + 2.5 * i for i in range(20)]


def test_live_time_comes_from_the_clock() -> None:
    opts = ProduceOptions(rate=10.0, links=2, hosts=0, batch_size=3, count=6, time_mode="live")
    messages = list(iter_messages(opts, clock=lambda: 1_750_000_000.0))
    stamps = [s["ts"] for s in _samples(orjson.loads(messages[0].value))]
    # 2 links at 10 samples/s: one link samples every 0.2 s, the batch ends now
    assert stamps == [1_749_999_999.6, 1_749_999_999.8, 1_750_000_000.0]


@pytest.mark.parametrize(("count", "batch_size", "sizes"), [(7, 3, [3, 3, 1]), (4, 1, [1] * 4)])
def test_count_limits_sample_slots(count: int, batch_size: int, sizes: list[int]) -> None:
    opts = ProduceOptions(
        links=1, hosts=0, count=count, batch_size=batch_size, time_mode="simulated"
    )
    assert [m.samples for m in iter_messages(opts)] == sizes


def test_same_seed_same_messages_and_default_start() -> None:
    a = list(iter_link_messages(2, seed=3, count=20))
    b = list(iter_link_messages(2, seed=3, count=20))
    c = list(iter_link_messages(2, seed=4, count=20))
    assert a == b
    assert a != c
    assert orjson.loads(a[0][1])["ts"] == DEFAULT_START_TS


def test_link_sample_dict_rounds_and_keeps_every_measure() -> None:
    sample = link_sample_dict("l", 1.7e9, "datacenter", [1.23456, 2.0, 0.00001234, 0.5, 1.0])
    assert sample == {
        "link_id": "l",
        "ts": 1.7e9,
        "mode": "datacenter",
        "bandwidth_mbps": 1.2346,
        "latency_ms": 2.0,
        "packet_loss_pct": 0.0,
        "jitter_ms": 0.5,
        "throughput_mbps": 1.0,
    }


# --------------------------------------------------------------------------- bad messages


def _bad_link_messages(batch_size: int) -> dict[str, bytes]:
    opts = ProduceOptions(
        links=2, hosts=0, bad_fraction=1.0, batch_size=batch_size, time_mode="simulated",
        count=len(BAD_KINDS) * batch_size,
    )  # fmt: skip
    return {m.bad_kind: m.value for m in iter_messages(opts) if m.bad_kind is not None}


def _assert_invalid_for_reason(kind: str, raw: bytes) -> None:
    if kind == "malformed_json":
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
        return
    if kind == "nan_literal":
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        assert b"NaN" in raw
        # a lenient parser reads it, and what it reads is not a finite number
        lenient = _samples(json.loads(raw))[0]
        assert math.isnan(lenient["latency_ms"])
        return
    value = orjson.loads(raw)
    errors = _leaf_errors(LINK, value)
    assert errors, f"{kind} message validates"
    found = {(e.validator, e.path[-1] if e.path else None) for e in errors}
    if kind == "missing_field":
        assert any(e.validator == "required" and "'ts'" in e.message for e in errors)
    else:
        expected = {
            "wrong_type": ("type", "bandwidth_mbps"),
            "negative_value": ("minimum", "latency_ms"),
            "absurd_value": ("maximum", "bandwidth_mbps"),
            "unknown_schema_version": ("const", "schema_version"),
        }[kind]
        assert expected in found, found


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_link_message_is_invalid_for_its_reason(kind: str, batch_size: int) -> None:
    messages = _bad_link_messages(batch_size)
    assert set(messages) == set(BAD_KINDS)
    _assert_invalid_for_reason(kind, messages[kind])


def test_bad_kinds_cycle_in_order_at_the_asked_fraction() -> None:
    opts = ProduceOptions(links=4, hosts=2, bad_fraction=0.2, time_mode="simulated", count=5000)
    messages = list(iter_messages(opts))
    kinds = [m.bad_kind for m in messages if m.bad_kind is not None]
    assert len(kinds) / len(messages) == pytest.approx(0.2, abs=0.03)
    assert kinds[: 2 * len(BAD_KINDS)] == list(BAD_KINDS) * 2
    assert Counter(m.stream for m in messages) == {"link": 3334, "host": 1666}


@pytest.mark.parametrize(
    "kind", ["wrong_type", "missing_field", "absurd_value", "unknown_schema_version"]
)
def test_bad_host_messages_fail_the_host_schema(kind: str) -> None:
    opts = ProduceOptions(links=0, hosts=1, bad_fraction=1.0, time_mode="simulated", count=7)
    raw = {m.bad_kind: m.value for m in iter_messages(opts)}[kind]
    assert not HOST.is_valid(orjson.loads(raw))


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"mode": "dc"},
            "The 'mode' parameter of ProduceOptions must be one of "
            "{'datacenter', 'internet', 'mixed'}. Got 'dc' instead.",
        ),
        (
            {"batch_size": 0},
            "The 'batch_size' parameter of ProduceOptions must be an int in [1, 10000]. "
            "Got 0 instead.",
        ),
        (
            {"bad_fraction": 1.5},
            "The 'bad_fraction' parameter of ProduceOptions must be a float in [0, 1]. "
            "Got 1.5 instead.",
        ),
        (
            {"event_id_prefix": "has space"},
            "The 'event_id_prefix' parameter of ProduceOptions must be 1-64 characters of "
            "[A-Za-z0-9._:/@+=-] or None. Got 'has space' instead.",
        ),
        (
            {"time_mode": "replay"},
            "The 'time_mode' parameter of ProduceOptions must be one of "
            "{'live', 'simulated'}. Got 'replay' instead.",
        ),
    ],
)
def test_bad_options_raise_config_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProduceOptions(**kwargs)
    assert str(info.value) == message


# --------------------------------------------------------------------------- produce(), no broker


class _FakeProducer:
    """Stands in for AIOKafkaProducer: records what would be sent."""

    sent: list[tuple[str, bytes, bytes]] = []

    def __init__(self, **config: Any) -> None:
        self.config = config

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        type(self).sent.append((topic, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> type[_FakeProducer]:
    _FakeProducer.sent = []
    monkeypatch.setattr(produce_module, "AIOKafkaProducer", _FakeProducer)
    return _FakeProducer


def test_produce_reports_counts_per_topic(fake_producer: type[_FakeProducer]) -> None:
    opts = ProduceOptions(
        rate=None, links=2, hosts=1, count=30, batch_size=2, bad_fraction=0.25,
        time_mode="simulated", seed=9,
    )  # fmt: skip
    progress: list[Any] = []
    report = asyncio.run(produce(Settings(), opts, on_progress=progress.append))
    settings = Settings()
    assert report.messages == 15
    assert report.messages_per_topic == {settings.topics.link: 10, settings.topics.host: 5}
    assert report.samples + 2 * report.bad_messages == 30
    assert progress[-1] == report
    assert [(t, k, v) for t, k, v in fake_producer.sent] == [
        ({"link": settings.topics.link, "host": settings.topics.host}[m.stream], m.key, m.value)
        for m in iter_messages(opts)
    ]


def test_produce_paces_to_the_rate(fake_producer: type[_FakeProducer]) -> None:
    opts = ProduceOptions(rate=200.0, links=2, hosts=0, count=40, time_mode="simulated")
    report = asyncio.run(produce(Settings(), opts))
    # the 40th sample is due 39 / 200 s after the first
    assert report.elapsed_s >= 39 / 200
    assert report.achieved_rate == pytest.approx(200.0, rel=0.25)


def test_produce_stops_when_asked(fake_producer: type[_FakeProducer]) -> None:
    async def run() -> Any:
        stop = asyncio.Event()
        opts = ProduceOptions(rate=1000.0, links=1, hosts=0, time_mode="live")
        task = asyncio.create_task(produce(Settings(), opts, stop=stop))
        await asyncio.sleep(0.05)
        stop.set()
        return await task

    report = asyncio.run(run())
    assert report.messages > 0
