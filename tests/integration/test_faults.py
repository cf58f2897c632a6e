"""Faults on the real stack: Redis stopped mid-stream, a worker killed with kill -9,
a 900 KB poison message. Every event sent is checked for its output afterwards.

Each test runs its own worker (and, for the Redis test, its own Redis server), so the
shared stack of the other tests is never disturbed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer

from agents.settings import Settings
from novacron.demo import start_worker, wait_healthy
from online.link import LinkOnline

from .conftest import RedisServer, collect, free_port, isolated_env, settings_for, stop_worker

pytestmark = pytest.mark.integration

LINKS = 10


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def link_sample(n: int, i: int) -> dict[str, Any]:
    return {
        "event_id": f"link-{n}-{i}",
        "link_id": f"link-{n}",
        "mode": "datacenter",
        "ts": 1.76e9 + i,
        "bandwidth_mbps": 5000.0 + 300.0 * ((i * 7 + n) % 11),
        "latency_ms": 2.0,
        "packet_loss_pct": 0.0001,
        "jitter_ms": 0.2,
        "throughput_mbps": 4000.0 + 250.0 * ((i * 5 + n) % 13),
    }


async def stream_links(settings: Settings, rounds: int, per_second: float) -> list[str]:
    """Send ``rounds`` samples of every link, ``per_second`` rounds a second."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    sent: list[str] = []
    try:
        start = time.monotonic()
        for i in range(rounds):
            for n in range(LINKS):
                sample = link_sample(n, i)
                await producer.send(
                    settings.topics.link, orjson.dumps(sample), key=sample["link_id"].encode()
                )
                sent.append(sample["event_id"])
            await asyncio.sleep(max(0.0, start + (i + 1) / per_second - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def assert_every_event_learned(settings: Settings, sent: list[str]) -> None:
    """Each link's anomaly state and online state (learner, drift monitors), stored with
    its window, have learned every event sent for it exactly once (its sample count) and
    end at the last one: nothing lost, nothing learned twice, across the fault. Waits up
    to 30 s for the last batches to land."""
    want: dict[str, tuple[int, str, int, str]] = {}
    for event_id in sent:
        link = event_id.rsplit("-", 1)[0]
        count = want.get(link, (0, ""))[0]
        want[link] = (count + 1, event_id, count + 1, event_id)
    client = redis.Redis.from_url(settings.redis_dsn)
    try:
        deadline = time.monotonic() + 30
        while True:
            got = {}
            for link in want:
                key = f"{settings.redis_key_prefix}:state:link:{link}"
                head = client.hget(key, "anomaly.head")
                doc = orjson.loads(head) if head else {}
                online = client.hmget(key, ["online.link", "online.upto"])
                seen = None if online[0] is None else LinkOnline().load(online[0]).seen
                upto = None if online[1] is None else online[1].decode()
                got[link] = (doc.get("t"), doc.get("upto"), seen, upto)
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        client.close()
    assert got == want


def healthz(settings: Settings) -> tuple[int, dict[str, Any]]:
    url = f"http://{settings.web_host}:{settings.web_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def metric(settings: Settings, name: str) -> float:
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def assert_every_event_predicted(sent: list[str], predictions: list[dict[str, Any]]) -> None:
    """Per link, every event from its first prediction on has one; ids never disagree."""
    by_id: dict[str, dict[str, Any]] = {}
    for p in predictions:
        pid = p["prediction_id"]
        if pid in by_id:  # a redelivered batch: the same record again
            assert {k: v for k, v in p.items() if k != "produced_at"} == {
                k: v for k, v in by_id[pid].items() if k != "produced_at"
            }
        by_id[pid] = p
    predicted = {p["source_event_ids"][0] for p in by_id.values()}
    per_link: dict[str, list[int]] = defaultdict(list)
    for event in sent:
        _, n, i = event.split("-")
        if event in predicted:
            per_link[n].append(int(i))
    rounds = len(sent) // LINKS
    for n in map(str, range(LINKS)):
        got = sorted(per_link[n])
        assert got, f"link-{n} got no prediction"
        assert got[0] < 40, f"link-{n} first predicted at sample {got[0]}"
        missing = sorted(set(range(got[0], rounds)) - set(got))
        assert missing == [], (
            f"link-{n}: {len(missing)} events without a prediction: {missing[:10]}"
        )


def predictions_of(settings: Settings, sent: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every prediction record, read until all of ``sent`` past warm-up can be there."""
    topic = settings.topics.predictions
    out = asyncio.run(
        collect(settings, [topic], until=lambda r: len(r[topic]) >= len(sent) - 40 * LINKS,
                timeout_s=90, settle_s=5)
    )  # fmt: skip
    return out[topic]


def two_workers(
    tag: str, tmp_path: Path
) -> tuple[Settings, list[dict[str, str]], list[subprocess.Popen[bytes]]]:
    """Two workers of one group (their own web ports and static ids)."""
    env_a = isolated_env(tag)
    envs = [env_a, env_a | {"NOVACRON_WEB_PORT": str(free_port())}]
    started = [start(env, tmp_path / f"{n}.log") for n, env in enumerate(envs)]
    return started[0][0], envs, [proc for _, proc in started]


def start(env: dict[str, str], log: Path) -> tuple[Settings, subprocess.Popen[bytes]]:
    settings = settings_for(env)
    proc = start_worker(settings, log, env)
    wait_healthy(settings, proc, timeout_s=120)
    return settings, proc


def test_redis_stopped_for_10_s_mid_stream_loses_nothing(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    env = isolated_env("redis-outage") | {"NOVACRON_REDIS_URL": own_redis.url}
    log = tmp_path / "worker.log"
    settings, proc = start(env, log)
    try:

        async def scenario() -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
            streaming = asyncio.create_task(stream_links(settings, rounds=250, per_second=10))
            await asyncio.sleep(6)
            await asyncio.to_thread(own_redis.stop)
            health = []
            for _ in range(4):
                await asyncio.sleep(2.5)
                health.append(await asyncio.to_thread(healthz, settings))
            await asyncio.to_thread(own_redis.start)
            return await streaming, health

        sent, health = asyncio.run(scenario())
        assert_every_event_predicted(sent, [v for _, v in predictions_of(settings, sent)])
        assert_every_event_learned(settings, sent)
        # While Redis was down the worker said so, and waited instead of moving on.
        down = [body for status, body in health if status == 503]
        assert down, health
        assert any(b.get("blocked", {}).get("link", {}).get("component") == "redis" for b in down)
        assert metric(settings, 'novacron_batch_retries_total{component="redis"') > 0
        assert metric(settings, "novacron_blocked_seconds_total") >= 5
        assert proc.poll() is None, "the worker died"
        assert healthz(settings)[0] == 200
    finally:
        stop_worker(proc)


def test_worker_killed_with_kill_9_mid_stream_resumes_within_15_s(tmp_path: Path) -> None:
    env = isolated_env("kill-9")
    log = tmp_path / "worker.log"
    settings, proc = start(env, log)
    try:

        async def scenario() -> tuple[list[str], float]:
            streaming = asyncio.create_task(stream_links(settings, rounds=250, per_second=10))
            await asyncio.sleep(8)
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            return await streaming, await asyncio.to_thread(time.time)

        restarted: dict[str, Any] = {}

        async def with_restart() -> tuple[list[str], float]:
            task = asyncio.create_task(scenario())
            while not task.done() and proc.poll() is None:
                await asyncio.sleep(0.05)
            restarted["at"] = time.time()
            restarted["proc"] = start_worker(settings, log, env)
            return await task

        sent, _ = asyncio.run(with_restart())
        new_proc = restarted["proc"]
        try:
            values = [v for _, v in predictions_of(settings, sent)]
            assert_every_event_predicted(sent, values)
            assert_every_event_learned(settings, sent)
            after = sorted(v["produced_at"] for v in values if v["produced_at"] > restarted["at"])
            assert after, "no output after the restart"
            resumed = after[0] - restarted["at"]
            assert resumed < 15.0, f"first output {resumed:.1f} s after the restart"
        finally:
            stop_worker(new_proc)
    finally:
        stop_worker(proc)


def test_a_900_kb_poison_message_gives_one_dead_letter_that_fits(tmp_path: Path) -> None:
    env = isolated_env("poison")
    settings, proc = start(env, tmp_path / "worker.log")
    try:
        poison = b'{"link_id": "link-0", "ts": 1760000000, "mode": "' + b"x" * 900_000 + b'"}'
        good = [link_sample(n, i) for i in range(50) for n in range(LINKS)]

        async def scenario() -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.bootstrap_servers, acks="all",
                max_request_size=2_000_000,
            )  # fmt: skip
            await producer.start()
            try:
                await producer.send(settings.topics.link, poison, key=b"link-0")
                for sample in good:
                    await producer.send(
                        settings.topics.link, orjson.dumps(sample),
                        key=sample["link_id"].encode(),
                    )  # fmt: skip
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(scenario())
        topics = [settings.topics.predictions, settings.topics.dlq]
        out = asyncio.run(
            collect(
                settings, topics,
                until=lambda r: len(r[topics[1]]) >= 1
                and {v["source_event_ids"][0] for _, v in r[topics[0]]} >= {"link-0-49"},
                timeout_s=90, settle_s=3,
            )
        )  # fmt: skip
        dead = [v for _, v in out[settings.topics.dlq]]
        assert len(dead) == 1
        assert dead[0]["error_kind"] == "schema_violation"
        assert dead[0]["original_truncated"] is True
        assert dead[0]["original_size_bytes"] == len(poison)
        assert len(orjson.dumps(dead[0])) < 1_000_000
        assert_every_event_predicted(
            [s["event_id"] for s in good], [v for _, v in out[settings.topics.predictions]]
        )
        assert_every_event_learned(settings, [s["event_id"] for s in good])
        assert proc.poll() is None
    finally:
        stop_worker(proc)


def test_rolling_restart_of_two_workers_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM finishes the batch in flight and exits in bounded time; the group goes on."""
    settings, envs, procs = two_workers("rolling", tmp_path)
    exits: list[float] = []
    try:

        async def scenario() -> list[str]:
            streaming = asyncio.create_task(stream_links(settings, rounds=300, per_second=10))
            for n, env in enumerate(envs):
                await asyncio.sleep(7)
                began = time.monotonic()
                procs[n].send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(procs[n].wait, 60)
                exits.append(time.monotonic() - began)
                assert code == 0, f"worker {n} exited with {code}"
                procs[n] = start_worker(settings_for(env), tmp_path / f"{n}.log", env)
            return await streaming

        sent = asyncio.run(scenario())
        values = [v for _, v in predictions_of(settings, sent)]
        assert_every_event_predicted(sent, values)
        duplicates = len(values) - len({v["prediction_id"] for v in values})
        assert duplicates <= 2 * settings.batch_max, duplicates
        assert max(exits) < settings.shutdown_timeout_s + 10, exits
    finally:
        for proc in procs:
            stop_worker(proc)


def test_a_dead_worker_s_partitions_move_to_the_other_within_15_s(tmp_path: Path) -> None:
    """kill -9 with no restart: the group's other worker takes the partitions over."""
    settings, _, (proc_a, proc_b) = two_workers("handover", tmp_path)
    try:

        async def scenario() -> tuple[list[str], float]:
            streaming = asyncio.create_task(stream_links(settings, rounds=250, per_second=10))
            await asyncio.sleep(8)
            os.kill(proc_a.pid, signal.SIGKILL)
            killed = time.time()
            return await streaming, killed

        sent, killed = asyncio.run(scenario())
        values = [v for _, v in predictions_of(settings, sent)]
        assert_every_event_predicted(sent, values)
        # Every link is served again soon after the kill, whichever worker had it.
        resumed = []
        for n in range(LINKS):
            after = [v["produced_at"] for v in values
                     if v["link_id"] == f"link-{n}" and v["produced_at"] > killed]  # fmt: skip
            resumed.append(min(after) - killed)
        assert max(resumed) < 15.0, sorted(resumed)
    finally:
        stop_worker(proc_a)
        stop_worker(proc_b)
