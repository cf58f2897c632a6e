"""Consumer lag, the worker's operational metrics and ``novacron status``, on the real stack."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client.parser import text_string_to_metric_families

from agents.connections import kafka_options
from agents.group import GroupInspector
from agents.settings import Settings

from .conftest import ISOLATED, WorkerHandle, collect, run, send
from .test_worker_round_trip import WARM_UP, link_message

pytestmark = pytest.mark.integration


def scrape(settings: Settings) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def series(
    values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str
) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels), _ in values.items() if n == name]


def test_lag_is_end_minus_committed_from_the_broker() -> None:
    """Seven messages on one partition: a group that never committed is 7 behind; after
    it commits offset 3 it is 4 behind, whatever another group did."""
    settings = Settings()
    suffix = uuid.uuid4().hex[:8]
    ISOLATED.add(suffix)  # deleted when the session ends
    topic = f"test.lag.{suffix}"
    run(send(settings, topic, [(b"k", f"{i}".encode()) for i in range(7)]))
    group = f"test-lag-{uuid.uuid4().hex[:8]}"

    async def check() -> tuple[int, int, int | None]:
        inspector = GroupInspector(settings)
        await inspector.start()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            **kafka_options(settings),
        )
        try:
            tps = await inspector.partitions_of([topic])
            (tp,) = [tp for tp in tps if (await inspector.end_offsets([tp]))[tp] > 0]
            before = (await inspector.lag(group, [tp]))[0].lag
            await consumer.start()
            consumer.assign([TopicPartition(tp.topic, tp.partition)])
            await consumer.commit(
                {TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(3, "")}
            )
            after = (await inspector.lag(group, [tp]))[0]
            return before, after.lag, after.committed
        finally:
            await consumer.stop()
            await inspector.stop()

    before, after, committed = asyncio.run(check())
    assert (before, after, committed) == (7, 4, 3)


def test_worker_exports_lag_counts_and_models_and_status_shows_the_group(
    worker: WorkerHandle,
) -> None:
    settings = worker.settings
    t = settings.topics
    links = [f"status-link-{n}" for n in range(3)]
    per_link = 20
    messages = [link_message(link, i) for i in range(per_link) for link in links]
    messages.append((b"status-link-0", b"{not json"))
    run(send(settings, t.link, messages))
    expected = len(links) * (per_link - WARM_UP + 1)
    run(
        collect(
            settings,
            [t.predictions, t.dlq],
            until=lambda r: len(r[t.predictions]) >= expected and len(r[t.dlq]) >= 1,
        )
    )
    # The lag gauge is refreshed every NOVACRON_LAG_INTERVAL_S (5 s) once the worker
    # committed: every owned input partition is listed, and all reach 0.
    deadline = time.monotonic() + 40
    while True:
        values = scrape(settings)
        lag = {
            (labels["topic"], labels["partition"]): v
            for (name, fs), v in values.items()
            if name == "novacron_consumer_lag"
            for labels in [dict(fs)]
        }
        if len(lag) == 2 * settings.topic_partitions and not any(lag.values()):
            break
        assert time.monotonic() < deadline, f"lag never settled at 0 on every partition: {lag}"
        time.sleep(1)
    assert {topic for topic, _ in lag} == {t.link, t.host}

    counts = {
        dict(fs)["name"]: v
        for (name, fs), v in values.items()
        if name == "novacron_processor_events_total" and dict(fs)["topic"] == t.link
    }
    assert counts["predictions"] == expected
    assert counts["warming_up"] == len(links) * (WARM_UP - 1)
    roles = {labels["role"] for labels in series(values, "novacron_model_info")}
    assert {"datacenter", "internet"} <= roles

    env = {**os.environ, **worker.env}
    shown = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "novacron", "status", "--interval", "1"],
        env={**env, "COLUMNS": "220"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "Stable" in shown, shown
    (members,) = [line for line in shown.splitlines() if "workers (members)" in line]
    assert members.replace("│", "").split()[-1] == "1", shown
    assert "dead letters, last 60 s" in shown and "malformed_json 1" in shown, shown
    for role in ("datacenter", "internet"):
        assert f"{role}=" in shown, shown
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in shown.splitlines()
        if line.startswith(f"│ {t.link} ") and line.count("│") == 8  # the partitions table
    ]
    name = settings.worker_name
    assert sorted(int(row[1]) for row in rows) == list(range(settings.topic_partitions)), shown
    assert all(row[2] == f"{name}@127.0.0.1" and row[5] == "0" for row in rows), shown
