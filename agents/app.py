"""The Faust app: topics, the link and host agents, ``/healthz`` and ``/metrics``.

Nothing is created at import time; :func:`create_app` builds everything from settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any

import faust
import redis.asyncio as aioredis
import redis.exceptions
from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.web import Request, Response, View

from models.serving import ModelHolder, model_loaded_events
from streams.codec import EncodedRecord, encode_output
from streams.pipeline import BatchOutcome, RawMessage, TelemetryPipeline
from streams.records import SourceRef, WindowEntry
from streams.store import RedisWindowStore, WindowStore
from streams.topics import INPUT_ROLES

from .connections import kafka_options, redis_options
from .delivery import BatchDelivery, Send
from .group import GroupInspector
from .kafka_consumer import WorkerApp
from .metrics import WorkerMetrics
from .settings import Settings
from .wiring import pipeline_for

log = logging.getLogger(__name__)

EXIT_UNFINISHED_BATCH = 75
"""Exit status of a worker stopped while a batch could not finish (it is redelivered)."""


class TimedWindowStore:
    """A window store that records each Redis round trip in the metrics."""

    def __init__(self, inner: WindowStore, metrics: WorkerMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def load(
        self, namespace: str, keys: Sequence[str], last: int | None = None
    ) -> dict[str, list[WindowEntry]]:
        with self.metrics.redis_seconds.labels("load").time():
            return await self.inner.load(namespace, keys, last)

    async def load_state(
        self, namespace: str, keys: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, bytes]]:
        with self.metrics.redis_seconds.labels("load_state").time():
            return await self.inner.load_state(namespace, keys, fields)

    async def append(
        self,
        namespace: str,
        entries: Mapping[str, Sequence[WindowEntry]],
        expect_newest: Mapping[str, str | None] | None = None,
        states: Mapping[str, Mapping[str, bytes]] | None = None,
    ) -> None:
        with self.metrics.redis_seconds.labels("append").time():
            await self.inner.append(namespace, entries, expect_newest, states)

    async def close(self) -> None:
        await self.inner.close()


class WorkerContext:
    """Connections and the pipeline of one worker process, opened on first use."""

    def __init__(self, settings: Settings, models: ModelHolder) -> None:
        self.settings = settings
        self.models = models
        self.metrics = WorkerMetrics()
        self._lock = asyncio.Lock()
        self._pipeline: TelemetryPipeline | None = None
        self._delivery: BatchDelivery | None = None
        self._redis: Any = None
        self._kafka: AIOKafkaClient | None = None
        self._inspector: GroupInspector | None = None
        self._lag_failing = False

    async def pipeline(self) -> TelemetryPipeline:
        async with self._lock:
            if self._pipeline is None:
                s = self.settings
                # Timeouts, so that a Redis that stops answering fails the batch (which is
                # retried) instead of hanging it.
                self._redis = aioredis.from_url(
                    s.redis_dsn, socket_timeout=5.0, socket_connect_timeout=2.0, **redis_options(s)
                )
                store = RedisWindowStore(
                    self._redis,
                    capacity=s.window_size,
                    ttl_s=s.window_ttl_s,
                    prefix=s.redis_key_prefix,
                    owns_client=False,
                    unavailable=(redis.exceptions.RedisError, OSError, TimeoutError),
                )
                self._pipeline = pipeline_for(
                    s, self.models, TimedWindowStore(store, self.metrics), time.time
                )
            return self._pipeline

    async def delivery(self, send: Send) -> BatchDelivery:
        """The batch delivery shared by the worker's agents."""
        pipeline = await self.pipeline()
        if self._delivery is None:
            self._delivery = BatchDelivery(
                pipeline, send, self.metrics, backoff_max_s=self.settings.retry_backoff_max_s
            )
        return self._delivery

    async def health(self) -> dict[str, Any]:
        """Reachability of Redis (PING) and Kafka (a metadata request), and any batch
        waiting for a failing component."""
        checks: dict[str, Any] = {}
        try:
            await self.pipeline()
            await asyncio.wait_for(self._redis.ping(), timeout=2.0)
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks["redis"] = f"unreachable at {self.settings.redis_dsn}: {exc!r}"
        try:
            if self._kafka is None:
                self._kafka = AIOKafkaClient(
                    bootstrap_servers=self.settings.bootstrap_servers,
                    **kafka_options(self.settings),
                )
                await asyncio.wait_for(self._kafka.bootstrap(), timeout=5.0)
            metadata = await asyncio.wait_for(self._kafka.fetch_all_metadata(), timeout=3.0)
            checks["kafka"] = "ok" if metadata.brokers() else "no brokers in metadata"
        except Exception as exc:  # noqa: BLE001
            checks["kafka"] = f"unreachable at {self.settings.bootstrap_servers}: {exc!r}"
            if self._kafka is not None:
                await self._kafka.close()
                self._kafka = None
        blocked = {} if self._delivery is None else dict(self._delivery.blocked)
        checks["ready"] = all(v == "ok" for v in checks.values()) and not blocked
        if blocked:
            now = time.monotonic()
            checks["blocked"] = {
                role: {
                    "component": b.component,
                    "seconds": round(now - b.since, 1),
                    "attempts": b.attempts,
                    "error": b.error,
                }
                for role, b in blocked.items()
            }
        checks["models"] = self.models.describe()
        return checks

    async def export_lag(self, assigned: Iterable[Any]) -> None:
        """Set ``novacron_consumer_lag`` for the input partitions this worker owns (from
        the broker: end offset minus the group's committed offset). A broker that does
        not answer leaves the last figures and logs once until it answers again."""
        inputs = {self.settings.topics.name(role) for role in INPUT_ROLES}
        owned = sorted(
            {TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic in inputs}
        )
        try:
            if self._inspector is None:
                inspector = GroupInspector(self.settings)
                await asyncio.wait_for(inspector.start(), timeout=10.0)
                self._inspector = inspector
            rows = await asyncio.wait_for(
                self._inspector.lag(self.settings.app_id, owned), timeout=10.0
            )
        except Exception as exc:  # noqa: BLE001 - lag is reported, never fatal
            if not self._lag_failing:
                log.warning("consumer lag not available from the broker: %r", exc)
            self._lag_failing = True
            return
        self._lag_failing = False
        gauge = self.metrics.consumer_lag
        gauge.clear()  # partitions moved to another worker drop out
        for row in rows:
            gauge.labels(row.topic, str(row.partition)).set(row.lag)

    def export_models(self) -> None:
        """Set ``novacron_model_info`` to the versions served now."""
        gauge = self.metrics.model_info
        gauge.clear()
        for role, ref in self.models.describe().items():
            name, _, version = ref.rpartition(":")
            gauge.labels(role, name, version).set(1)

    async def close(self) -> None:
        """Close connections; safe to call more than once."""
        redis_client, self._redis, self._pipeline = self._redis, None, None
        self._delivery = None
        kafka, self._kafka = self._kafka, None
        inspector, self._inspector = self._inspector, None
        if inspector is not None:
            with contextlib.suppress(Exception):
                await inspector.stop()
        if redis_client is not None:
            await redis_client.aclose()
        if kafka is not None:
            await kafka.close()


def create_app(settings: Settings, models: ModelHolder) -> tuple[faust.App, WorkerContext]:
    """Build the Faust app and the context its agents share."""
    ctx = WorkerContext(settings, models)
    faust_dir = settings.state_dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        # Faust's own data folder (unused: the windows live in Redis), with the stack's
        # state instead of a new folder in the working directory per consumer group
        datadir=str(faust_dir / settings.app_id),
        topic_partitions=settings.topic_partitions,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        producer_acks=-1,
        producer_linger_ms=2,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        consumer_group_instance_id=settings.group_instance_id,
        broker_client_id=settings.worker_name,
        broker_credentials=_credentials(settings),
        consumer_auto_offset_reset="earliest",
        store="memory://",
    )
    topics = settings.topics
    metrics = ctx.metrics

    async def send(record: EncodedRecord) -> Awaitable[Any]:
        # The producer directly, not Topic.send: a record per prediction through Faust's
        # channel machinery costs more than the whole core.
        try:
            return await app.producer.send(
                record.topic, record.key.encode("utf-8"), record.value, None, None, None
            )
        except ProducerSendError as exc:
            if isinstance(exc.__cause__, KafkaError):
                raise exc.__cause__ from exc
            raise

    async def run_batches(stream: Any, role: str) -> None:
        # aiokafka's producer builds a DEBUG record per send when its logger inherits a
        # low level; at thousands of sends per second that is a tenth of the CPU.
        logging.getLogger("aiokafka").setLevel(
            max(logging.getLogger("aiokafka").getEffectiveLevel(), logging.INFO)
        )
        delivery = await ctx.delivery(send)
        topic = topics.name(role)
        try:
            async for events in stream.take_events(
                settings.batch_max, within=settings.batch_within_s
            ):
                started = time.perf_counter()
                messages = [_raw(event) for event in events]
                outcome = await _finish(
                    delivery.deliver(role, messages), settings.shutdown_timeout_s, topic
                )
                _count(metrics, topic, len(messages), outcome)
                metrics.processing_seconds.labels(topic).observe(time.perf_counter() - started)
        finally:
            await ctx.close()

    for role in INPUT_ROLES:
        _input_agent(app, topics.name(role), role, run_batches)

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            checks = await ctx.health()
            return self.json(checks, status=200 if checks["ready"] else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    ctx.export_models()

    @app.timer(interval=2.0)
    async def refresh_models() -> None:
        before = models.describe()
        if await asyncio.to_thread(models.refresh):
            ctx.export_models()
            now = time.time()
            for event in model_loaded_events(before, models.describe(), now):
                await (await send(encode_output(event, topics, now)))

    @app.timer(interval=settings.lag_interval_s)
    async def export_lag() -> None:
        await ctx.export_lag(app.consumer.assignment())

    return app, ctx


def _credentials(settings: Settings) -> faust.SASLCredentials | None:
    """Faust's form of :func:`agents.connections.kafka_options`."""
    options = kafka_options(settings)
    if not options:
        return None
    return faust.SASLCredentials(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        ssl_context=options["ssl_context"],
        mechanism=options["sasl_mechanism"],
    )


async def _finish(delivery: Awaitable[BatchOutcome], timeout_s: float, topic: str) -> BatchOutcome:
    """Await a batch's delivery; a stop (SIGTERM) lets it finish within ``timeout_s``.

    Faust acknowledges a batch's events when the agent leaves it, even when it leaves
    because it was cancelled. A batch that cannot finish in time therefore ends the
    process before that can happen: nothing of it is committed, and the next owner of
    its partitions gets it again.
    """
    task = asyncio.ensure_future(delivery)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=timeout_s)
        except BaseException:  # noqa: BLE001 - anything but a finished batch
            log.error(
                "stopping with a %s batch unfinished after %.0f s; exiting without "
                "committing it (it will be redelivered)", topic, timeout_s,
            )  # fmt: skip
            logging.shutdown()
            os._exit(EXIT_UNFINISHED_BATCH)
        raise


def _input_agent(app: faust.App, topic: str, role: str, run: Any) -> None:
    """One agent per input topic (a function, so each closure keeps its own role)."""

    async def agent(stream: Any) -> None:
        await run(stream, role)

    agent.__name__ = f"{role}_agent"
    app.agent(app.topic(topic, key_type=bytes, value_type=bytes), name=f"{role}-telemetry")(agent)


def _raw(event: Any) -> RawMessage:
    message = event.message
    key = message.key
    return RawMessage(
        value=message.value if isinstance(message.value, bytes) else bytes(message.value or b""),
        source=SourceRef(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
        ),
    )


def _count(metrics: WorkerMetrics, topic: str, messages: int, outcome: BatchOutcome) -> None:
    metrics.messages_in.labels(topic).inc(messages)
    metrics.batch_size.labels(topic).observe(messages)
    metrics.events_in.labels(topic).inc(outcome.accepted)
    metrics.warming_up.labels(topic).inc(outcome.counts.get("warming_up", 0))
    for name, count in outcome.counts.items():
        kind, _, detail = name.partition(":")
        if not detail:
            metrics.processor_counts.labels(topic, name).inc(count)
        elif kind == "alerts":
            status, _, severity = detail.partition(":")
            metrics.alerts.labels(severity, status).inc(count)
        elif kind == "scaling_actions":
            metrics.scaling_actions.labels(detail).inc(count)
    metrics.duplicates.labels(topic).inc(outcome.duplicates)
    # summed per label set first: one counter update per series and batch, not per event
    tally: dict[tuple[str, ...], list[float]] = {}
    for mode, group, one in outcome.scored:
        sums = tally.setdefault(
            (one.role, one.model.name, one.model.version, mode, group), [0.0] * 4
        )
        sums[0] += 1
        sums[1] += one.abs_error
        sums[2] += one.within_20
        sums[3] += bool(one.in_interval)
    for labels, (scored, abs_error, within, covered) in tally.items():
        metrics.predictions_scored.labels(*labels).inc(scored)
        metrics.prediction_abs_error.labels(*labels).inc(abs_error)
        if within:
            metrics.predictions_within_20pct.labels(*labels).inc(within)
        if covered:
            metrics.predictions_in_interval.labels(*labels).inc(covered)
    for dead in outcome.dead_letters:
        metrics.dead_letters.labels(topic, dead.error_kind).inc()
    for record in outcome.outputs:
        metrics.events_out.labels(record.topic).inc()
