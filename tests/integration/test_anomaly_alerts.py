"""Anomaly alerts from the real worker on the real Kafka broker and Redis server.

Hosts with a known incident (a CPU spike, a memory leak, a network outage, a flapping
CPU) and a noisy but normal host over 10,000 samples, interleaved as a fleet would send
them. Each incident must give exactly one alert, of its type, and a resolve record after
recovery; the normal host none; every record must validate against its schema.
"""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest
import redis

import schemas
from models.synthetic_incidents import IncidentHost, incident_host

from .conftest import WorkerHandle, collect, run, send
from .test_status import scrape

pytestmark = pytest.mark.integration

INCIDENTS = {
    "ia-cpu": ("cpu_spike", 0),
    "ia-mem": ("memory_leak", 1),
    "ia-net": ("network_outage", 2),
    "ia-flap": ("flapping", 3),
}
NORMAL = "ia-normal"
LENGTH = 2600
NORMAL_LENGTH = 10_000
START = 2000
STEP_S = 60.0


def host_message(host: str, series: IncidentHost, i: int) -> tuple[bytes, bytes]:
    value = {
        "event_id": f"{host}-{i}",
        "host_id": host,
        "ts": 1.75e9 + STEP_S * i,
        "metrics": series.sample(i),
    }
    return host.encode(), orjson.dumps(value)


def processed_upto(worker: WorkerHandle, host: str) -> str | None:
    """The last event of ``host`` whose outputs the worker delivered (its stored state)."""
    client = redis.Redis.from_url(worker.settings.redis_dsn)
    try:
        head = client.hget(f"{worker.settings.redis_key_prefix}:state:host:{host}", "anomaly.head")
    finally:
        client.close()
    return None if head is None else orjson.loads(head)["upto"]


def test_one_alert_per_incident_none_for_a_normal_host(worker: WorkerHandle) -> None:
    t = worker.settings.topics
    series = {
        host: incident_host(kind, n=LENGTH, start=START, length=40, seed=seed)
        for host, (kind, seed) in INCIDENTS.items()
    }
    series[NORMAL] = incident_host("none", n=NORMAL_LENGTH, seed=9)
    messages = [
        host_message(host, s, i)
        for i in range(NORMAL_LENGTH)
        for host, s in series.items()
        if i < len(next(iter(s.metrics.values())))
    ]
    run(send(worker.settings, t.host, messages))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = [processed_upto(worker, h) for h in series]
        if done == [f"{h}-{len(next(iter(s.metrics.values()))) - 1}" for h, s in series.items()]:
            break
        time.sleep(1.0)
    else:
        pytest.fail(f"the worker did not process every host sample in time: {done}")
    out = run(collect(worker.settings, [t.alerts], until=lambda r: True, settle_s=3.0))
    alerts = out[t.alerts]

    validator = schemas.validator("alerts.anomaly.v1")
    for key, value in alerts:
        assert key == value["entity_id"]
        assert validator.is_valid(value), list(validator.iter_errors(value))[:1]

    by_host: dict[str, list[dict]] = {h: [] for h in series}
    for _, value in alerts:
        by_host[value["entity_id"]].append(value)
    assert by_host[NORMAL] == [], [a["reason"]["summary"] for a in by_host[NORMAL]]

    for host, (kind, _) in INCIDENTS.items():
        records = by_host[host]
        opened = {a["alert_id"] for a in records if a["status"] == "open"}
        if kind == "flapping":
            assert len(opened) <= 1, records
            assert len(opened) == 1, f"{host}: the flapping CPU was never alerted on"
        else:
            assert len(opened) == 1, (host, [(a["status"], a["anomaly_type"]) for a in records])
        (alert_id,) = opened
        first = next(a for a in records if a["status"] == "open")
        assert first["anomaly_type"] == series[host].anomaly_type, first["reason"]["summary"]
        opened_at = int(first["source_event_ids"][0].rsplit("-", 1)[1])
        assert START <= opened_at < START + 40, (host, opened_at)
        statuses = [a["status"] for a in records if a["alert_id"] == alert_id]
        assert statuses[-1] == "resolve", (host, statuses)
        resolved = next(a for a in records if a["status"] == "resolve")
        assert resolved["resolution"] == "recovered"
        if kind != "flapping":  # a flapping metric may be resolved once the flapping is usual
            assert resolved["ts"] >= 1.75e9 + STEP_S * (START + 40), (host, statuses)
        seqs = [a["seq"] for a in records if a["alert_id"] == alert_id]
        assert seqs == sorted(set(seqs)), f"{host}: updates out of order or repeated: {seqs}"

    # The worker's alert counters agree with the records, by severity and status.
    sent = Counter((value["severity"], value["status"]) for _, value in alerts)
    exported = {
        (dict(labels)["severity"], dict(labels)["status"]): value
        for (name, labels), value in scrape(worker.settings).items()
        if name == "novacron_alerts_total"
    }
    assert exported == dict(sent)
