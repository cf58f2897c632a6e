"""End-to-end latency and memory of one worker at half its measured maximum rate.

One worker on the local stack, every shipped processor on, single-sample messages from
``--links`` links (each sample stamped with the wall clock when it is sent):

1. **Maximum rate.** A burst of ``--burst`` samples is sent as fast as the producer can;
   the rate is samples over the time from the first send to the last prediction received.
2. **Steady run.** Samples are then sent at ``--load`` (default 0.5) of that rate for
   ``--minutes``. For every prediction received the latency is the receive time minus
   the sample's ``ts`` (sample time to prediction received); the worker's RSS
   (``/proc/<pid>/status``), its child processes' apart, and the PSS of the worker and
   its children together (a page they share counted once) are read every
   ``--rss-every`` seconds; so is what the worker did in each interval (its CPU share,
   batches per second, messages per batch and the share of the wall time it spent in
   batches, from its ``/metrics``). ``--rate`` sets the steady rate in samples/s
   instead (two trees compared at the same rate).

Reported: latency p50/p90/p99/max over the steady run (its first minute left out as
warm-up, reported apart), the RSS series, and RSS growth from the second minute to the
last minutes. Usage (the local stack up)::

    .venv/bin/python bench/latency_rss.py --minutes 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_costs import link_sample, rss_mb, tree_memory_mb  # noqa: E402
from worker_throughput import count_until, produce_all  # noqa: E402

from agents.settings import Settings  # noqa: E402
from models.synthetic import synthesize_link_series  # noqa: E402
from novacron.demo import start_worker, wait_healthy  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    forget_isolated_topics,
    isolated_env,
    settings_for,
)

WARM_UP = 10


class Links:
    """Each link's synthetic series, handed out one sample at a time."""

    def __init__(self, mode: str, links: int, steps: int, prefix: str) -> None:
        self.mode, self.prefix = mode, prefix
        self.series = [synthesize_link_series(mode, steps, seed=k) for k in range(links)]
        self.next = [0] * links

    def sample(self, k: int, ts: float) -> tuple[bytes, bytes]:
        i = self.next[k]
        self.next[k] += 1
        row = self.series[k][i % len(self.series[k])]
        link = f"{self.prefix}-{k}"
        return link.encode(), orjson.dumps(link_sample(self.mode, link, i, ts, row))


async def burst(settings: Settings, links: Links, n: int) -> float:
    """Samples/s of the worker when sent ``n`` samples at once."""
    now = time.time()
    msgs = []
    for i in range(n):
        key, value = links.sample(i % len(links.series), now + i // len(links.series))
        msgs.append((key, value, 1))
    expected = n - len(links.series) * (WARM_UP - 1)
    counter = asyncio.create_task(count_until(settings, settings.topics.predictions, expected, 900))
    await asyncio.sleep(1.0)
    started = await produce_all(settings, settings.topics.link, msgs)
    return n / (await counter - started)


async def steady(
    settings: Settings, links: Links, rate: float, seconds: float, pid: int, rss_every: float
) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        settings.topics.predictions,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="latest",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.1)
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0)
    await producer.start()
    latencies: list[tuple[float, float]] = []  # (seconds into the run, latency s)
    produced: list[float] = []  # the record's produced_at minus the sample's ts
    rss: list[tuple[float, float]] = []
    children: list[tuple[float, float]] = []  # the worker's child processes
    together: list[tuple[float, float]] = []  # the worker and its children, PSS
    busy: list[tuple[float, float, float, float, float]] = []  # see activity()
    sent = 0
    started = time.time()
    stop = asyncio.Event()

    async def receive() -> None:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=50)).values():
                now = time.time()
                for record in records:
                    value = orjson.loads(record.value)
                    ts = value["ts"]
                    if ts >= started:  # the burst's predictions are not this run's
                        latencies.append((now - started, now - ts))
                        produced.append(value["produced_at"] - ts)

    async def sample_rss() -> None:
        while not stop.is_set():
            rss.append((time.time() - started, rss_mb(pid)))
            children_rss, together_pss = tree_memory_mb(pid)
            children.append((time.time() - started, children_rss))
            together.append((time.time() - started, together_pss))
            with contextlib.suppress(OSError):
                busy.append((time.time() - started, cpu_seconds(pid), *batch_totals(settings)))
            await asyncio.sleep(rss_every)

    receiver = asyncio.create_task(receive())
    sampler = asyncio.create_task(sample_rss())
    try:
        while (elapsed := time.time() - started) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                key, value = links.sample(sent % len(links.series), time.time())
                await producer.send(settings.topics.link, value, key=key)
                sent += 1
            await asyncio.sleep(0.002)
        await producer.flush()
        await asyncio.sleep(5.0)  # the last predictions
    finally:
        stop.set()
        await asyncio.gather(receiver, sampler)
        await producer.stop()
        await consumer.stop()
    return {
        "sent": sent,
        "latencies": latencies,
        "produced": produced,
        "rss": rss,
        "children_rss": children,
        "together_pss": together,
        "activity": activity(busy),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_totals(settings: Settings) -> tuple[float, float, float]:
    """The worker's batches, messages in them and seconds spent in them so far, summed
    over its input topics (its ``/metrics``)."""
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    sums = dict.fromkeys(
        (
            "novacron_batch_messages_count",
            "novacron_batch_messages_sum",
            "novacron_batch_processing_seconds_sum",
        ),
        0.0,
    )
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return tuple(sums.values())  # type: ignore[return-value]


def activity(samples: list[tuple[float, float, float, float, float]]) -> list[dict[str, float]]:
    """Per interval between two samples ``(t, cpu s, batches, messages, batch s)``: the
    worker's CPU share, batches/s, messages per batch and the share of the wall time spent
    in batches (the rest it waits for Faust to hand it the next batch)."""
    out = []
    for (t0, c0, b0, m0, s0), (t1, c1, b1, m1, s1) in itertools.pairwise(samples):
        dt, batches = t1 - t0, b1 - b0
        out.append(
            {
                "t": round(t1, 1),
                "cpu_share": round((c1 - c0) / dt, 3),
                "batches_per_s": round(batches / dt, 2),
                "messages_per_batch": round((m1 - m0) / batches, 1) if batches else 0.0,
                "share_in_batches": round((s1 - s0) / dt, 3),
            }
        )
    return out


def percentiles_ms(values: list[float]) -> dict[str, float]:
    a = 1e3 * np.asarray(values)
    return {
        "count": len(values),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def per_minute_p99_ms(latencies: list[tuple[float, float]]) -> list[float]:
    at = np.asarray(latencies)
    minute = (at[:, 0] // 60).astype(int)
    return [
        float(1e3 * np.percentile(at[minute == m, 1], 99))
        for m in range(minute.max() + 1)
        if (minute == m).any()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("datacenter", "internet"), default="datacenter")
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--burst", type=int, default=20_000, help="samples of the burst")
    parser.add_argument("--load", type=float, default=0.5, help="share of the maximum rate")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="samples/s of the steady run instead of --load x the maximum (to compare two "
        "trees at the same rate)",
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rss-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--output", type=Path, default=Path("bench/results/latency_rss.json"))
    args = parser.parse_args()

    # The worker's own batching (NOVACRON_BATCH_WITHIN_S), not the tests' shorter wait.
    env = {k: v for k, v in isolated_env("bench-latency").items() if "BATCH_WITHIN" not in k}
    settings = settings_for(env)
    proc = start_worker(settings, Path(".novacron/logs/bench-latency.log"), env)
    try:
        wait_healthy(settings, proc, timeout_s=180)
        rss_ready = rss_mb(proc.pid)
        steps = int(args.burst / args.links) + 10
        maximum = asyncio.run(
            burst(settings, Links(args.mode, args.links, steps, "lb"), args.burst)
        )
        rate = args.rate or args.load * maximum
        print(f"maximum {maximum:,.0f} samples/s; steady run at {rate:,.0f}/s", flush=True)
        seconds = 60 * args.minutes
        links = Links(args.mode, args.links, int(rate * seconds / args.links) + 10, "ls")
        run = asyncio.run(steady(settings, links, rate, seconds, proc.pid, args.rss_every))
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    lat = run["latencies"]
    rss = run["rss"]
    expected = run["sent"] - args.links * (WARM_UP - 1)

    def rss_between(lo: float, hi: float) -> float:
        return statistics.median(mb for t, mb in rss if lo <= t < hi)

    end = max(t for t, _ in rss)
    early = rss_between(60, 180)
    late = rss_between(end - 120, end + 1)
    summary = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "case": f"{args.mode} links, one sample per message, {args.links} links, "
        "every shipped processor on, one worker",
        "maximum_samples_per_s": maximum,
        "steady_rate_samples_per_s": rate,
        "steady_seconds": seconds,
        "sent": run["sent"],
        "predictions_received": len(lat),
        "predictions_expected": expected,
        "latency_after_first_minute": percentiles_ms([v for t, v in lat if t >= 60]),
        "latency_first_minute": percentiles_ms([v for t, v in lat if t < 60]),
        # Of which in the worker: sample ts to the record's produced_at (whole run).
        "sample_to_produced_at": percentiles_ms(run["produced"]),
        "latency_per_minute_p99_ms": per_minute_p99_ms(lat),
        "rss_mb": {
            "ready": rss_ready,
            "minutes_1_to_3_median": early,
            "last_2_minutes_median": late,
            "max": max(mb for _, mb in rss),
            "growth": late / early - 1,
            "series": [(round(t, 1), round(mb, 1)) for t, mb in rss],
        },
        # the worker's child processes (the anomaly fitting process and its fork server)
        "children_rss_mb": {
            "last_2_minutes_median": statistics.median(
                mb for t, mb in run["children_rss"] if t >= end - 120
            ),
            "max": max(mb for _, mb in run["children_rss"]),
        },
        # the worker and its children together, a shared page counted once (PSS)
        "worker_and_children_pss_mb": {
            "last_2_minutes_median": statistics.median(
                mb for t, mb in run["together_pss"] if t >= end - 120
            ),
            "max": max(mb for _, mb in run["together_pss"]),
        },
        # what the worker did per --rss-every interval: CPU share, batches/s, messages
        # per batch, share of the wall time spent in batches
        "worker_activity": run["activity"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    hidden = ("rss_mb", "latency_per_minute_p99_ms", "worker_activity")
    shown = {k: v for k, v in summary.items() if k not in hidden}
    rss_shown = {k: v for k, v in summary["rss_mb"].items() if k != "series"}
    print(json.dumps(shown | {"rss_mb": rss_shown}, indent=2))


if __name__ == "__main__":
    try:
        main()
    finally:
        forget_isolated_topics()
