"""Chaos on the local stack: workers killed, Redis and the broker restarted, nothing lost.

Two workers of one consumer group serve a run of link and host telemetry (single and
100-sample batch messages, 1% malformed) while the run kills a worker with ``kill -9``
(restarting it at once) ``--kills`` times, restarts Redis ``--redis-restarts`` times
(10 s down each) and the Kafka broker ``--broker-restarts`` times. Then it reads the
output topics from the start and reports:

* link events past warm-up without a prediction naming them (must be 0);
* duplicate records, and whether every duplicate equals its first copy (same id, same
  content apart from ``produced_at``);
* dead letters (distinct source positions) against malformed messages sent (equal);
* per fault kind, the outage of the prediction stream (the longest gap between two
  predictions of one link across the fault) and the recovery (that gap less the time
  the fault lasted), p50 and max.

Host telemetry has no output topic yet (the anomaly, workload and scaling processors
come later); its messages load the pipeline and its malformed ones are counted.

The workers use a Redis server of their own with an append-only file, so a restart
keeps the windows, as a production Redis with persistence does. Usage::

    .venv/bin/python bench/chaos.py                      # the full run (about 5 min)
    .venv/bin/python bench/chaos.py --events 20000 --kills 4 --redis-restarts 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402
from novacron import stack  # noqa: E402
from novacron.demo import start_worker, wait_healthy  # noqa: E402
from novacron.stack_processes import our_pid, stack_paths, stop_process  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    RedisServer,
    forget_isolated_topics,
    free_port,
    isolated_env,
    settings_for,
)

LINKS = 40
HOSTS = 20
BATCH = 100
BAD = [
    b'{"link_id": "x", "ts": 1760000000, "mode": "internet", "bandwidth_mbps": NaN}',
    b'{"link_id": "x", "ts": "soon", "mode": "internet", "latency_ms": 1}',
    b"\xff\xfe not utf-8",
    b'{"host_id": "h", "ts": 1760000000, "metrics": {"cpu_pct": "high"}}',
    b'{"schema_version": 7, "link_id": "x"}',
    b"[" * 5000,
]


@dataclass
class Message:
    role: str
    key: bytes
    value: bytes
    link_events: list[str] = field(default_factory=list)
    malformed: bool = False


@dataclass
class Fault:
    kind: str
    start: float
    end: float = 0.0


def messages(events: int, seed: int) -> list[Message]:
    """The run's messages in send order: ~60% link, ~40% host events, half of each in
    100-sample batches, 1% of messages malformed."""
    rng = random.Random(seed)
    out: list[Message] = []
    link_i = [0] * LINKS
    host_i = [0] * HOSTS
    count = 0
    while count < events:
        if rng.random() < 0.01:
            bad = BAD[rng.randrange(len(BAD))]
            role = "host" if b"host_id" in bad else "link"
            out.append(Message(role, b"bad", bad, malformed=True))
            continue
        batch = rng.random() < 1 / BATCH  # so about half of the events come in batches
        n = BATCH if batch else 1
        if rng.random() < 0.6:
            link = rng.randrange(LINKS)
            samples = []
            for _ in range(n):
                i = link_i[link]
                link_i[link] += 1
                samples.append({
                    "event_id": f"chaos-l{link}-{i}", "link_id": f"link-{link}",
                    "mode": "internet" if link % 2 else "datacenter", "ts": 1.76e9 + i,
                    "bandwidth_mbps": (600.0 if link % 2 else 6000.0) * (1 + 0.2 * rng.random()),
                    "latency_ms": 40.0 if link % 2 else 2.0, "throughput_mbps": 500.0,
                })  # fmt: skip
            body = {"samples": samples} if batch else samples[0]
            out.append(Message("link", f"link-{link}".encode(), orjson.dumps(body),
                               [s["event_id"] for s in samples]))  # fmt: skip
        else:
            host = rng.randrange(HOSTS)
            samples = []
            for _ in range(n):
                i = host_i[host]
                host_i[host] += 1
                samples.append({
                    "event_id": f"chaos-h{host}-{i}", "host_id": f"host-{host}", "ts": 1.76e9 + i,
                    "metrics": {"cpu_pct": 100 * rng.random(), "mem_pct": 50.0},
                })  # fmt: skip
            body = {"samples": samples} if batch else samples[0]
            out.append(Message("host", f"host-{host}".encode(), orjson.dumps(body)))
        count += n
    return out


async def send_all(settings: Settings, msgs: list[Message], seconds: float) -> dict[str, float]:
    """Send the messages evenly over ``seconds``; returns each link event's send time."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5,
        request_timeout_ms=120_000, max_request_size=2_000_000,
    )  # fmt: skip
    await producer.start()
    sent_at: dict[str, float] = {}
    start = time.monotonic()
    try:
        for k, msg in enumerate(msgs):
            topic = settings.topics.name(msg.role)
            while True:
                try:
                    await producer.send(topic, msg.value, key=msg.key)
                    break
                except KafkaError:  # the broker is being restarted: wait for it
                    await asyncio.sleep(0.5)
            now = time.time()
            for event in msg.link_events:
                sent_at[event] = now
            await asyncio.sleep(max(0.0, start + (k + 1) * seconds / len(msgs) - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()
    return sent_at


class Workers:
    def __init__(self, envs: list[dict[str, str]], logs: Path) -> None:
        self.envs = envs
        self.logs = logs
        self.procs = [self._start(i) for i in range(len(envs))]
        for i, proc in enumerate(self.procs):
            wait_healthy(settings_for(self.envs[i]), proc, timeout_s=180)

    def _start(self, i: int) -> subprocess.Popen[bytes]:
        return start_worker(settings_for(self.envs[i]), self.logs / f"worker-{i}.log", self.envs[i])

    def kill_and_restart(self, i: int) -> None:
        os.kill(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()
        self.procs[i] = self._start(i)

    def wait_healthy(self, i: int) -> None:
        wait_healthy(settings_for(self.envs[i]), self.procs[i], timeout_s=180)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


def restart_broker(settings: Settings) -> None:
    paths = stack_paths(settings)
    pid, _ = our_pid(paths, "kafka")
    if pid is None:
        msg = "the local stack's broker is not running: run `make stack-up` first"
        raise SystemExit(msg)
    stop_process(pid, "kafka")
    stack.stack_up(settings, timeout_s=120, progress=lambda _line: None)


async def inject(
    workers: Workers, redis: RedisServer, base: Settings, plan: list[str], gap_s: float
) -> list[Fault]:
    faults: list[Fault] = []
    for n, kind in enumerate(plan):
        await asyncio.sleep(gap_s)
        fault = Fault(kind, time.time())
        if kind == "kill -9":
            i = n % len(workers.procs)
            await asyncio.to_thread(workers.kill_and_restart, i)
            fault.end = time.time()
            await asyncio.to_thread(workers.wait_healthy, i)
        elif kind == "redis restart":
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(10)
            await asyncio.to_thread(redis.start)
            fault.end = time.time()
        else:
            await asyncio.to_thread(restart_broker, base)
            fault.end = time.time()
        print(f"{kind} at +{fault.start - faults[0].start if faults else 0:.0f} s", flush=True)
        faults.append(fault)
    return faults


async def read_outputs(settings: Settings, expect: int, timeout_s: float) -> dict[str, list[Any]]:
    topics = [settings.topics.predictions, settings.topics.dlq]
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4_000_000, fetch_max_bytes=16_000_000,
    )  # fmt: skip
    await consumer.start()
    out: dict[str, list[Any]] = {t: [] for t in topics}
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                out[tp.topic].extend(orjson.loads(r.value) for r in records)
            if batches:
                quiet_since = time.monotonic()
            elif len(out[topics[0]]) >= expect and time.monotonic() - quiet_since > 10:
                break
    finally:
        await consumer.stop()
    return out


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_s": round(statistics.median(values), 2),
        "max_s": round(max(values), 2),
    }


def analyse(
    msgs: list[Message], sent_at: dict[str, float], outputs: dict[str, list[Any]],
    faults: list[Fault], settings: Settings,
) -> dict[str, Any]:  # fmt: skip
    predictions = outputs[settings.topics.predictions]
    first: dict[str, dict[str, Any]] = {}
    duplicates = differing = 0
    differing_fields: set[str] = set()
    for p in predictions:
        pid = p["prediction_id"]
        if pid in first:
            duplicates += 1
            a = {k: v for k, v in p.items() if k != "produced_at"}
            b = {k: v for k, v in first[pid].items() if k != "produced_at"}
            if a != b:
                differing += 1
                differing_fields |= {k for k in a if a[k] != b.get(k)}
        else:
            first[pid] = p
    predicted = {p["source_event_ids"][0]: p for p in first.values()}
    by_link: dict[str, list[str]] = defaultdict(list)
    for msg in msgs:
        for event in msg.link_events:
            by_link[event.rsplit("-", 1)[0]].append(event)
    missing: list[str] = []
    warm_up: list[int] = []
    for events in by_link.values():
        firsts = [k for k, e in enumerate(events) if e in predicted]
        if not firsts:
            missing.extend(events)
            continue
        warm_up.append(firsts[0])
        missing.extend(e for e in events[firsts[0] :] if e not in predicted)
    dead = outputs[settings.topics.dlq]
    positions = {(d["source"]["topic"], d["source"]["partition"], d["source"]["offset"])
                 for d in dead}  # fmt: skip
    # Outage per fault: the longest gap between two predictions of one link across it.
    times: dict[str, list[float]] = defaultdict(list)
    for p in first.values():
        times[p["link_id"]].append(p["produced_at"])
    for t in times.values():
        t.sort()
    recovery: dict[str, list[float]] = defaultdict(list)
    outage: dict[str, list[float]] = defaultdict(list)
    for fault in faults:
        gaps = []
        for t in times.values():
            before = [x for x in t if x <= fault.start]
            after = [x for x in t if x > fault.start]
            if before and after:
                gaps.append(after[0] - before[-1])
        if gaps:
            worst = max(gaps)
            outage[fault.kind].append(worst)
            recovery[fault.kind].append(max(0.0, worst - (fault.end - fault.start)))
    malformed = sum(m.malformed for m in msgs)
    return {
        "messages_sent": len(msgs),
        "events_sent": sum(
            len(orjson.loads(m.value).get("samples", [0])) for m in msgs if not m.malformed
        ),
        "link_events_sent": len(sent_at),
        "link_events_without_prediction": len(missing),
        "missing_examples": missing[:10],
        "warm_up_events_per_link_max": max(warm_up, default=0),
        "predictions_received": len(predictions),
        "duplicate_records": duplicates,
        "duplicates_differing_from_first_copy": differing,
        "fields_that_differed": sorted(differing_fields),
        "malformed_sent": malformed,
        "dead_letters_received": len(dead),
        "dead_letters_distinct_sources": len(positions),
        "faults": {kind: sum(f.kind == kind for f in faults) for kind in {f.kind for f in faults}},
        "outage_s": {kind: quantiles(v) for kind, v in outage.items()},
        "recovery_s": {kind: quantiles(v) for kind, v in recovery.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--broker-restarts", type=int, default=1)
    parser.add_argument("--gap", type=float, default=4.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", type=Path, default=Path("bench/results/chaos.json"))
    args = parser.parse_args()

    base = Settings()
    plan = ["kill -9"] * args.kills
    for n in range(args.redis_restarts):
        plan.insert((n + 1) * len(plan) // (args.redis_restarts + 1), "redis restart")
    for n in range(args.broker_restarts):
        plan.insert((n + 1) * len(plan) // (args.broker_restarts + 1), "broker restart")
    msgs = messages(args.events, args.seed)
    with tempfile.TemporaryDirectory(prefix="novacron-chaos-") as tmp:
        folder = Path(tmp)
        redis = RedisServer(folder / "redis")
        redis.start()
        env = isolated_env("chaos") | {"NOVACRON_REDIS_URL": redis.url}
        envs = [env, env | {"NOVACRON_WEB_PORT": str(free_port())}]
        settings = settings_for(env)
        workers = Workers(envs, folder)
        started = time.time()
        try:
            # Faults take about 10 s each (a worker's restart, a Redis outage): the
            # events are spread over the whole plan.
            seconds = len(plan) * (args.gap + 9.0) + 10.0

            async def run() -> tuple[dict[str, float], list[Fault]]:
                sending = asyncio.create_task(send_all(settings, msgs, seconds))
                faults = await inject(workers, redis, base, plan, args.gap)
                return await sending, faults

            sent_at, faults = asyncio.run(run())
            print(f"sent {len(msgs)} messages in {time.time() - started:.0f} s; reading outputs")
            outputs = asyncio.run(read_outputs(settings, len(sent_at) // 2, timeout_s=600))
        finally:
            workers.stop()
            redis.stop()
    report = analyse(msgs, sent_at, outputs, faults, settings)
    report = {"command": " ".join(sys.argv), "run_seconds": round(time.time() - started)} | report
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok = (
        report["link_events_without_prediction"] == 0
        and report["duplicates_differing_from_first_copy"] == 0
        and report["dead_letters_distinct_sources"] == report["malformed_sent"]
    )
    print("NOTHING LOST" if ok else "FAILED: see the counts above")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    try:
        main()
    finally:
        forget_isolated_topics()  # the workers' topics: a local broker keeps every run's
