"""``novacron produce``: synthetic link and host telemetry onto Kafka.

Messages come from the pure generator
:func:`novacron.produce_messages.iter_messages` (which tests can read without a
broker); :func:`produce` only paces it and sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from agents.connections import kafka_options
from agents.settings import Settings
from streams.errors import StackError

from .produce_messages import OutgoingMessage, ProduceOptions, iter_messages

__all__ = [
    "ProduceReport",
    "produce",
]


@dataclass(frozen=True)
class ProduceReport:
    """What :func:`produce` sent.

    Attributes:
        messages: messages sent, bad ones included.
        samples: samples in the valid messages.
        bad_messages: messages replaced by a bad one.
        messages_per_topic: messages sent per topic name.
        samples_per_topic: valid samples sent per topic name.
        elapsed_s: wall-clock seconds from the first send to the last acknowledgement.
        achieved_rate: sample slots (valid and bad) per second of ``elapsed_s``.
    """

    messages: int = 0
    samples: int = 0
    bad_messages: int = 0
    messages_per_topic: Mapping[str, int] = field(default_factory=dict)
    samples_per_topic: Mapping[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    achieved_rate: float = 0.0


class _Tally:
    def __init__(self) -> None:
        self.messages = 0
        self.samples = 0
        self.slots = 0
        self.bad = 0
        self.messages_per_topic: dict[str, int] = {}
        self.samples_per_topic: dict[str, int] = {}

    def add(self, topic: str, message: OutgoingMessage) -> None:
        self.messages += 1
        self.slots += message.samples
        self.messages_per_topic[topic] = self.messages_per_topic.get(topic, 0) + 1
        if message.bad_kind is None:
            self.samples += message.samples
            self.samples_per_topic[topic] = self.samples_per_topic.get(topic, 0) + message.samples
        else:
            self.bad += 1

    def report(self, elapsed_s: float) -> ProduceReport:
        return ProduceReport(
            messages=self.messages,
            samples=self.samples,
            bad_messages=self.bad,
            messages_per_topic=dict(self.messages_per_topic),
            samples_per_topic=dict(self.samples_per_topic),
            elapsed_s=elapsed_s,
            achieved_rate=self.slots / elapsed_s if elapsed_s > 0 else 0.0,
        )


async def produce(
    settings: Settings,
    options: ProduceOptions,
    *,
    on_progress: Callable[[ProduceReport], None] | None = None,
    progress_every_s: float = 0.25,
    stop: asyncio.Event | None = None,
) -> ProduceReport:
    """Send synthetic telemetry to ``settings.topics.link`` and ``.host``.

    Messages are paced to ``options.rate`` samples per second by sleeping to a
    schedule (a late sender catches up rather than drifting). Runs until
    ``count`` or ``duration_s`` is reached, ``stop`` is set, or the task is
    cancelled (cancellation stops the producer and propagates).

    Args:
        settings: where to send.
        options: what to send.
        on_progress: called with the running totals every ``progress_every_s``
            and once at the end.
        progress_every_s: seconds between progress calls.
        stop: set it to end the run gracefully and get the report.

    Raises:
        StackError: the broker cannot be reached.
    """
    topics = {"link": settings.topics.link, "host": settings.topics.host}
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="novacron-produce",
        **kafka_options(settings),
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        msg = (
            f"cannot reach Kafka at {settings.bootstrap_servers!r} ({exc}); run `novacron stack up`"
        )
        raise StackError(msg) from exc

    loop = asyncio.get_running_loop()
    tally = _Tally()
    pending: list[asyncio.Future[Any]] = []
    t0 = loop.time()
    last_progress = t0
    try:
        messages = iter_messages(options)

        def finished() -> bool:
            over = options.duration_s is not None and loop.time() - t0 >= options.duration_s
            return over or (stop is not None and stop.is_set())

        while not finished():
            if options.rate is not None:
                wait_s = t0 + tally.slots / options.rate - loop.time()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                    if finished():
                        break
            # built after the wait, so that live timestamps are the send time
            message = next(messages, None)
            if message is None:
                break
            topic = topics[message.stream]
            pending.append(await producer.send(topic, message.value, key=message.key))
            tally.add(topic, message)
            if options.rate is None and tally.messages % 256 == 0:
                await asyncio.sleep(0)  # unpaced: still let other tasks (and `stop`) run
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
            if on_progress is not None and loop.time() - last_progress >= progress_every_s:
                last_progress = loop.time()
                on_progress(tally.report(last_progress - t0))
        await producer.flush()
        await asyncio.gather(*pending)
    except KafkaError as exc:
        msg = f"sending to Kafka at {settings.bootstrap_servers!r} failed: {exc}"
        raise StackError(msg) from exc
    finally:
        await producer.stop()
    report = tally.report(loop.time() - t0)
    if on_progress is not None:
        on_progress(report)
    return report
