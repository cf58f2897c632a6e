"""End-to-end samples/s of the worker, beside bare consume-decode-produce loops.

Measured in one run on the local stack (``novacron stack up``), each case repeated, for
the links of ``--mode`` (internet or datacenter):

* ``worker-single``: one sample per message through ``novacron worker``.
* ``worker-batch100``: 100 samples per message through ``novacron worker``.
* ``...-online-gain`` (with ``--online-gain``): the same two with
  ``NOVACRON_ONLINE_GAIN=true``, the cost of the per-link online gain beside the default.
* ``bare-aiokafka-single`` / ``bare-aiokafka-batch100``: aiokafka consumes the same
  messages, ``orjson.loads`` each, produces one small record per sample; no validation,
  windows or model: the ceiling of the transport.
* ``bare-faust-single``: a bare Faust agent (``bench/bare_faust.py``) does the same per
  single-sample event: the ceiling of Faust's per-event machinery.

Time runs from the first input sent to the last output received. Usage::

    .venv/bin/python bench/worker_throughput.py --samples 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
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
    ISOLATED,
    forget_isolated_topics,
    free_port,
    isolated_env,
    settings_for,
)

LINKS = 50
WARM_UP = 10


def samples(n: int, mode: str = "internet") -> list[dict[str, object]]:
    return [
        {
            "event_id": f"b-{i}",
            "link_id": f"link-{i % LINKS}",
            "ts": 1.76e9 + i // LINKS,
            "mode": mode,
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


async def worker_case(settings: Settings, n: int, batch: int, mode: str) -> float:
    msgs = messages(samples(n, mode), batch)
    expected = n - LINKS * (WARM_UP - 1)
    counter = asyncio.create_task(count_until(settings, settings.topics.predictions, expected, 600))
    await asyncio.sleep(1.0)
    started = await produce_all(settings, settings.topics.link, msgs)
    finished = await counter
    return n / (finished - started)


async def create_topics(settings: Settings, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, settings.topic_partitions, 1) for t in names])
    finally:
        await admin.close()


async def bare_case(settings: Settings, msgs: list[tuple[bytes, bytes, int]], tag: str) -> float:
    """The bare aiokafka loop on ``msgs``: one small record produced per sample."""
    source, sink = f"bench.{tag}.bare-in", f"bench.{tag}.bare-out"
    ISOLATED.add(f"bench.{tag}.")
    await create_topics(settings, source, sink)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"bare-{tag}",
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=2, acks=-1)
    await consumer.start()
    await producer.start()
    n = sum(count for _, _, count in msgs)

    async def loop() -> None:
        done = 0
        while done < n:
            for records in (await consumer.getmany(timeout_ms=100, max_records=500)).values():
                for record in records:
                    value = orjson.loads(record.value)
                    for sample in value.get("samples", (value,)):
                        out = {
                            "link_id": sample["link_id"],
                            "ts": sample["ts"],
                            "pred": sample["bandwidth_mbps"],
                        }
                        await producer.send(sink, orjson.dumps(out), key=record.key)
                        done += 1
            await consumer.commit()

    task = asyncio.create_task(loop())
    counter = asyncio.create_task(count_until(settings, sink, n, 600))
    await asyncio.sleep(1.0)
    started = await produce_all(settings, source, msgs)
    finished = await counter
    await task
    await consumer.stop()
    await producer.stop()
    return n / (finished - started)


def bare_faust_case(msgs: list[tuple[bytes, bytes, int]], tag: str) -> float:
    """The bare Faust agent (bench/bare_faust.py) on ``msgs``."""
    settings = Settings()
    ISOLATED.update((f"bench.{tag}.", f"bare-faust-{tag}"))  # its topics, Faust's own too
    source, sink = f"bench.{tag}.faust-in", f"bench.{tag}.faust-out"
    port = free_port()
    env = {
        "BARE_APP_ID": f"bare-faust-{tag}",
        "BARE_SOURCE": source,
        "BARE_SINK": sink,
        "BARE_WEB_PORT": str(port),
    }

    asyncio.run(create_topics(settings, source, sink))
    log = Path(".novacron/logs") / f"bench-bare-faust-{tag}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, str(Path(__file__).with_name("bare_faust.py")), "worker",
             "--loglevel", "warn"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )  # fmt: skip
    try:
        wait_listening(port, proc)

        async def measure() -> float:
            n = sum(count for _, _, count in msgs)
            counter = asyncio.create_task(count_until(settings, sink, n, 600))
            await asyncio.sleep(1.0)
            started = await produce_all(settings, source, msgs)
            return n / (await counter - started)

        return asyncio.run(measure())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """Until the Faust app's web server answers (it starts once the app is running) and
    its agent holds its partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"the bare Faust app exited with code {proc.returncode}; see its log"
            raise RuntimeError(msg)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(5.0)  # the group's first assignment
                return
        except OSError:
            time.sleep(0.5)
    msg = f"the bare Faust app did not listen on {port} within {timeout_s:.0f} s"
    raise RuntimeError(msg)


def run_worker_cases(
    n_single: int, n_batch: int, repeat: int, mode: str, online_gain: bool
) -> dict[str, list[float]]:
    gains = (("", "false"), ("-online-gain", "true")) if online_gain else (("", "false"),)
    cases = [
        (f"worker-{shape}{suffix}", n, batch, gain)
        for shape, n, batch in (("single", n_single, 1), ("batch100", n_batch, 100))
        for suffix, gain in gains
    ]
    bare = {
        "bare-aiokafka-single": messages(samples(n_single, mode), 1),
        "bare-aiokafka-batch100": messages(samples(n_batch, mode), 100),
    }
    results: dict[str, list[float]] = {case[0]: [] for case in cases} | {
        name: [] for name in (*bare, "bare-faust-single")
    }
    for r in range(repeat):
        for case, n, batch, gain in cases:
            env = isolated_env(f"bench-{case}-{r}") | {"NOVACRON_ONLINE_GAIN": gain}
            settings = settings_for(env)
            log = Path(".novacron/logs") / f"bench-{case}-{r}.log"
            proc = start_worker(settings, log, env)
            try:
                wait_healthy(settings, proc, timeout_s=120)
                rate = asyncio.run(worker_case(settings, n, batch, mode))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            results[case].append(rate)
            print(f"{case} run {r}: {rate:,.0f} samples/s", flush=True)
        for name, msgs in bare.items():
            rate = asyncio.run(bare_case(Settings(), msgs, f"{int(time.time())}-{name}-{r}"))
            results[name].append(rate)
            print(f"{name} run {r}: {rate:,.0f} samples/s", flush=True)
        rate = bare_faust_case(bare["bare-aiokafka-single"], f"{int(time.time())}-{r}")
        results["bare-faust-single"].append(rate)
        print(f"bare-faust-single run {r}: {rate:,.0f} samples/s", flush=True)
    return results


def ratios(medians: dict[str, float]) -> dict[str, float]:
    """The issue's yardsticks: the worker against the bare loops on the same messages."""
    return {
        "worker-single / bare-faust-single": medians["worker-single"]
        / medians["bare-faust-single"],
        "worker-single / bare-aiokafka-single": medians["worker-single"]
        / medians["bare-aiokafka-single"],
        "worker-batch100 / bare-aiokafka-batch100": medians["worker-batch100"]
        / medians["bare-aiokafka-batch100"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples", type=int, default=20_000, help="samples per single-message run"
    )
    parser.add_argument("--batch-samples", type=int, default=100_000, help="samples per batch run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", choices=("internet", "datacenter"), default="internet")
    parser.add_argument(
        "--online-gain", action="store_true", help="also the worker with NOVACRON_ONLINE_GAIN"
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results/worker_throughput.json"))
    args = parser.parse_args()
    results = run_worker_cases(
        args.samples, args.batch_samples, args.repeat, args.mode, args.online_gain
    )
    medians = {k: statistics.median(v) for k, v in results.items()}
    summary = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "mode": args.mode,
        "samples_per_s_median": medians,
        "ratios_of_medians": ratios(medians),
        "samples_per_s_runs": results,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({"medians": medians, "ratios": summary["ratios_of_medians"]}, indent=2))


if __name__ == "__main__":
    try:
        main()
    finally:
        forget_isolated_topics()  # the workers' topics: a local broker keeps every run's
