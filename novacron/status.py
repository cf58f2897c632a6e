"""``novacron status``: a running deployment at a glance, from the broker and /metrics.

From the broker: the consumer group's state and members (the workers), the input
partitions each owns, the group's lag on every partition, how fast each topic grows
(messages written per second in, records per second out) and the dead letters of the
last minute by kind. From each worker's ``/metrics``: samples accepted and records sent
per second, and the model versions it serves. Rates need two looks, ``interval``
seconds apart; ``--watch`` keeps looking and redraws like ``top``.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from agents.group import GroupInspector, GroupView
from agents.settings import Settings
from streams.topics import INPUT_ROLES, roles

DLQ_WINDOW_S = 60.0
"""Dead letters are counted over this many seconds before the look."""

DLQ_READ_CAP = 10_000
"""At most this many dead letters are read per look to sort them by kind."""


@dataclass(slots=True)
class WorkerScrape:
    """One worker's ``/metrics`` at one look: ``values[(name, labels)]``, or the error."""

    url: str
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    error: str | None = None

    def total(self, metric: str, /, **match: str) -> float:
        """The sum of ``metric`` over the series whose labels include ``match``."""
        return sum(
            value
            for (name, labels), value in self.values.items()
            if name == metric and all((k, v) in labels for k, v in match.items())
        )

    def models(self) -> list[str]:
        """``role=name:version`` for each model the worker serves."""
        found = []
        for (metric, labels), value in self.values.items():
            if metric == "novacron_model_info" and value == 1:
                d = dict(labels)
                found.append(f"{d['role']}={d['name']}:{d['version']}")
        return sorted(found)


@dataclass(slots=True)
class Look:
    """Everything one look saw."""

    at: float
    group: GroupView
    ends: dict[str, int]
    """Per topic, the sum of its partitions' end offsets (messages ever written)."""
    dead_letters: Counter[str]
    """The dead letters of the last :data:`DLQ_WINDOW_S` seconds, by error kind."""
    workers: list[WorkerScrape]


def scrape(url: str, timeout_s: float = 3.0) -> WorkerScrape:
    """Read and parse one worker's Prometheus text exposition."""
    out = WorkerScrape(url)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            text = response.read().decode("utf-8")
    except OSError as exc:
        out.error = f"unreachable: {exc}"
        return out
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def look(settings: Settings, inspector: GroupInspector, metrics_urls: Sequence[str]) -> Look:
    """One look at the broker and the workers."""
    topics = settings.topics
    inputs = [topics.name(role) for role in INPUT_ROLES]
    group = await inspector.describe(settings.app_id, inputs)
    every = await inspector.partitions_of(topics.kafka_topics())
    ends: dict[str, int] = {}
    for tp, end in (await inspector.end_offsets(every)).items():
        ends[tp.topic] = ends.get(tp.topic, 0) + end
    dlq = [tp for tp in every if tp.topic == topics.dlq]
    since_ms = int((time.time() - DLQ_WINDOW_S) * 1000)
    dead = _dead_letter_kinds(await inspector.read_since(dlq, since_ms, DLQ_READ_CAP))
    workers = await asyncio.gather(*(asyncio.to_thread(scrape, url) for url in metrics_urls))
    return Look(time.time(), group, ends, dead, list(workers))


def _dead_letter_kinds(values: list[bytes]) -> Counter[str]:
    """Dead letters by ``error_kind`` (``unreadable`` for a record without one)."""
    kinds: Counter[str] = Counter()
    for value in values:
        try:
            kinds[str(orjson.loads(value or b"{}")["error_kind"])] += 1
        except (orjson.JSONDecodeError, KeyError, TypeError):
            kinds["unreadable"] += 1
    return kinds


def render(settings: Settings, before: Look, now: Look) -> Group:
    """The status tables from two looks (rates are their differences)."""
    dt = max(now.at - before.at, 1e-6)
    topics = settings.topics
    group = now.group
    head = Table(title=f"consumer group {group.group}", show_header=False, title_justify="left")
    head.add_row("state", group.state)
    head.add_row("workers (members)", str(len(group.members)))
    total_lag = sum(p.lag for p in group.partitions)
    head.add_row("lag, all input partitions", f"{total_lag:,} messages")
    dead = sum(now.dead_letters.values())
    kinds = ", ".join(f"{k} {n}" for k, n in now.dead_letters.most_common())
    head.add_row(
        f"dead letters, last {DLQ_WINDOW_S:.0f} s", f"{dead}" + (f" ({kinds})" if kinds else "")
    )

    parts = Table(title="input partitions", title_justify="left")
    for col in ("topic", "partition", "worker", "committed", "end", "lag", "consumed/s"):
        parts.add_column(col, justify="left" if col in ("topic", "worker") else "right")
    earlier = {(p.topic, p.partition): p for p in before.group.partitions}
    for p in group.partitions:
        owner = group.owner(p.topic, p.partition)
        was = earlier.get((p.topic, p.partition))
        rate = ""
        if was is not None and was.committed is not None and p.committed is not None:
            rate = f"{(p.committed - was.committed) / dt:,.0f}"
        parts.add_row(
            p.topic,
            str(p.partition),
            f"{owner.client_id}@{owner.host}" if owner else "-",
            "-" if p.committed is None else f"{p.committed:,}",
            f"{p.end:,}",
            f"{p.lag:,}",
            rate,
        )

    flows = Table(title="topics", title_justify="left")
    for col in ("topic", "direction", "messages/s", "total"):
        flows.add_column(col, justify="left" if col in ("topic", "direction") else "right")
    for role in roles():
        if role == "scores":
            continue
        name = topics.name(role)
        if name not in now.ends:
            continue
        per_s = (now.ends[name] - before.ends.get(name, now.ends[name])) / dt
        direction = "in" if role in INPUT_ROLES else "out"
        flows.add_row(name, direction, f"{per_s:,.1f}", f"{now.ends[name]:,}")

    workers = Table(title="workers (/metrics)", title_justify="left")
    for col in ("metrics", "samples in/s", "records out/s", "dead letters", "models served"):
        workers.add_column(col, justify="left" if col in ("metrics", "models served") else "right")
    earlier_scrapes = {w.url: w for w in before.workers}
    for w in now.workers:
        if w.error is not None:
            workers.add_row(w.url, "-", "-", "-", f"[red]{w.error}[/]")
            continue
        was_w = earlier_scrapes.get(w.url)
        samples = records = ""
        if was_w is not None and was_w.error is None:
            samples = f"{_per_s(w, was_w, 'novacron_events_in_total', dt):,.0f}"
            records = f"{_per_s(w, was_w, 'novacron_events_out_total', dt):,.0f}"
        workers.add_row(
            w.url,
            samples,
            records,
            f"{w.total('novacron_dead_letters_total'):,.0f}",
            "\n".join(w.models()) or "-",
        )
    return Group(head, parts, flows, workers)


def _per_s(now: WorkerScrape, before: WorkerScrape, name: str, dt: float) -> float:
    return (now.total(name) - before.total(name)) / dt


def default_metrics_url(settings: Settings) -> str:
    """The local worker's ``/metrics`` (the settings' web host and port)."""
    return f"http://{settings.web_host}:{settings.web_port}/metrics"


async def run_status(
    settings: Settings,
    console: Console,
    *,
    metrics_urls: Sequence[str],
    interval_s: float,
    watch: bool,
) -> None:
    """Print the status once (two looks ``interval_s`` apart), or redraw it until
    interrupted with ``watch``."""
    inspector = GroupInspector(settings)
    await inspector.start()
    try:
        before = await look(settings, inspector, metrics_urls)
        await asyncio.sleep(interval_s)
        now = await look(settings, inspector, metrics_urls)
        if not watch:
            console.print(render(settings, before, now))
            return
        with Live(render(settings, before, now), console=console, screen=False) as live:
            while True:
                await asyncio.sleep(interval_s)
                before, now = now, await look(settings, inspector, metrics_urls)
                live.update(render(settings, before, now))
    finally:
        await inspector.stop()
