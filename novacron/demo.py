"""``novacron demo``: a worker and synthetic telemetry on the local stack, live.

Starts ``novacron worker`` as a child process, produces live synthetic telemetry
(with a few bad messages so the dead-letter path shows, one host that has a CPU
incident about 30 s in, so an alert opens and resolves, and a service host whose daily
CPU cycle is replayed a day every 36 s, so it is classified and scaled out before its
peak and in after it), and prints predictions, alerts, workload classes, scaling actions
and dead letters as they arrive. Ctrl-C, or ``--duration`` elapsing, stops everything and
prints a summary: events in, predictions out, dead letters, end-to-end latency.
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

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from agents.connections import kafka_options
from agents.settings import Settings
from agents.topics import ensure_topics

from .produce import ProduceReport, produce
from .produce_messages import ProduceOptions
from .tail import format_record, line_style


@dataclass(slots=True)
class DemoSummary:
    """What the demo saw."""

    produced: ProduceReport | None = None
    predictions: int = 0
    dead_letters: int = 0
    alerts: int = 0
    classes: int = 0
    actions: int = 0
    other_outputs: int = 0
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def table(self) -> Table:
        table = Table(title="NovaCron demo summary", show_header=False)
        produced = self.produced
        table.add_row("elapsed", f"{self.elapsed_s:.1f} s")
        if produced is not None:
            table.add_row("samples produced (events in)", str(produced.samples))
            table.add_row("bad messages injected", str(produced.bad_messages))
        table.add_row("predictions out", str(self.predictions))
        table.add_row("dead letters", str(self.dead_letters))
        table.add_row("anomaly alert records", str(self.alerts))
        table.add_row("workload classes", str(self.classes))
        table.add_row("scaling actions", str(self.actions))
        if self.latencies_s:
            p50, p95, p99 = np.percentile(np.array(self.latencies_s) * 1000, [50, 95, 99])
            table.add_row(
                "end-to-end latency p50 / p95 / p99", f"{p50:.0f} / {p95:.0f} / {p99:.0f} ms"
            )
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
                        elif tp.topic == t.workload:
                            summary.classes += 1
                        elif tp.topic == t.scaling:
                            summary.actions += 1
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
) -> None:
    """Send a host's ``(ts, metrics)`` samples at ``rate`` samples/s until ``stop`` (a
    ``None`` time is the wall clock at sending)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=5, **kafka_options(settings)
    )
    await producer.start()
    try:
        start = time.time()
        for i, (ts, metrics) in enumerate(samples):
            if stop.is_set():
                return
            value = {
                "host_id": host_id,
                "ts": time.time() if ts is None else ts,
                "metrics": metrics,
            }
            await producer.send(settings.topics.host, orjson.dumps(value), key=host_id.encode())
            delay = start + (i + 1) / rate - time.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
    finally:
        await producer.stop()


async def _incident_host(settings: Settings, stop: asyncio.Event, rate: float = 20.0) -> None:
    """Send a host's telemetry at ``rate`` samples/s: 600 normal samples, a CPU spike of
    30, then normal again, until ``stop``."""
    from models.synthetic_incidents import incident_host

    host = incident_host("cpu_spike", n=3000, start=600, length=30, seed=4)
    samples = ((None, host.sample(i)) for i in range(3000))
    await _paced_host(settings, stop, INCIDENT_HOST, samples, rate)


async def _capacity_host(settings: Settings, stop: asyncio.Event, rate: float = 40.0) -> None:
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
    await _paced_host(settings, stop, host_id, samples, rate)


async def _run(
    settings: Settings, duration_s: float | None, rate: float, links: int, console: Console
) -> DemoSummary:
    summary = DemoSummary()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    watcher = asyncio.create_task(_watch(settings, summary, console, stop, time.time()))
    await asyncio.sleep(1.0)  # let the watcher join at the log end before producing
    options = ProduceOptions(
        rate=rate,
        links=links,
        hosts=2,
        duration_s=duration_s,
        mode="mixed",
        bad_fraction=0.01,
        event_id_prefix="demo",
        time_mode="live",
    )
    incident = asyncio.create_task(_incident_host(settings, stop))
    capacity = asyncio.create_task(_capacity_host(settings, stop))
    summary.produced = await produce(settings, options, stop=stop)
    if not stop.is_set():
        await asyncio.sleep(2.0)  # drain what the worker still has in flight
    stop.set()
    await watcher
    await incident
    await capacity
    summary.elapsed_s = time.monotonic() - started
    return summary


def run_demo(
    settings: Settings,
    *,
    duration_s: float | None,
    rate: float,
    links: int,
    console: Console,
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
        summary = asyncio.run(_run(settings, duration_s, rate, links, console))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    console.print(summary.table())
    if summary.predictions == 0:
        console.print(f"[red]no predictions arrived; see the worker log {log_path}[/]")
        return 1
    return 0
