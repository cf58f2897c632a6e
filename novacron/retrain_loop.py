"""The ``novacron retrain`` job: retrain requests in, retrain records out.

It reads ``model.events.v1`` in its own consumer group (``<app_id>-retrain``), keeps the
``retrain_requested`` records, and hands them to :class:`RetrainSchedule`. For a due
retrain it reads the mode's recent telemetry from the link topic (the same decoder as
the worker: refused messages are skipped), trains in a thread while it keeps reading
requests, and writes the records. Offsets are committed only up to the first request
not yet answered, after the answer was acknowledged by the broker: a job stopped
mid-retrain sees that request again, and the registry (request ids in each retrained
version's params) turns it into ``already_handled``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

import schemas
from agents.connections import kafka_options
from agents.settings import Settings
from agents.topics import ensure_topics
from agents.wiring import open_registry
from models.lstm_predictor import model_name
from models.recent_telemetry import prepare_recent, recent_links, utc
from models.retraining import (
    RetrainOptions,
    RetrainRequest,
    complete_activation,
    retrain,
    retrain_history,
)
from models.training import MODE_CONFIGS
from streams.codec import encode_output
from streams.errors import ModelError, StackError
from streams.records import ModelEvent, SourceRef
from streams.topics import Topics

from .retrain_records import (
    completed_activation_event,
    outcome_events,
    skipped_event,
    started_event,
)
from .retrain_schedule import RetrainSchedule, Skip, commit_offsets, parse_request
from .retrain_telemetry import read_recent_telemetry

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetrainJobOptions:
    """The job's pace; ``training`` says how each retrain trains."""

    cooldown_s: float = 600.0
    lookback_s: float = 3600.0
    once: bool = False
    idle_exit_s: float = 10.0
    settle_s: float = 2.0
    training: RetrainOptions = field(default_factory=RetrainOptions)


@dataclass(slots=True)
class JobSummary:
    """What a run did (printed when it ends)."""

    requests: int = 0
    retrains: int = 0
    activated: int = 0
    rejected: int = 0
    skipped: int = 0
    waiting: dict[str, tuple[int, float]] = field(default_factory=dict)


async def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a daemon thread: a job told twice to stop exits without waiting."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, failed: bool) -> None:
        if not future.done():
            future.set_exception(value) if failed else future.set_result(value)

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(settle, exc, True)
        else:
            loop.call_soon_threadsafe(settle, result, False)

    threading.Thread(target=work, name="novacron-retrain", daemon=True).start()
    return await future


class RetrainJob:
    """One run of the job: clients, schedule, and the records it writes."""

    def __init__(
        self, settings: Settings, options: RetrainJobOptions, say: Callable[[str], None]
    ) -> None:
        self.settings = settings
        self.options = options
        self.say = say
        self.registry = open_registry(settings)
        self.schedule = RetrainSchedule(
            options.cooldown_s, lambda name: retrain_history(self.registry, name)
        )
        self.summary = JobSummary()
        self.topic = settings.topics.model_events
        self.consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.app_id}-retrain", client_id="novacron-retrain",
            enable_auto_commit=False, auto_offset_reset="earliest",
            **kafka_options(settings),
        )  # fmt: skip
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, client_id="novacron-retrain",
            acks="all", **kafka_options(settings),
        )  # fmt: skip
        self._validator = schemas.validator(Topics.schema("model_events"))

    async def run(self, stop: asyncio.Event, abandon: asyncio.Event) -> JobSummary:
        try:
            await ensure_topics(self.settings)
            await self.producer.start()
            await self.consumer.start()
        except KafkaError as exc:
            await self.producer.stop()
            await self.consumer.stop()
            msg = (
                f"cannot reach Kafka at {self.settings.bootstrap_servers!r} ({exc}). Is the "
                "stack up (`novacron stack up`), or is NOVACRON_KAFKA_BOOTSTRAP wrong?"
            )
            raise StackError(msg) from exc
        try:
            for mode in MODE_CONFIGS:
                await self._complete_interrupted(model_name(mode))
            await self._loop(stop, abandon)
        finally:
            await self.consumer.stop()
            await self.producer.stop()
        self.summary.waiting = self.schedule.waiting()
        return self.summary

    async def _send(self, events: list[ModelEvent]) -> None:
        for event in events:
            out = encode_output(event, self.settings.topics, time.time())
            await self.producer.send_and_wait(out.topic, out.value, key=out.key.encode())

    async def _complete_interrupted(self, name: str) -> None:
        done = complete_activation(self.registry, name)
        if done is not None:
            mv, previous = done
            self.say(f"{name}: activated v{mv.version}, decided by a retrain stopped before")
            ts = float(mv.params["retrain"]["data_end"])
            await self._send([completed_activation_event(name, mv.version, previous, ts, mv.notes)])

    async def _skip(self, skip: Skip) -> None:
        self.summary.skipped += len(skip.requests)
        self.say(f"{skip.model}: skipped {', '.join(skip.request_ids)} ({skip.kind}): "
                 f"{skip.reason}")  # fmt: skip
        await self._send([skipped_event(skip)])

    def _request(self, record: ConsumerRecord[bytes, bytes]) -> RetrainRequest | None:
        try:
            value = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict) or value.get("event") != "retrain_requested":
            return None
        source_id = SourceRef(self.topic, record.partition, record.offset).event_id()
        errors = sorted(self._validator.iter_errors(value), key=str)
        if errors:
            self.say(f"ignored the retrain request at {source_id}: it does not match "
                     f"model.events.v1 ({errors[0].message})")  # fmt: skip
            return None
        return parse_request(value, source_id)

    async def _loop(self, stop: asyncio.Event, abandon: asyncio.Event) -> None:
        read: dict[int, int] = {}
        committed: dict[int, int] = {}
        task: asyncio.Task[None] | None = None
        idle_since = time.monotonic()
        first_waiting: float | None = None
        while not abandon.is_set() and not (stop.is_set() and task is None):
            # Polled while stopping too: the group keeps this member, and requests read
            # now wait, uncommitted, for the next start.
            batches = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            arrived = False
            for tp, records in batches.items():
                for record in records:
                    read[tp.partition] = record.offset + 1
                    request = self._request(record)
                    if request is None:
                        continue
                    arrived = True
                    self.summary.requests += 1
                    skip = self.schedule.admit(request, (tp.partition, record.offset))
                    if skip is not None:
                        await self._skip(skip)
                    elif first_waiting is None:
                        first_waiting = time.monotonic()
            if batches:
                idle_since = time.monotonic()
            if task is not None and task.done():
                await task  # a failure that is not the data's ends the job, uncommitted
                task, idle_since = None, time.monotonic()
            settled = not arrived or (
                first_waiting is not None
                and time.monotonic() - first_waiting >= self.options.settle_s
            )
            if task is None and not stop.is_set() and settled:
                skips, due = self.schedule.take_due(time.time())
                for skip in skips:
                    await self._skip(skip)
                if due is not None:
                    first_waiting = None
                    task = asyncio.create_task(self._retrain(due))
            committed = await self._commit(read, committed)
            if (
                self.options.once
                and task is None
                and time.monotonic() - idle_since >= self.options.idle_exit_s
            ):
                break
        if task is not None and not task.done():
            self.say("abandoned the retrain in progress; its requests stay uncommitted")

    async def _commit(self, read: dict[int, int], committed: dict[int, int]) -> dict[int, int]:
        offsets = commit_offsets(read, self.schedule.unhandled())
        changed = {p: o for p, o in offsets.items() if committed.get(p) != o}
        if not changed:
            return committed
        try:
            await self.consumer.commit(
                {TopicPartition(self.topic, p): o for p, o in changed.items()}
            )
        except CommitFailedError as exc:  # partitions moved to another retrain job
            self.say(f"offsets not committed ({exc}); the new owner answers those requests")
            return committed
        return {**committed, **changed}

    async def _retrain(self, requests: tuple[RetrainRequest, ...]) -> None:
        name = requests[0].model
        history = retrain_history(self.registry, name)
        started_at = time.time()
        try:
            skip = await self._train(requests, started_at)
        except ModelError as exc:
            skip = Skip(name, requests, "training_failed", str(exc))
            history = dataclasses.replace(history, last_started=started_at)
        else:
            if skip is None:
                history = retrain_history(self.registry, name)
        finally:
            self.schedule.finished(name, history)
        if skip is not None:
            await self._skip(skip)

    async def _train(self, requests: tuple[RetrainRequest, ...], started_at: float) -> Skip | None:
        """Read, train, register, write the records; a Skip where the data cannot train."""
        name, mode = requests[0].model, requests[0].mode
        options, training = self.options, self.options.training
        telemetry = await read_recent_telemetry(
            self.settings, mode, lookback_s=options.lookback_s,
            max_samples=training.max_samples, now=started_at,
        )  # fmt: skip
        where = f"{self.settings.topics.link} in the last {options.lookback_s:.0f} s"
        if not telemetry.samples:
            msg = (
                f"no {mode} link telemetry on {where} ({telemetry.messages} messages read, "
                f"{telemetry.refused} refused, {telemetry.other_mode} samples of other modes); "
                "check that producers write there, or look further back with --lookback"
            )
            return Skip(name, requests, "no_data", msg)
        try:
            data = prepare_recent(
                recent_links(telemetry.samples), mode, max_samples=training.max_samples,
                holdout=training.holdout, validation=training.validation,
            )  # fmt: skip
        except ModelError as exc:
            return Skip(name, requests, "not_enough_data", f"{where}: {exc}")
        active = self.registry.active(name)
        ids = list(dict.fromkeys(r.request_id for r in requests))
        self.say(
            f"{name}: retraining for {len(ids)} request(s) on {len(data.links)} links, "
            f"{data.samples} samples, {utc(data.start)} to {utc(data.end)}"
        )
        telemetry_detail = {
            "topic": self.settings.topics.link,
            "lookback_s": options.lookback_s,
            "messages": telemetry.messages,
            "refused": telemetry.refused,
            "other_mode_samples": telemetry.other_mode,
        }
        training_detail = {
            "epochs": training.epochs,
            "units": list(training.units or MODE_CONFIGS[mode].units),
            "synthetic_links": training.synthetic_links,
            "seed": training.seed,
        }
        version = active.version if active is not None else requests[-1].version
        await self._send([started_event(requests, version, data, telemetry_detail,
                                        training_detail)])  # fmt: skip
        self.summary.retrains += 1

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            self.say(f"{name}: epoch {epoch}  loss {logs.get('loss', float('nan')):.5f}  "
                     f"val_loss {logs.get('val_loss', float('nan')):.5f}")  # fmt: skip

        report = await _in_thread(
            lambda: retrain(self.registry, requests, data, training, on_epoch=on_epoch)
        )
        if report.activated:
            self.summary.activated += 1
        else:
            self.summary.rejected += 1
        verdict = "activated" if report.activated else "registered, not activated"
        self.say(f"{name}: v{report.version.version} {verdict}: {report.reason}")
        await self._send(outcome_events(report))
        return None


async def run_retrain_job(
    settings: Settings, options: RetrainJobOptions, say: Callable[[str], None]
) -> JobSummary:
    """Run until idle (``once``) or until SIGINT/SIGTERM; a second signal abandons a
    retrain in progress (its requests stay uncommitted and are answered next time)."""
    stop, abandon = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            abandon.set()
            return
        stop.set()
        say("stopping: a retrain in progress finishes first (signal again to abandon it)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await RetrainJob(settings, options, say).run(stop, abandon)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
