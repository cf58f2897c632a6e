"""Faust's Kafka transport with the fetch wait the worker's latency needs.

Faust's aiokafka driver creates the worker's consumer with ``fetch_max_wait_ms=1500``,
written into the driver (aiokafka's own default is 500). At a steady trickle of
telemetry that wait decided the worker's latency: after its first anomaly fits the
worker settled into waiting about 450 ms between batches with most of a core idle, and a
sample waited 1.3-2 s for its prediction (``bench/latency_rss.py --rate 380``:
``bench/results/latency_rss_rate380_activity.json``). With 50 ms the same run keeps
about 7 batches a second and a p99 of 0.5 s. This transport is Faust's own with one
difference: its consumer is created with ``fetch_max_wait_ms`` from the worker's
settings (``NOVACRON_FETCH_MAX_WAIT_MS``).
"""

from __future__ import annotations

from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its fetcher when the consumer starts, which is after this
        consumer._fetch_max_wait_ms = cast(WorkerApp, self.app).fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class WorkerApp(faust.App):
    """``faust.App`` whose consumer waits at most ``fetch_max_wait_ms`` for the broker
    to have data (the broker answers sooner as soon as it has any)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> driver.Transport:
        return _Transport(self.conf.broker_consumer, self, loop=self.loop)
