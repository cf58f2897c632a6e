"""A running worker picks up a newly activated model version while events flow:
every event is predicted exactly once and each link switches versions at one point."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.lstm_predictor import model_name
from models.registry import ModelRegistry

from .conftest import WorkerHandle

pytestmark = pytest.mark.integration

LINKS = [f"swap-link-{i}" for i in range(4)]
PER_LINK = 120
WARM_UP = 10


async def _produce(worker: WorkerHandle, swap: asyncio.Event, swapped: asyncio.Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.settings.bootstrap_servers, linger_ms=2)
    await producer.start()
    try:
        for i in range(PER_LINK):
            for link in LINKS:
                value = {
                    "event_id": f"{link}-{i}",
                    "link_id": link,
                    "ts": 1.77e9 + i,
                    "mode": "datacenter",
                    "bandwidth_mbps": 4000.0 + (i * 97) % 800,
                    "latency_ms": 2.0 + i % 3,
                }
                await producer.send(
                    worker.settings.topics.link, orjson.dumps(value), key=link.encode()
                )
            await producer.flush()
            if i == PER_LINK // 3:
                swap.set()
                await swapped.wait()
            await asyncio.sleep(0.03)
    finally:
        await producer.stop()


async def _activate_when_told(
    registry: ModelRegistry, swap: asyncio.Event, swapped: asyncio.Event
) -> str:
    await swap.wait()
    name = model_name("datacenter")
    current = registry.active(name)
    assert current is not None, "the shipped datacenter model should be active"
    fresh = registry.register(
        name,
        registry.artifact_path(current),
        mode="datacenter",
        kind=current.kind,
        notes="hot-swap test copy",
    )
    registry.activate(name, fresh.version, reason="hot-swap test")
    swapped.set()
    return fresh.version


async def _collect(
    worker: WorkerHandle, expected: int, timeout_s: float
) -> list[dict[str, object]]:
    consumer = AIOKafkaConsumer(
        worker.settings.topics.predictions,
        bootstrap_servers=worker.settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(orjson.loads(m.value) for m in batch)
            if len(records) >= expected:
                await asyncio.sleep(2.0)
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(orjson.loads(m.value) for m in batch)
                break
    finally:
        await consumer.stop()
    return records


def test_worker_switches_model_version_without_losing_or_repeating(worker: WorkerHandle) -> None:
    registry = ModelRegistry.from_url(worker.settings.registry_url, worker.settings.artifact_dir)
    expected = len(LINKS) * (PER_LINK - WARM_UP + 1)

    async def scenario() -> tuple[str, list[dict[str, object]]]:
        swap, swapped = asyncio.Event(), asyncio.Event()
        collector = asyncio.create_task(_collect(worker, expected, timeout_s=120))
        activator = asyncio.create_task(_activate_when_told(registry, swap, swapped))
        await _produce(worker, swap, swapped)
        return await activator, await collector

    new_version, records = asyncio.run(scenario())
    ids = [r["source_event_ids"][0] for r in records]  # type: ignore[index]
    assert len(ids) == len(set(ids)), "an event was predicted twice"
    assert set(ids) == {f"{link}-{i}" for link in LINKS for i in range(WARM_UP - 1, PER_LINK)}
    per_link: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in records:
        event = str(r["source_event_ids"][0])  # type: ignore[index]
        per_link[str(r["link_id"])].append((int(event.rsplit("-", 1)[1]), r["model"]["version"]))  # type: ignore[index]
    for link, seq in per_link.items():
        versions = [v for _, v in sorted(seq)]
        switch = versions.index(new_version)
        assert switch > 0, f"{link}: no prediction with the old version"
        assert set(versions[:switch]) == {versions[0]} and versions[0] != new_version
        assert set(versions[switch:]) == {new_version}, (
            f"{link}: versions do not switch at one point"
        )
