"""Faults on the real stack for the host path with the workload and scaling processors:
Redis stopped mid-stream, the worker killed with kill -9 and restarted, and a poison
message in the stream. Every host event is then counted: each host's scaling state ends
at its last event (nothing lost), the poison gives one dead letter, and the workload
classes and scaling actions are exactly those of a fault-free run of the same pipeline
in process (nothing lost, nothing decided twice: a redelivered record repeats its id
and content).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer

from agents.settings import Settings
from agents.wiring import model_source, pipeline_for
from models.serving import ModelHolder
from novacron.demo import start_worker
from streams.pipeline import RawMessage
from streams.records import SourceRef
from streams.store import InMemoryWindowStore

from .conftest import RedisServer, collect, isolated_env, run, stop_worker
from .test_faults import start

pytestmark = pytest.mark.integration

HOSTS = 4
SAMPLES = 700
POISON = b'{"host_id": "fc-0", "ts": "yesterday", "metrics": {"cpu_pct": 50}}'


def host_messages() -> list[tuple[bytes, bytes]]:
    """Hosts with a compressed daily cycle in CPU (one sample a minute, a day in 480),
    round robin, the poison message a third of the way in."""
    rng = np.random.default_rng(4)
    out = []
    for i in range(SAMPLES):
        for h in range(HOSTS):
            cpu = 50 - 38 * np.cos(2 * np.pi * (i + 60 * h) / 480) + rng.normal(0, 2.0)
            value = {
                "event_id": f"fc-{h}-{i}",
                "host_id": f"fc-{h}",
                "ts": 1.75e9 + 60.0 * i,
                "metrics": {"cpu_pct": round(float(np.clip(cpu, 0, 100)), 3), "mem_pct": 40.0},
            }
            out.append((f"fc-{h}".encode(), orjson.dumps(value)))
        if i == SAMPLES // 3:
            out.append((b"fc-0", POISON))
    return out


async def send_paced(settings: Settings, messages: list[tuple[bytes, bytes]], rate: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        begun = time.monotonic()
        for n, (key, value) in enumerate(messages):
            await producer.send(settings.topics.host, value, key=key)
            await asyncio.sleep(max(0.0, begun + (n + 1) / rate - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()


def reference(messages: list[tuple[bytes, bytes]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The classes and actions of the same messages through the worker's pipeline in
    process, without faults, by id (``produced_at`` left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            registry_url=f"sqlite:///{tmp}/r.sqlite", artifact_dir=Path(tmp) / "artifacts"
        )
        pipe = pipeline_for(
            settings, ModelHolder(model_source(settings)), InMemoryWindowStore(), time.time
        )
        raws = [
            RawMessage(value, SourceRef(settings.topics.host, 0, n, key=key.decode()))
            for n, (key, value) in enumerate(messages)
        ]
        outputs = []
        for a in range(0, len(raws), 200):
            outputs += asyncio.run(pipe.handle("host", raws[a : a + 200])).outputs
    return by_id([orjson.loads(r.value) for r in outputs])


def by_id(values: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {"classes": {}, "actions": {}}
    for value in values:
        body = {k: v for k, v in value.items() if k != "produced_at"}
        if "class_id" in value:
            assert out["classes"].setdefault(value["class_id"], body) == body
        elif "action_id" in value:
            assert out["actions"].setdefault(value["action_id"], body) == body
    return out


def wait_until_processed(settings: Settings, timeout_s: float = 120) -> dict[str, str | None]:
    want = {f"fc-{h}": f"fc-{h}-{SAMPLES - 1}" for h in range(HOSTS)}
    client = redis.Redis.from_url(settings.redis_dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            got = {}
            for host in want:
                upto = client.hget(f"{settings.redis_key_prefix}:state:host:{host}", "scaling.upto")
                got[host] = None if upto is None else upto.decode()
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.5)
    finally:
        client.close()


def test_redis_outage_kill_9_and_poison_lose_and_repeat_no_class_or_action(
    tmp_path: Path,
) -> None:
    messages = host_messages()
    expected = reference(messages)
    assert expected["actions"] and expected["classes"], "the scenario must decide something"

    own_redis = RedisServer(tmp_path / "redis")
    own_redis.start()
    env = isolated_env("capacity-faults") | {"NOVACRON_REDIS_URL": own_redis.url}
    log = tmp_path / "worker.log"
    settings, proc = start(env, log)
    procs: list[subprocess.Popen[bytes]] = [proc]
    try:

        async def scenario() -> None:
            sending = asyncio.create_task(send_paced(settings, messages, rate=120.0))
            await asyncio.sleep(5)
            await asyncio.to_thread(own_redis.stop)  # the worker waits, retrying
            await asyncio.sleep(6)
            await asyncio.to_thread(own_redis.start)
            await asyncio.sleep(5)
            os.kill(procs[0].pid, signal.SIGKILL)  # mid-stream, batches in flight
            await asyncio.to_thread(procs[0].wait)
            procs.append(start_worker(settings, log, env))
            await sending

        asyncio.run(scenario())
        got = wait_until_processed(settings)
        assert got == {f"fc-{h}": f"fc-{h}-{SAMPLES - 1}" for h in range(HOSTS)}
        t = settings.topics
        out = run(
            collect(
                settings,
                [t.workload, t.scaling, t.dlq],
                until=lambda r: len(r[t.scaling]) >= len(expected["actions"]),
                timeout_s=120,
                settle_s=3.0,
            )
        )
        dead = [v for _, v in out[t.dlq]]
        assert len({d["original_sha256"] for d in dead}) == 1, dead
        assert dead[0]["error_kind"] == "schema_violation"
        streamed = by_id([v for _, v in out[t.workload]] + [v for _, v in out[t.scaling]])
        assert streamed["actions"] == expected["actions"]
        assert streamed["classes"] == expected["classes"]
        assert procs[-1].poll() is None, "the restarted worker died"
    finally:
        for p in procs:
            stop_worker(p)
        own_redis.stop()
