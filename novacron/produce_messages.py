"""The messages ``novacron produce`` sends: its options and the pure message generator.

:func:`iter_messages` builds every message (keys, JSON values, bad ones) from
:class:`ProduceOptions` without a broker, so tests can read it;
:func:`novacron.produce.produce` only paces it and sends.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from models.synthetic import LinkTrafficSource
from models.synthetic_hosts import HOST_METRICS, HostTrafficSource
from streams.errors import ConfigError
from streams.records import MODES

from .produce_samples import (
    BAD_KINDS,
    Stream,
    corrupt,
    envelope,
    host_sample_dict,
    link_sample_dict,
)

__all__ = [
    "DEFAULT_START_TS",
    "OutgoingMessage",
    "ProduceOptions",
    "iter_host_messages",
    "iter_link_messages",
    "iter_messages",
]

DEFAULT_START_TS = 1_700_000_000.0
"""First event time of simulated mode when no ``start_ts`` is given (2023-11-14 UTC)."""

_EVENT_ID_PREFIX = re.compile(r"^[A-Za-z0-9._:/@+=-]{1,64}$")
_HOST_PROFILE_CYCLE = ("web", "database", "batch", "web", "idle")


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
        _require_choice("mode", self.mode, (*MODES, "mixed"))
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
                entity.stream, key, corrupt(entity.stream, samples, kind), size, kind
            )
        else:
            yield OutgoingMessage(entity.stream, key, orjson.dumps(envelope(samples)), size)
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


def run_prefix(prefix: str) -> str:
    """An event id prefix of its own for one producer run: ``prefix`` and the run's start
    (UTC, to the millisecond), so that ids never repeat across runs.

    Examples:
        >>> prefix = run_prefix("demo")
        >>> prefix.startswith("demo-"), len(prefix)
        (True, 23)
    """
    now = time.time()
    return (
        f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}{int(now * 1000) % 1000:03d}"
    )
