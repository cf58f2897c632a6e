"""Telemetry through the real worker on the real Kafka broker and Redis server."""

from __future__ import annotations

import base64

import orjson
import pytest
import redis

import schemas
from streams.store import decode_entry

from .conftest import WorkerHandle, collect, run, send

pytestmark = pytest.mark.integration

WARM_UP = 10  # the harmonic-mean baseline needs 10 samples of history


def link_message(link: str, i: int, mode: str = "internet") -> tuple[bytes, bytes]:
    value = {
        "event_id": f"{link}-{i}",
        "link_id": link,
        "ts": 1.75e9 + i,
        "mode": mode,
        "bandwidth_mbps": 400.0 + (i * 37) % 90,
        "latency_ms": 40.0 + i % 5,
    }
    return link.encode(), orjson.dumps(value)


def test_one_prediction_for_every_event_past_warm_up(worker: WorkerHandle) -> None:
    t = worker.settings.topics
    links = [f"rt-link-{n}" for n in range(5)]
    per_link = 40
    messages = [
        link_message(link, i, "datacenter" if n % 2 else "internet")
        for i in range(per_link)
        for n, link in enumerate(links)
    ]
    run(send(worker.settings, t.link, messages))
    expected = {f"{link}-{i}" for link in links for i in range(WARM_UP - 1, per_link)}
    out = run(
        collect(
            worker.settings,
            [t.predictions],
            until=lambda r: len(r[t.predictions]) >= len(expected),
            settle_s=3.0,
        )
    )
    predictions = out[t.predictions]
    ids = [value["source_event_ids"][0] for _, value in predictions]
    assert len(ids) == len(set(ids)), "an event was predicted twice"
    assert set(ids) == expected
    validator = schemas.validator("predictions.bandwidth.v1")
    for key, value in predictions:
        assert key == value["link_id"]
        assert value["source_event_ids"][0].startswith(key + "-")
        assert validator.is_valid(value), list(validator.iter_errors(value))[:1]
        assert value["lower_mbps"] <= value["predicted_bandwidth_mbps"] <= value["upper_mbps"]
        assert value["target_ts"] > value["ts"]


BAD = [
    (b"{not json", "malformed_json"),
    (
        b'{"link_id": "dl-link", "ts": 1.75e9, "mode": "internet", "bandwidth_mbps": NaN}',
        "invalid_value",
    ),
    (
        b'{"link_id": "dl-link", "ts": "soon", "mode": "internet", "bandwidth_mbps": 5}',
        "schema_violation",
    ),
    (b'{"link_id": "dl-link", "mode": "internet", "bandwidth_mbps": 5}', "schema_violation"),
    (
        b'{"link_id": "dl-link", "ts": 1.75e9, "mode": "internet", "latency_ms": 1e12}',
        "schema_violation",
    ),
    (
        b'{"schema_version": 7, "link_id": "dl-link", "ts": 1.75e9, "mode": "internet",'
        b' "bandwidth_mbps": 5}',
        "unknown_schema_version",
    ),
]


def test_bad_events_reach_the_dead_letter_topic_and_good_ones_are_still_predicted(
    worker: WorkerHandle,
) -> None:
    t = worker.settings.topics
    messages: list[tuple[bytes, bytes]] = []
    for i in range(30):
        messages.append(link_message("dl-link", i))
        if i % 5 == 2:
            raw, _ = BAD[(i // 5) % len(BAD)]
            messages.append((b"dl-link", raw))
    bad_sent = [m for m in messages if not m[1].startswith(b'{"event_id"')]
    run(send(worker.settings, t.link, messages))
    out = run(
        collect(
            worker.settings,
            [t.predictions, t.dlq],
            until=lambda r: (
                len(r[t.dlq]) >= len(bad_sent)
                and sum(1 for _, v in r[t.predictions] if v["link_id"] == "dl-link")
                >= 30 - WARM_UP + 1
            ),
        )
    )
    dead = out[t.dlq]
    assert sorted(base64.b64decode(v["original_bytes_b64"]) for _, v in dead) == sorted(
        m[1] for m in bad_sent
    )
    kinds = {base64.b64decode(v["original_bytes_b64"]): v["error_kind"] for _, v in dead}
    for raw, kind in BAD[: len(bad_sent)]:
        assert kinds[raw] == kind
    validator = schemas.validator("telemetry.dlq.v1")
    for _, value in dead:
        assert validator.is_valid(value)
        assert value["reason"]
        assert value["source"]["topic"] == t.link and value["source"]["offset"] is not None
    predicted = sorted(
        int(v["source_event_ids"][0].rsplit("-", 1)[1])
        for _, v in out[t.predictions]
        if v["link_id"] == "dl-link"
    )
    assert predicted == list(range(WARM_UP - 1, 30))


def test_windows_live_in_redis_capped_and_expiring(worker: WorkerHandle) -> None:
    t = worker.settings.topics
    link = "redis-link"
    run(send(worker.settings, t.link, [link_message(link, i) for i in range(75)]))
    run(
        collect(
            worker.settings,
            [t.predictions],
            until=lambda r: any(
                v["source_event_ids"][0] == f"{link}-74" for _, v in r[t.predictions]
            ),
            settle_s=0.5,
        )
    )
    client = redis.Redis.from_url(worker.settings.redis_dsn)
    try:
        key = f"{worker.settings.redis_key_prefix}:link:{link}"
        entries = [decode_entry(raw) for raw in client.lrange(key, 0, -1)]
        assert [e.event_id for e in entries] == [f"{link}-{i}" for i in range(15, 75)]
        assert entries[-1].values[0] == 400.0 + (74 * 37) % 90
        ttl = client.ttl(key)
        assert 0 < ttl <= worker.settings.window_ttl_s
    finally:
        client.close()
