"""End-to-end samples/s of the worker, beside a bare aiokafka consume-decode-produce loop.

Measured in one run on the local stack (``novacron stack up``), each case repeated:

* ``worker-single``: one sample per message through ``novacron worker``.
* ``worker-batch100``: 100 samples per message through ``novacron worker``.
* ``...-online-gain``: the same two with ``NOVACRON_ONLINE_GAIN=true``, the cost of the
  per-link online gain measured beside the default.
* ``bare-aiokafka``: consume single-sample messages, ``orjson.loads``, produce one small
  record per sample; no validation, windows or model: the ceiling of the transport.

Time runs from the first input sent to the last output received. Usage::

    .venv/bin/python bench/worker_throughput.py --samples 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402
from novacron.demo import start_worker, wait_healthy  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    forget_isolated_topics,
    isolated_env,
    settings_for,
)

LINKS = 50
WARM_UP = 10


def samples(n: int) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"b-{i}",
            "link_id": f"link-{i % LINKS}",
            "ts": 1.76e9 + i // LINKS,
            "mode": "internet",
            "bandwidth_mbps": 300.0 + (i * 7919) % 400,
            "latency_ms": 40.0 + i % 9,
        }
        for i in range(n)
    ]


def messages(rows: list[dict[str, object]], batch: int) -> list[tuple[bytes, bytes, int]]:
    if batch == 1:
        return [(str(r["link_id"]).encode(), orjson.dumps(r), 1) for r in rows]
    by_link: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        by_link.setdefault(str(r["link_id"]), []).append(r)
    out = []
    for link, items in by_link.items():
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            out.append((link.encode(), orjson.dumps({"samples": chunk}), len(chunk)))
    return out


async def produce_all(
    settings: Settings, topic: str, msgs: list[tuple[bytes, bytes, int]]
) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=5, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    started = time.time()
    try:
        for key, value, _ in msgs:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return started


async def count_until(settings: Settings, topic: str, expected: int, timeout_s: float) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_bytes=1 << 24,
    )
    await consumer.start()
    seen = 0
    last = time.time()
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200, max_records=50_000)).values():
                seen += len(batch)
                last = time.time()
    finally:
        await consumer.stop()
    if seen < expected:
        msg = f"only {seen} of {expected} records arrived on {topic} within {timeout_s} s"
        raise RuntimeError(msg)
    return last


async def worker_case(settings: Settings, n: int, batch: int) -> float:
    msgs = messages(samples(n), batch)
    expected = n - LINKS * (WARM_UP - 1)
    counter = asyncio.create_task(count_until(settings, settings.topics.predictions, expected, 600))
    await asyncio.sleep(1.0)
    started = await produce_all(settings, settings.topics.link, msgs)
    finished = await counter
    return n / (finished - started)


async def bare_case(settings: Settings, n: int, tag: str) -> float:
    source, sink = f"bench.{tag}.bare-in", f"bench.{tag}.bare-out"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(t, settings.topic_partitions, 1) for t in (source, sink)])
    await admin.close()
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"bare-{tag}",
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=2, acks=-1)
    await consumer.start()
    await producer.start()

    async def loop() -> None:
        done = 0
        while done < n:
            for records in (await consumer.getmany(timeout_ms=100, max_records=500)).values():
                for record in records:
                    value = orjson.loads(record.value)
                    out = {
                        "link_id": value["link_id"],
                        "ts": value["ts"],
                        "pred": value["bandwidth_mbps"],
                    }
                    await producer.send(sink, orjson.dumps(out), key=record.key)
                    done += 1
            await consumer.commit()

    task = asyncio.create_task(loop())
    counter = asyncio.create_task(count_until(settings, sink, n, 600))
    await asyncio.sleep(1.0)
    started = await produce_all(settings, source, messages(samples(n), 1))
    finished = await counter
    await task
    await consumer.stop()
    await producer.stop()
    return n / (finished - started)


def run_worker_cases(n_single: int, n_batch: int, repeat: int) -> dict[str, list[float]]:
    cases = [
        (f"worker-{shape}{suffix}", n, batch, gain)
        for shape, n, batch in (("single", n_single, 1), ("batch100", n_batch, 100))
        for suffix, gain in (("", "false"), ("-online-gain", "true"))
    ]
    results: dict[str, list[float]] = {case[0]: [] for case in cases} | {"bare-aiokafka": []}
    for r in range(repeat):
        for case, n, batch, gain in cases:
            env = isolated_env(f"bench-{case}-{r}") | {"NOVACRON_ONLINE_GAIN": gain}
            settings = settings_for(env)
            log = Path(".novacron/logs") / f"bench-{case}-{r}.log"
            proc = start_worker(settings, log, env)
            try:
                wait_healthy(settings, proc, timeout_s=120)
                rate = asyncio.run(worker_case(settings, n, batch))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            results[case].append(rate)
            print(f"{case} run {r}: {rate:,.0f} samples/s", flush=True)
        rate = asyncio.run(bare_case(Settings(), n_single, f"{int(time.time())}-{r}"))
        results["bare-aiokafka"].append(rate)
        print(f"bare-aiokafka run {r}: {rate:,.0f} samples/s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples", type=int, default=20_000, help="samples per single-message run"
    )
    parser.add_argument("--batch-samples", type=int, default=100_000, help="samples per batch run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench/results/worker_throughput.json"))
    args = parser.parse_args()
    results = run_worker_cases(args.samples, args.batch_samples, args.repeat)
    summary = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "samples_per_s_median": {k: statistics.median(v) for k, v in results.items()},
        "samples_per_s_runs": results,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["samples_per_s_median"], indent=2))


if __name__ == "__main__":
    try:
        main()
    finally:
        forget_isolated_topics()  # the workers' topics: a local broker keeps every run's
