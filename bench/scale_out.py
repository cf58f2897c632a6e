"""Throughput of 1, 2 and 4 workers of one consumer group on an 8-partition topic, and
what each shared part (Kafka broker, Redis) spends per sample.

Datacenter links, 100-sample batch messages, every shipped processor on. Each round runs
every worker count once (the order rotates between rounds); figures are medians over the
rounds. Beside the rate, the run reads the CPU seconds each process spent while the
messages were processed (``/proc/<pid>/stat`` for the workers and the broker, ``INFO cpu``
for Redis), so the note can say where a deployment saturates: samples/s at which the one
Redis (single-threaded) or the one broker would use a whole core.

Usage (the local stack up)::

    .venv/bin/python bench/scale_out.py --samples 40000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_costs import link_sample  # noqa: E402
from worker_throughput import count_until, produce_all  # noqa: E402

from agents.settings import Settings  # noqa: E402
from models.synthetic import synthesize_link_series  # noqa: E402
from novacron.demo import start_worker, wait_healthy  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    forget_isolated_topics,
    free_port,
    isolated_env,
    settings_for,
)

PARTITIONS = 8
LINKS = 64
PER_MESSAGE = 100
WARM_UP = 10
WORKER_COUNTS = (1, 2, 4)
TICKS = os.sysconf("SC_CLK_TCK")


def messages(n: int) -> list[tuple[bytes, bytes, int]]:
    """``n`` datacenter samples over ``LINKS`` links, 100 per message, links interleaved
    so that every partition has work from the first message on."""
    steps = n // LINKS
    series = [synthesize_link_series("datacenter", steps, seed=k) for k in range(LINKS)]
    out = []
    for start in range(0, steps, PER_MESSAGE):
        for k, rows in enumerate(series):
            link = f"so-{k}"
            chunk = [
                link_sample("datacenter", link, i, 1.76e9 + i, rows[i])
                for i in range(start, min(start + PER_MESSAGE, steps))
            ]
            out.append((link.encode(), orjson.dumps({"samples": chunk}), len(chunk)))
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def members_joined(settings: Settings, workers: int, timeout_s: float) -> None:
    """Wait until the group is stable with ``workers`` members (its partitions assigned)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            (response,) = await admin.describe_consumer_groups([settings.app_id])
            (_, _, state, _, _, members) = response.groups[0]
            if state == "Stable" and len(members) == workers:
                return
            await asyncio.sleep(1.0)
    finally:
        await admin.close()
    msg = f"the group {settings.app_id} did not settle with {workers} members"
    raise RuntimeError(msg)


def one_case(workers: int, msgs: list[tuple[bytes, bytes, int]], tag: str) -> dict[str, float]:
    base = isolated_env(f"bench-scale-{workers}-{tag}") | {
        "NOVACRON_TOPIC_PARTITIONS": str(PARTITIONS)
    }
    envs = [base] + [base | {"NOVACRON_WEB_PORT": str(free_port())} for _ in range(workers - 1)]
    each = [settings_for(env) for env in envs]
    settings = each[0]
    procs = []
    try:
        for n, (env, own) in enumerate(zip(envs, each, strict=True)):
            log = Path(".novacron/logs") / f"bench-scale-{workers}-{tag}-{n}.log"
            procs.append(start_worker(own, log, env))
        for own, proc in zip(each, procs, strict=True):
            wait_healthy(own, proc, timeout_s=180)
        asyncio.run(members_joined(settings, workers, timeout_s=120))
        stack = Settings()
        client = redis.Redis.from_url(stack.redis_dsn)
        broker = int(Path(".novacron/run/kafka.pid").read_text().split()[0])
        n = sum(count for _, _, count in msgs)
        expected = n - LINKS * (WARM_UP - 1)

        async def measure() -> tuple[float, float]:
            counter = asyncio.create_task(
                count_until(settings, settings.topics.predictions, expected, 900)
            )
            await asyncio.sleep(1.0)
            started = await produce_all(settings, settings.topics.link, msgs)
            return started, await counter

        before = ([cpu_s(p.pid) for p in procs], cpu_s(broker), redis_cpu_s(client))
        started, finished = asyncio.run(measure())
        after = ([cpu_s(p.pid) for p in procs], cpu_s(broker), redis_cpu_s(client))
        seconds = finished - started
        worker_cpu = sum(a - b for a, b in zip(after[0], before[0], strict=True))
        return {
            "samples": n,
            "seconds": seconds,
            "samples_per_s": n / seconds,
            # µs of CPU per sample, whatever ran in the measured interval.
            "worker_cpu_us_per_sample": 1e6 * worker_cpu / n,
            "broker_cpu_us_per_sample": 1e6 * (after[1] - before[1]) / n,
            "redis_cpu_us_per_sample": 1e6 * (after[2] - before[2]) / n,
            "worker_cpu_share": [
                (a - b) / seconds for a, b in zip(after[0], before[0], strict=True)
            ],
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40_000, help="samples per case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench/results/scale_out.json"))
    args = parser.parse_args()
    msgs = messages(args.samples)
    runs: dict[int, list[dict[str, float]]] = {w: [] for w in WORKER_COUNTS}
    for r in range(args.repeat):
        order = WORKER_COUNTS[r % len(WORKER_COUNTS) :] + WORKER_COUNTS[: r % len(WORKER_COUNTS)]
        for workers in order:
            result = one_case(workers, msgs, f"{int(time.time())}-{r}")
            runs[workers].append(result)
            print(
                f"{workers} worker(s), round {r}: {result['samples_per_s']:,.0f} samples/s; "
                f"CPU µs/sample: workers {result['worker_cpu_us_per_sample']:.0f}, "
                f"broker {result['broker_cpu_us_per_sample']:.0f}, "
                f"redis {result['redis_cpu_us_per_sample']:.0f}",
                flush=True,
            )

    def median(workers: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[workers])

    medians: dict[str, Any] = {
        str(w): {
            key: median(w, key)
            for key in (
                "samples_per_s",
                "worker_cpu_us_per_sample",
                "broker_cpu_us_per_sample",
                "redis_cpu_us_per_sample",
            )
        }
        for w in WORKER_COUNTS
    }
    one = medians["1"]["samples_per_s"]
    for w in WORKER_COUNTS:
        medians[str(w)]["speed_up_vs_1"] = medians[str(w)]["samples_per_s"] / one
        # Where one shared Redis / broker would use a whole core at this cost per sample.
        medians[str(w)]["redis_core_saturates_at_samples_per_s"] = (
            1e6 / medians[str(w)]["redis_cpu_us_per_sample"]
        )
        medians[str(w)]["broker_core_saturates_at_samples_per_s"] = (
            1e6 / medians[str(w)]["broker_cpu_us_per_sample"]
        )
        medians[str(w)]["samples_per_worker_core_s"] = (
            1e6 / medians[str(w)]["worker_cpu_us_per_sample"]
        )
    summary = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "case": f"datacenter links, {PER_MESSAGE} samples per message, {LINKS} links, "
        f"{PARTITIONS} partitions, every shipped processor on",
        "medians": medians,
        "runs": {str(w): v for w, v in runs.items()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(medians, indent=2))


if __name__ == "__main__":
    try:
        main()
    finally:
        forget_isolated_topics()
