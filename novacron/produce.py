"""``novacron produce``: synthetic link and host telemetry onto Kafka.

Message building is a pure generator (:func:`iter_messages`) that tests can
read without a broker; :func:`produce` only paces it and sends.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from models.synthetic import (
    HOST_METRICS,
    LINK_COLUMNS,
    HostTrafficSource,
    LinkTrafficSource,
)
from novacron.errors import ConfigError, StackError
from novacron.settings import Settings

__all__ = [
    "BAD_KINDS",
    "DEFAULT_START_TS",
    "OutgoingMessage",
    "ProduceOptions",
    "ProduceReport",
    "host_sample_dict",
    "iter_host_messages",
    "iter_link_messages",
    "iter_messages",
    "link_sample_dict",
    "produce",
]

BAD_KINDS: tuple[str, ...] = (
    "malformed_json",
    "wrong_type",
    "missing_field",
    "nan_literal",
    "negative_value",
    "absurd_value",
    "unknown_schema_version",
)
"""Kinds of bad message, in the order :func:`iter_messages` cycles through them."""

DEFAULT_START_TS = 1_700_000_000.0
"""First event time of simulated mode when no ``start_ts`` is given (2023-11-14 UTC)."""

_EVENT_ID_PREFIX = re.compile(r"^[A-Za-z0-9._:/@+=-]{1,64}$")
_NAN_PLACEHOLDER = "__novacron_nan__"
_HOST_PROFILE_CYCLE = ("web", "database", "batch", "web", "idle")
Stream = Literal["link", "host"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, name: str, expected: str, value: object) -> None:
    if not ok:
        msg = f"The {name!r} parameter of ProduceOptions must be {expected}. Got {value!r} instead."
        raise ConfigError(msg)


def _require_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    allowed = "{" + ", ".join(repr(c) for c in sorted(choices)) + "}"
    _require(value in choices, name, f"one of {allowed}", value)


@dataclass(frozen=True)
class ProduceOptions:
    """What ``novacron produce`` sends.

    Attributes:
        rate: samples per second over all entities; None sends as fast as possible.
        links: number of links (``link-0000`` ...).
        hosts: number of hosts (``host-0000`` ...).
        duration_s: stop after this many wall-clock seconds; None runs on.
        count: stop after this many sample slots (a bad message fills the
            slots of the message it replaced); None runs on.
        seed: seed of the synthetic series and of the bad-message draw.
        batch_size: samples per message; 1 sends single-sample messages,
            more sends ``{"samples": [...]}``.
        mode: ``'datacenter'``, ``'internet'`` or ``'mixed'`` (even links
            datacenter, odd internet).
        bad_fraction: fraction of messages replaced by a bad one, cycling
            through :data:`BAD_KINDS`.
        event_id_prefix: samples carry ``"{prefix}-{entity}-{seq}"``; None sends no event_id.
        time_mode: ``'live'`` (ts is the wall clock at send) or
            ``'simulated'`` (ts = start_ts + i * step_s per entity).
        start_ts: first event time in simulated mode (default :data:`DEFAULT_START_TS`).
        step_s: seconds between one entity's samples in simulated mode; in live
            mode the spacing follows from ``rate`` and the number of entities.
    """

    rate: float | None = 100.0
    links: int = 4
    hosts: int = 2
    duration_s: float | None = None
    count: int | None = None
    seed: int | None = 0
    batch_size: int = 1
    mode: str = "mixed"
    bad_fraction: float = 0.0
    event_id_prefix: str | None = "p"
    time_mode: str = "live"
    start_ts: float | None = None
    step_s: float = 1.0

    def __post_init__(self) -> None:
        rate = self.rate
        _require(
            rate is None or (math.isfinite(rate) and rate > 0), "rate", "a float > 0 or None", rate
        )
        for name in ("links", "hosts"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 0, name, "an int >= 0", value)
        _require(self.links + self.hosts > 0, "links", "> 0 when 'hosts' is 0", self.links)
        duration = self.duration_s
        _require(duration is None or duration > 0, "duration_s", "a float > 0 or None", duration)
        count = self.count
        _require(
            count is None or (_is_int(count) and count >= 1), "count", "an int >= 1 or None", count
        )
        size = self.batch_size
        _require(_is_int(size) and 1 <= size <= 10_000, "batch_size", "an int in [1, 10000]", size)
        _require_choice("mode", self.mode, ("datacenter", "internet", "mixed"))
        bad = self.bad_fraction
        _require(0.0 <= bad <= 1.0, "bad_fraction", "a float in [0, 1]", bad)
        prefix = self.event_id_prefix
        _require(
            prefix is None or _EVENT_ID_PREFIX.match(prefix) is not None,
            "event_id_prefix", "1-64 characters of [A-Za-z0-9._:/@+=-] or None", prefix,
        )  # fmt: skip
        _require_choice("time_mode", self.time_mode, ("live", "simulated"))
        step = self.step_s
        _require(math.isfinite(step) and step > 0, "step_s", "a float > 0", step)

    def link_mode(self, index: int) -> str:
        """The mode of link number ``index``."""
        if self.mode == "mixed":
            return "datacenter" if index % 2 == 0 else "internet"
        return self.mode

    def sample_spacing_s(self) -> float:
        """Seconds between two samples of one entity."""
        if self.time_mode == "live" and self.rate is not None:
            return (self.links + self.hosts) / self.rate
        return self.step_s


@dataclass(frozen=True)
class OutgoingMessage:
    """One Kafka message ready to send."""

    stream: Stream
    key: bytes
    value: bytes
    samples: int
    bad_kind: str | None = None


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


# --------------------------------------------------------------------------- sample dicts


def _r4(value: float) -> float:
    return round(float(value), 4)


def link_sample_dict(
    link_id: str, ts: float, mode: str, row: Sequence[float] | np.ndarray,
    event_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One ``telemetry.link.v1`` sample with all five measures, rounded to 4 decimals.

    Examples:
        >>> link_sample_dict("link-0001", 1700000000.0, "internet",
        ...                  [812.41234, 85.2, 0.123456, 4.1, 700.0], event_id="p-link-0001-0")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'link_id': 'link-0001', 'ts': 1700000000.0, 'mode': 'internet',
         'bandwidth_mbps': 812.4123, 'latency_ms': 85.2, 'packet_loss_pct': 0.1235,
         'jitter_ms': 4.1, 'throughput_mbps': 700.0, 'event_id': 'p-link-0001-0'}
    """
    sample: dict[str, Any] = {"link_id": link_id, "ts": round(float(ts), 3), "mode": mode}
    sample.update({name: _r4(v) for name, v in zip(LINK_COLUMNS, row, strict=True)})
    if event_id is not None:
        sample["event_id"] = event_id
    return sample


def host_sample_dict(
    host_id: str, ts: float, metrics: Mapping[str, float], *,
    cluster: str | None = None, event_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One ``telemetry.host.v1`` sample, metric values rounded to 4 decimals.

    Examples:
        >>> host_sample_dict("host-0000", 1700000000.0, {"cpu_pct": 41.23456}, cluster="c-00")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'host_id': 'host-0000', 'ts': 1700000000.0, 'metrics': {'cpu_pct': 41.2346},
         'cluster': 'c-00'}
    """
    sample: dict[str, Any] = {
        "host_id": host_id,
        "ts": round(float(ts), 3),
        "metrics": {k: _r4(v) for k, v in metrics.items()},
    }
    if cluster is not None:
        sample["cluster"] = cluster
    if event_id is not None:
        sample["event_id"] = event_id
    return sample


# --------------------------------------------------------------------------- bad messages


def _corrupt(stream: Stream, samples: list[dict[str, Any]], kind: str) -> bytes:
    """A message built from ``samples`` and made invalid in the way ``kind`` names."""
    first = samples[0]
    if kind == "wrong_type":
        if stream == "link":
            first["bandwidth_mbps"] = "fast"
        else:
            first["metrics"]["cpu_pct"] = "high"
    elif kind == "missing_field":
        del first["ts"]
    elif kind == "nan_literal":
        if stream == "link":
            first["latency_ms"] = _NAN_PLACEHOLDER
        else:
            first["metrics"]["cpu_pct"] = _NAN_PLACEHOLDER
    elif kind == "negative_value":
        # a negative host metric passes the open schema; the worker refuses it as invalid_value
        if stream == "link":
            first["latency_ms"] = -5.0
        else:
            first["metrics"]["cpu_pct"] = -5.0
    elif kind == "absurd_value":
        if stream == "link":
            first["bandwidth_mbps"] = 1e9
        else:
            first["metrics"]["cpu_pct"] = 1e15
    version = 99 if kind == "unknown_schema_version" else 1
    raw = orjson.dumps(_envelope(samples, schema_version=version))
    if kind == "nan_literal":
        raw = raw.replace(orjson.dumps(_NAN_PLACEHOLDER), b"NaN")
    elif kind == "malformed_json":
        raw = raw[: max(1, len(raw) * 2 // 3)]  # cut mid-message, as a crashed writer would
    return raw


def _envelope(samples: list[dict[str, Any]], *, schema_version: int = 1) -> dict[str, Any]:
    if len(samples) == 1:
        return {**samples[0], "schema_version": schema_version}
    return {"schema_version": schema_version, "samples": samples}


# --------------------------------------------------------------------------- generator


@dataclass
class _Entity:
    stream: Stream
    entity_id: str
    source: LinkTrafficSource | HostTrafficSource
    mode: str | None = None
    cluster: str | None = None
    seq: int = 0


def _entities(options: ProduceOptions, seeds: list[np.random.SeedSequence]) -> list[_Entity]:
    spacing = options.sample_spacing_s()
    start = options.start_ts if options.time_mode == "simulated" else None
    start = DEFAULT_START_TS if options.time_mode == "simulated" and start is None else start
    out: list[_Entity] = []
    for i in range(options.links):
        mode = options.link_mode(i)
        rng = np.random.default_rng(seeds[i])
        src = LinkTrafficSource(mode, step_s=spacing, rng=rng, start_ts=start, chunk_size=1024)
        out.append(_Entity("link", f"link-{i:04d}", src, mode=mode))
    for j in range(options.hosts):
        rng = np.random.default_rng(seeds[options.links + j])
        profile = _HOST_PROFILE_CYCLE[j % len(_HOST_PROFILE_CYCLE)]
        hsrc = HostTrafficSource(
            step_s=spacing, rng=rng, profile=profile, start_ts=start, chunk_size=1024
        )
        out.append(_Entity("host", f"host-{j:04d}", hsrc, cluster=f"cluster-{j // 8:02d}"))
    return out


def iter_messages(
    options: ProduceOptions, *, clock: Callable[[], float] | None = None
) -> Iterator[OutgoingMessage]:
    """The messages ``produce`` sends, in order, without Kafka.

    Entities take turns (all links, then all hosts), one message each. The
    iterator ends when ``options.count`` sample slots are filled, or never.

    Args:
        options: what to generate; ``rate`` and ``duration_s`` are ignored here.
        clock: epoch seconds now, for live mode (``time.time`` when None).

    Examples:
        >>> opts = ProduceOptions(links=1, hosts=1, count=3, time_mode="simulated", seed=5)
        >>> [(m.stream, m.key, m.samples) for m in iter_messages(opts)]
        [('link', b'link-0000', 1), ('host', b'host-0000', 1), ('link', b'link-0000', 1)]
    """
    now = clock or time.time
    seeds = np.random.SeedSequence(options.seed).spawn(options.links + options.hosts + 1)
    entities = _entities(options, seeds)
    bad_rng = np.random.default_rng(seeds[-1])
    bad_kinds = itertools.cycle(BAD_KINDS)
    spacing = options.sample_spacing_s()
    start = DEFAULT_START_TS if options.start_ts is None else options.start_ts
    left = options.count
    for entity in itertools.cycle(entities):
        size = options.batch_size if left is None else min(options.batch_size, left)
        if size <= 0:
            return
        wall = now() if options.time_mode == "live" else 0.0
        samples = []
        for k in range(size):
            if options.time_mode == "live":
                ts = wall - (size - 1 - k) * spacing
            else:
                ts = start + entity.seq * spacing
            event_id = (
                None
                if options.event_id_prefix is None
                else f"{options.event_id_prefix}-{entity.entity_id}-{entity.seq}"
            )
            row = next(entity.source)
            if entity.stream == "link":
                assert entity.mode is not None
                samples.append(link_sample_dict(entity.entity_id, ts, entity.mode, row, event_id))
            else:
                metrics = dict(zip(HOST_METRICS, row.tolist(), strict=True))
                samples.append(
                    host_sample_dict(
                        entity.entity_id, ts, metrics, cluster=entity.cluster, event_id=event_id
                    )
                )
            entity.seq += 1
        key = entity.entity_id.encode()
        if options.bad_fraction > 0 and bad_rng.random() < options.bad_fraction:
            kind = next(bad_kinds)
            yield OutgoingMessage(
                entity.stream, key, _corrupt(entity.stream, samples, kind), size, kind
            )
        else:
            yield OutgoingMessage(entity.stream, key, orjson.dumps(_envelope(samples)), size)
        if left is not None:
            left -= size
    return  # pragma: no cover - cycle over a non-empty list never ends


def iter_link_messages(
    links: int = 4,
    *,
    mode: str = "mixed",
    batch_size: int = 1,
    seed: int | None = 0,
    bad_fraction: float = 0.0,
    event_id_prefix: str | None = "p",
    time_mode: str = "simulated",
    start_ts: float | None = None,
    step_s: float = 1.0,
    count: int | None = None,
    clock: Callable[[], float] | None = None,
) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` pairs of link telemetry, as :func:`produce` sends them.

    Examples:
        >>> key, value = next(iter_link_messages(2, mode="internet", seed=1))
        >>> key, sorted(orjson.loads(value))[:3]
        (b'link-0000', ['bandwidth_mbps', 'event_id', 'jitter_ms'])
    """
    options = ProduceOptions(
        rate=None, links=links, hosts=0, seed=seed, batch_size=batch_size, mode=mode,
        bad_fraction=bad_fraction, event_id_prefix=event_id_prefix, time_mode=time_mode,
        start_ts=start_ts, step_s=step_s, count=count,
    )  # fmt: skip
    for message in iter_messages(options, clock=clock):
        yield message.key, message.value


def iter_host_messages(
    hosts: int = 2,
    *,
    batch_size: int = 1,
    seed: int | None = 0,
    bad_fraction: float = 0.0,
    event_id_prefix: str | None = "p",
    time_mode: str = "simulated",
    start_ts: float | None = None,
    step_s: float = 60.0,
    count: int | None = None,
    clock: Callable[[], float] | None = None,
) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` pairs of host telemetry, as :func:`produce` sends them."""
    options = ProduceOptions(
        rate=None, links=0, hosts=hosts, seed=seed, batch_size=batch_size,
        bad_fraction=bad_fraction, event_id_prefix=event_id_prefix, time_mode=time_mode,
        start_ts=start_ts, step_s=step_s, count=count,
    )  # fmt: skip
    for message in iter_messages(options, clock=clock):
        yield message.key, message.value


# --------------------------------------------------------------------------- sending


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
