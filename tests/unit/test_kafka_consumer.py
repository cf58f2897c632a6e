"""The worker's Kafka consumer is created with the configured fetch wait."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust

from agents.kafka_consumer import WorkerApp


def _fetch_wait(app: faust.App) -> int:
    async def create() -> int:  # aiokafka creates its consumer inside a running loop
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    return asyncio.run(create())


def test_the_worker_consumer_lets_the_broker_wait_as_configured(tmp_path: Path) -> None:
    broker = "kafka://127.0.0.1:9"  # never connected to: the consumer is not started
    ours = WorkerApp("probe", broker=broker, datadir=str(tmp_path / "a"), fetch_max_wait_ms=50)
    # Faust's own app waits 1.5 s: the setting is what changes it (the test can fail).
    plain = faust.App("probe", broker=broker, datadir=str(tmp_path / "b"))
    try:
        assert _fetch_wait(ours) == 50
        assert _fetch_wait(plain) == 1500
    finally:
        for app in (ours, plain):  # each app and its consumer thread made an event loop
            app.consumer._thread.thread_loop.close()
            app.loop.close()
