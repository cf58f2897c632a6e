"""Deliver a batch: process, send, wait for the broker, then store the windows.

Nothing of a batch is acknowledged before its outputs are delivered. When Redis or
the broker fails, the whole batch is done again after a capped exponential backoff,
until it succeeds: the consumer never moves past it, and since the windows are stored
last, a batch done again gives the same records (the same ids). While a batch waits,
the worker's ``/healthz`` names the failing component and the metrics count retries
and the time spent blocked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from streams.codec import EncodedRecord, encode_output
from streams.errors import StoreConflict, StoreUnavailable
from streams.pipeline import BatchOutcome, RawMessage, TelemetryPipeline
from streams.records import DeadLetter, SourceRef

from .metrics import WorkerMetrics

log = logging.getLogger(__name__)

OUTPUT_REFUSED = "output_refused"
Send = Callable[[EncodedRecord], Awaitable[Awaitable[Any]]]
"""Queues a record with the producer; the returned awaitable resolves once delivered.

Raises the client's ``KafkaError`` (unwrapped) when the record cannot be queued."""


@dataclass(frozen=True, slots=True)
class Blocked:
    """A batch that waits for a failing component."""

    component: str
    since: float
    attempts: int
    error: str


class BatchDelivery:
    """Runs each batch to completion, retrying it as a whole on infrastructure failures.

    Args:
        pipeline: the worker's pipeline.
        send: queues one record with the producer (see :data:`Send`).
        metrics: where retries and blocked time are counted.
        backoff_s: first wait after a failure; doubled per attempt up to ``backoff_max_s``.
    """

    def __init__(
        self,
        pipeline: TelemetryPipeline,
        send: Send,
        metrics: WorkerMetrics,
        *,
        backoff_s: float = 0.1,
        backoff_max_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.send = send
        self.metrics = metrics
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.blocked: dict[str, Blocked] = {}

    async def deliver(self, role: str, messages: list[RawMessage]) -> BatchOutcome:
        """Process, deliver and store one batch of input ``role``; returns once all is done."""
        topic = self.pipeline.topics.name(role)
        delay = self.backoff_s
        attempts = 0
        while True:
            try:
                outcome = await self.pipeline.process(role, messages)
                await self._send_all(outcome.outputs)
                await self.pipeline.persist(role, outcome)
            except StoreConflict as exc:
                # Another worker appended to a window of this batch (a partition moved
                # while it was in flight): do it again from freshly loaded windows.
                component, error = "window_conflict", str(exc)
            except StoreUnavailable as exc:
                component, error = "redis", str(exc)
            except KafkaError as exc:
                component, error = "kafka", repr(exc)
            except Exception as exc:  # noqa: BLE001 - a bug: block, never ack unprocessed
                # Leaving the batch would let Faust commit it unprocessed: wait instead,
                # visibly (/healthz, metrics, the log), for a fix or an operator.
                log.exception("%s batch failed unexpectedly; it is retried", topic)
                component, error = "processing", repr(exc)
            else:
                self._unblock(role, topic)
                return outcome
            attempts += 1
            since = self.blocked[role].since if role in self.blocked else self.clock()
            self.blocked[role] = Blocked(component, since, attempts, error)
            self.metrics.batch_retries.labels(topic, component).inc()
            if attempts == 1 or attempts % 20 == 0:
                log.warning(
                    "%s batch of %d messages waits for %s (attempt %d): %s",
                    topic, len(messages), component, attempts, error,
                )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    def _unblock(self, role: str, topic: str) -> None:
        blocked = self.blocked.pop(role, None)
        if blocked is not None:
            waited = self.clock() - blocked.since
            self.metrics.blocked_seconds.labels(topic, blocked.component).inc(waited)
            log.warning(
                "%s resumed after %.1f s waiting for %s (%d retries)",
                topic, waited, blocked.component, blocked.attempts,
            )  # fmt: skip

    async def _send_all(self, records: list[EncodedRecord]) -> None:
        """Send every record and wait until the broker has them all.

        A record the producer refuses for good (larger than the broker accepts) is
        replaced by a dead letter saying so; any other failure raises, and the batch is
        done again.
        """
        pending: list[tuple[EncodedRecord, Awaitable[Any]]] = []
        for record in records:
            pending.append((record, await self._queue(record)))
        for record, delivered in pending:
            try:
                await delivered
            except MessageSizeTooLargeError as exc:
                await (await self._queue(self._refused(record, exc)))

    async def _queue(self, record: EncodedRecord) -> Awaitable[Any]:
        try:
            return await self.send(record)
        except MessageSizeTooLargeError as exc:
            return await self.send(self._refused(record, exc))

    def _refused(self, record: EncodedRecord, exc: BaseException) -> EncodedRecord:
        reason = (
            f"the producer refused a {len(record.value)}-byte record for {record.topic} "
            f"({type(exc).__name__}: {exc}); the record is kept here instead"
        )
        dead = DeadLetter(
            OUTPUT_REFUSED, reason, SourceRef(record.topic, key=record.key), record.value
        )
        return encode_output(dead, self.pipeline.topics, time.time())
