"""``novacron demo``: a worker and synthetic telemetry on the local stack, live.

Starts ``novacron worker`` as a child process, produces live synthetic telemetry
(with a few bad messages so the dead-letter path shows, one host that has a CPU
incident about 30 s in, so an alert opens and resolves, and a service host whose daily
CPU cycle is replayed a day every 36 s, so it is classified and scaled out before its
peak and in after it), and prints predictions, alerts, workload classes, scaling actions
and dead letters as they arrive. Ctrl-C, or ``--duration`` elapsing, stops the sending;
the demo then waits (bounded) until the consumer group has committed everything sent,
and prints a summary that accounts for every message per input topic: answered
(predicted or scored), warming up, redelivered, dead letters or still in flight, from the
worker's counters over the run, beside what reached the output topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from agents.connections import kafka_options
from agents.group import GroupInspector
from agents.settings import Settings
from agents.topics import ensure_topics
from streams.topics import INPUT_ROLES

from .produce import ProduceReport, produce
from .produce_messages import ProduceOptions, run_prefix
from .status import WorkerScrape, default_metrics_url, scrape
from .tail import format_record, line_style


@dataclass(slots=True)
class Ledger:
    """Where one input topic's messages went, from the worker's counters over the demo.

    Every message sent either was accepted (and then predicted or scored, warming up, or
    a redelivery of a sample already in the window) or went to the dead-letter topic, or
    is still in flight (the group's lag when the demo stopped waiting).
    """

    topic: str
    sent: int
    accepted: int = 0
    dead_letters: int = 0
    in_flight: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def accounted(self) -> int:
        return sum(self.outcomes.values()) + self.dead_letters + self.in_flight

    @property
    def adds_up(self) -> bool:
        return self.accounted == self.sent


@dataclass(slots=True)
class DemoSummary:
    """What the demo saw."""

    produced: ProduceReport | None = None
    predictions: int = 0
    dead_letters: int = 0
    alerts: int = 0
    alert_statuses: dict[str, int] = field(default_factory=dict)
    classes: int = 0
    actions: int = 0
    action_kinds: dict[str, int] = field(default_factory=dict)
    other_outputs: int = 0
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    host_samples_paced: int = 0
    ledgers: list[Ledger] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def adds_up(self) -> bool:
        return bool(self.ledgers) and all(ledger.adds_up for ledger in self.ledgers)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain values (``novacron demo --summary FILE``)."""
        return {
            "elapsed_s": round(self.elapsed_s, 3),
            "adds_up": self.adds_up,
            "inputs": [
                {
                    "topic": ledger.topic,
                    "sent": ledger.sent,
                    "accepted": ledger.accepted,
                    "outcomes": ledger.outcomes,
                    "dead_letters": ledger.dead_letters,
                    "in_flight": ledger.in_flight,
                    "adds_up": ledger.adds_up,
                }
                for ledger in self.ledgers
            ],
            "received": {
                "predictions": self.predictions,
                "dead_letters": self.dead_letters,
                "alerts": self.alerts,
                "alert_statuses": self.alert_statuses,
                "workload_classes": self.classes,
                "scaling_actions": self.actions,
                "action_kinds": self.action_kinds,
            },
            "notes": self.notes,
        }

    def table(self) -> Table:
        table = Table(title="NovaCron demo summary", show_header=False)
        table.add_row("elapsed", f"{self.elapsed_s:.1f} s")
        for ledger in self.ledgers:
            parts = " + ".join(
                f"{n:,} {name.replace('_', ' ')}" for name, n in ledger.outcomes.items()
            )
            sums = (
                f"{ledger.sent:,} = {parts} + {ledger.dead_letters:,} dead letters"
                f" + {ledger.in_flight:,} in flight"
            )
            mark = (
                "[green]adds up[/]"
                if ledger.adds_up
                else (f"[red]{ledger.sent - ledger.accounted:+,} unaccounted[/]")
            )
            table.add_row(f"{ledger.topic}: messages in", f"{sums}  {mark}")
        table.add_row("predictions received", f"{self.predictions:,}")
        table.add_row("dead letters received", f"{self.dead_letters:,}")
        statuses = ", ".join(f"{n} {k}" for k, n in sorted(self.alert_statuses.items()))
        table.add_row(
            "anomaly alert records", f"{self.alerts}" + (f" ({statuses})" if statuses else "")
        )
        table.add_row("workload classes", str(self.classes))
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.action_kinds.items()))
        table.add_row("scaling actions", f"{self.actions}" + (f" ({kinds})" if kinds else ""))
        if self.latencies_s:
            p50, p95, p99 = np.percentile(np.array(self.latencies_s) * 1000, [50, 95, 99])
            table.add_row(
                "end-to-end latency p50 / p95 / p99", f"{p50:.0f} / {p95:.0f} / {p99:.0f} ms"
            )
        for note in self.notes:
            table.add_row("note", note)
        return table


def start_worker(
    settings: Settings, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``novacron worker`` as a child process logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "novacron", "worker", "--loglevel", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def wait_healthy(
    settings: Settings, proc: subprocess.Popen[bytes], timeout_s: float = 90.0
) -> None:
    """Block until the worker's /healthz says ready (or it dies / times out)."""
    url = f"http://{settings.web_host}:{settings.web_port}/healthz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"the worker exited with code {proc.returncode}; see its log"
            raise RuntimeError(msg)
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        time.sleep(0.5)
    msg = f"the worker did not report ready at {url} within {timeout_s:.0f} s"
    raise RuntimeError(msg)


async def _watch(
    settings: Settings, summary: DemoSummary, console: Console, stop: asyncio.Event, since: float
) -> None:
    t = settings.topics
    consumer = AIOKafkaConsumer(
        t.predictions,
        t.dlq,
        t.alerts,
        t.scaling,
        t.workload,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="latest",
        **kafka_options(settings),
    )
    await consumer.start()
    last_shown: dict[str, float] = {}
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            now = time.time()
            for tp, messages in batches.items():
                for message in messages:
                    value = orjson.loads(message.value)
                    key = message.key.decode() if message.key else ""
                    if tp.topic == t.predictions:
                        if value["ts"] < since:
                            continue  # a backlog from before this demo, not its traffic
                        summary.predictions += 1
                        summary.latencies_s.append(now - value["ts"])
                        # One line per link every 2 s keeps the screen readable.
                        if now - last_shown.get(key, 0.0) >= 2.0:
                            last_shown[key] = now
                            console.print(
                                format_record(tp.topic, key, value), highlight=False, soft_wrap=True
                            )
                    elif tp.topic == t.dlq:
                        if value["produced_at"] < since:
                            continue
                        summary.dead_letters += 1
                        console.print(
                            format_record(tp.topic, key, value), style="yellow", highlight=False
                        )
                    else:
                        summary.other_outputs += 1
                        if tp.topic == t.alerts:
                            summary.alerts += 1
                            status = str(value.get("status"))
                            summary.alert_statuses[status] = (
                                summary.alert_statuses.get(status, 0) + 1
                            )
                        elif tp.topic == t.workload:
                            summary.classes += 1
                        elif tp.topic == t.scaling:
                            summary.actions += 1
                            kind = str(value.get("action"))
                            summary.action_kinds[kind] = summary.action_kinds.get(kind, 0) + 1
                        console.print(
                            format_record(tp.topic, key, value),
                            style=line_style(tp.topic, value),
                            highlight=False,
                            soft_wrap=True,
                        )
    finally:
        await consumer.stop()


INCIDENT_HOST = "demo-host-incident"
"""A host of the demo whose CPU spikes after its detectors have learned it."""

CAPACITY_HOST = "demo-service"
"""Prefix of the demo host whose CPU follows a daily cycle, replayed fast in event time.
Each demo run sends it under a name of its own (the prefix and the run's start time):
its event time starts three days back, so a host of an earlier run, whose stored state
is already further on in event time, would take the new run's samples as late."""


async def _paced_host(
    settings: Settings,
    stop: asyncio.Event,
    host_id: str,
    samples: Iterable[tuple[float | None, dict[str, float]]],
    rate: float,
) -> int:
    """Send a host's ``(ts, metrics)`` samples at ``rate`` samples/s until ``stop`` (a
    ``None`` time is the wall clock at sending); returns how many were sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=5, **kafka_options(settings)
    )
    await producer.start()
    sent = 0
    try:
        start = time.time()
        for i, (ts, metrics) in enumerate(samples):
            if stop.is_set():
                break
            value = {
                "host_id": host_id,
                "ts": time.time() if ts is None else ts,
                "metrics": metrics,
            }
            await producer.send(settings.topics.host, orjson.dumps(value), key=host_id.encode())
            sent += 1
            delay = start + (i + 1) / rate - time.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
    finally:
        await producer.stop()  # flushes: every counted sample is on the broker
    return sent


async def _incident_host(settings: Settings, stop: asyncio.Event, rate: float = 20.0) -> int:
    """Send a host's telemetry at ``rate`` samples/s: 600 normal samples, a CPU spike of
    30, then normal again, until ``stop``."""
    from models.synthetic_incidents import incident_host

    host = incident_host("cpu_spike", n=3000, start=600, length=30, seed=4)
    samples = ((None, host.sample(i)) for i in range(3000))
    return await _paced_host(settings, stop, INCIDENT_HOST, samples, rate)


async def _capacity_host(settings: Settings, stop: asyncio.Event, rate: float = 40.0) -> int:
    """Send a service host's telemetry at ``rate`` samples/s, one sample per minute of
    event time (a day in 36 s): CPU rises from 12% at night to 88% at midday. Its event
    time starts three days ago, so it never runs ahead of the clock. The worker
    classifies it, and its forecast asks for a second instance before the peak and gives
    it back after."""
    rng = np.random.default_rng(8)
    n = 3 * 1440
    minute = np.arange(n)
    cpu = np.clip(50 - 38 * np.cos(2 * np.pi * minute / 1440) + rng.normal(0, 2.0, n), 0, 100)
    first_ts = time.time() - n * 60.0
    samples = (
        (first_ts + 60.0 * i, {"cpu_pct": round(float(cpu[i]), 2), "mem_pct": 42.0})
        for i in range(n)
    )
    host_id = f"{CAPACITY_HOST}-{time.strftime('%H%M%S', time.gmtime())}"
    return await _paced_host(settings, stop, host_id, samples, rate)


async def _drained(
    settings: Settings, inspector: GroupInspector, timeout_s: float
) -> tuple[int, int]:
    """Wait until the group has committed everything on its input topics (bounded);
    returns ``(lag left, members)``."""
    inputs = [settings.topics.name(role) for role in INPUT_ROLES]
    deadline = time.monotonic() + timeout_s
    while True:
        view = await inspector.describe(settings.app_id, inputs)
        left = sum(p.lag for p in view.partitions)
        if left == 0 or time.monotonic() >= deadline:
            return left, len(view.members)
        await asyncio.sleep(0.5)


def _ledgers(
    settings: Settings,
    sent: dict[str, int],
    before: WorkerScrape,
    after: WorkerScrape,
    in_flight: dict[str, int],
) -> list[Ledger]:
    """Each input topic's messages, split by what the worker's counters say became of
    them between two scrapes."""

    def delta(metric: str, **labels: str) -> int:
        return round(after.total(metric, **labels) - before.total(metric, **labels))

    ledgers = []
    for role in INPUT_ROLES:
        topic = settings.topics.name(role)
        ledger = Ledger(topic, sent.get(topic, 0), in_flight=in_flight.get(topic, 0))
        ledger.accepted = delta("novacron_events_in_total", topic=topic)
        ledger.dead_letters = delta("novacron_dead_letters_total", topic=topic)
        redelivered = delta("novacron_samples_redelivered_total", topic=topic)
        counts = {
            name: delta("novacron_processor_events_total", topic=topic, name=name)
            for name in ("predictions", "warming_up", "no_history", "anomaly_scored")
        }
        if role == "link":
            ledger.outcomes = {
                "predictions": counts["predictions"],
                "warming_up": counts["warming_up"],
            }
            if counts["no_history"]:
                ledger.outcomes["not_predicted_no_history"] = counts["no_history"]
        else:
            # every fresh host sample is scored by the anomaly detectors (and then
            # classified and scaled on); with anomaly detection off, count it as accepted
            scored = counts["anomaly_scored"] or ledger.accepted - redelivered
            ledger.outcomes = {"scored": scored}
        if redelivered:
            ledger.outcomes["redelivered"] = redelivered
        ledgers.append(ledger)
    return ledgers


async def _run(
    settings: Settings,
    duration_s: float | None,
    rate: float,
    links: int,
    console: Console,
    drain_s: float,
) -> DemoSummary:
    summary = DemoSummary()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics_url = default_metrics_url(settings)
    inspector = GroupInspector(settings)
    await inspector.start()
    try:
        # Whatever an earlier run left unprocessed goes first, so that the worker's
        # counters from here on are this run's traffic.
        left, _ = await _drained(settings, inspector, drain_s)
        if left:
            summary.notes.append(f"{left:,} messages of earlier runs were still unprocessed")
        before = await asyncio.to_thread(scrape, metrics_url)
        started = time.monotonic()
        watched = asyncio.Event()  # the watcher reads until the worker is done
        watcher = asyncio.create_task(_watch(settings, summary, console, watched, time.time()))
        await asyncio.sleep(1.0)  # let the watcher join at the log end before producing
        options = ProduceOptions(
            rate=rate,
            links=links,
            hosts=2,
            duration_s=duration_s,
            mode="mixed",
            bad_fraction=0.01,
            event_id_prefix=run_prefix("demo"),
            time_mode="live",
        )
        incident = asyncio.create_task(_incident_host(settings, stop))
        capacity = asyncio.create_task(_capacity_host(settings, stop))
        summary.produced = await produce(settings, options, stop=stop)
        stop.set()  # the paced hosts stop with the producer
        summary.host_samples_paced = await incident + await capacity
        console.print(
            f"sending stopped; waiting up to {drain_s:.0f} s for the worker to finish what "
            "is in flight ..."
        )
        left, members = await _drained(settings, inspector, drain_s)
        await asyncio.sleep(1.0)  # the last records reach the watcher
        after = await asyncio.to_thread(scrape, metrics_url)
        in_flight: dict[str, int] = {}
        if left:
            view = await inspector.describe(
                settings.app_id, [settings.topics.name(r) for r in INPUT_ROLES]
            )
            for p in view.partitions:
                in_flight[p.topic] = in_flight.get(p.topic, 0) + p.lag
        sent = dict(summary.produced.messages_per_topic)
        sent[settings.topics.host] = sent.get(settings.topics.host, 0) + summary.host_samples_paced
        if before.error is None and after.error is None:
            summary.ledgers = _ledgers(settings, sent, before, after, in_flight)
        else:
            summary.notes.append(
                f"the worker's metrics were unreachable: {after.error or before.error}"
            )
        if members > 1:
            summary.notes.append(
                f"{members} workers share the group: the counts are this demo worker's share"
            )
    finally:
        stop.set()
        watched.set()
        await inspector.stop()
    await watcher
    summary.elapsed_s = time.monotonic() - started
    return summary


def run_demo(
    settings: Settings,
    *,
    duration_s: float | None,
    rate: float,
    links: int,
    console: Console,
    drain_s: float = 60.0,
    summary_path: Path | None = None,
) -> int:
    """Run the demo; returns the exit code (0 when predictions arrived)."""
    log_path = settings.state_dir / "logs" / "demo-worker.log"
    asyncio.run(ensure_topics(settings))
    console.print(f"starting a worker (log: {log_path}) ...")
    proc = start_worker(settings, log_path)
    try:
        wait_healthy(settings, proc)
        console.print(
            f"worker ready; producing {rate:g} samples/s over {links} links"
            + (f" for {duration_s:g} s" if duration_s else "; Ctrl-C to stop")
        )
        summary = asyncio.run(_run(settings, duration_s, rate, links, console, drain_s))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    console.print(summary.table())
    if summary_path is not None:
        summary_path.write_bytes(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2))
    if summary.predictions == 0:
        console.print(f"[red]no predictions arrived; see the worker log {log_path}[/]")
        return 1
    if not summary.adds_up:
        console.print(
            "[red]the counts do not add up: some messages are neither answered, nor dead "
            f"letters, nor in flight; see the worker log {log_path}[/]"
        )
        return 1
    return 0
