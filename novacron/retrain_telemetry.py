"""The link telemetry a retrain trains on, read from the link topic.

Each partition is read from the first record at or after ``now - lookback`` (Kafka
record time, ``offsets_for_times``) to its end offset when the read starts, decoded and
validated by the worker's own decoder (refused messages are counted and skipped).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from agents.connections import kafka_options
from agents.settings import Settings
from streams.codec import decode_link
from streams.errors import StackError
from streams.records import LinkSample, SourceRef

STALL_S = 30.0
"""A read that gets nothing for this long while behind its end offsets fails."""


@dataclass(frozen=True, slots=True)
class RecentTelemetry:
    """Link samples of one mode read from the link topic, and what was left out."""

    samples: list[LinkSample]
    messages: int
    refused: int
    other_mode: int


async def read_recent_telemetry(
    settings: Settings, mode: str, *, lookback_s: float, max_samples: int, now: float
) -> RecentTelemetry:
    """Each partition from the first record at or after ``now - lookback_s`` (Kafka
    record time) to its end offset when the read starts, at most ``max_samples``
    messages in all (the newest), keeping accepted samples of ``mode``."""
    topic = settings.topics.link
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.bootstrap_servers, group_id=None,
        enable_auto_commit=False, client_id="novacron-retrain-telemetry",
        **kafka_options(settings),
    )  # fmt: skip
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        msg = f"cannot reach Kafka at {settings.bootstrap_servers!r} ({exc}); is the stack up?"
        raise StackError(msg) from exc
    # Per partition the newest max_samples at most: memory stays bounded however many
    # samples the messages batch, and the core keeps the newest over all links.
    kept: dict[int, deque[LinkSample]] = {}
    messages = refused = other_mode = 0
    try:
        partitions = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        since = await consumer.offsets_for_times(
            dict.fromkeys(partitions, int((now - lookback_s) * 1000))
        )
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        starts = {tp: ends[tp] if since.get(tp) is None else since[tp].offset for tp in partitions}
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        if total > max_samples:  # the newest messages, each partition its share
            starts = {
                tp: ends[tp] - (ends[tp] - starts[tp]) * max_samples // total for tp in partitions
            }
        remaining = {tp for tp in partitions if starts[tp] < ends[tp]}
        for tp in remaining:
            consumer.seek(tp, starts[tp])
        last_progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            if batches:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_S:
                msg = f"reading {topic} from the broker stalled for {STALL_S:.0f} s; retry later"
                raise StackError(msg)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    messages += 1
                    key = record.key.decode("utf-8", "replace") if record.key else None
                    source = SourceRef(topic, tp.partition, record.offset, key)
                    accepted, dead = decode_link(record.value or b"", source)
                    refused += len(dead)
                    for sample in accepted:
                        if sample.mode == mode:
                            kept.setdefault(tp.partition, deque(maxlen=max_samples)).append(sample)
                        else:
                            other_mode += 1
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    except KafkaError as exc:
        msg = f"reading {topic} from Kafka at {settings.bootstrap_servers!r} failed: {exc}"
        raise StackError(msg) from exc
    finally:
        await consumer.stop()
    samples = [sample for partition in sorted(kept) for sample in kept[partition]]
    return RecentTelemetry(samples, messages, refused, other_mode)
