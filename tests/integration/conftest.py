"""A real worker process on the real stack, isolated per test module by topic names."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from agents.connections import kafka_options
from agents.settings import Settings
from novacron.demo import start_worker, wait_healthy
from novacron.stack_services import REDIS_SERVER
from streams.topics import roles

REGISTRY_ROOT = Path(tempfile.gettempdir()) / "novacron-test-registries"
ISOLATED: set[str] = set()
"""The suffixes :func:`isolated_env` handed out in this session: their topics (ours and
Faust's own) are deleted when the session ends."""


class RedisServer:
    """A redis-server of the test's own, persisting to its folder across restarts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(  # noqa: S603 - Debian's redis-server
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.folder), "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--logfile", str(self.folder / "redis.log")],
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: redis-server fsyncs its append-only file and exits
            self.proc.wait(timeout=20)
            self.proc = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class WorkerHandle:
    settings: Settings
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path


def isolated_env(tag: str) -> dict[str, str]:
    """Environment giving a worker its own consumer group, topics and web port."""
    suffix = f"{tag}-{uuid.uuid4().hex[:8]}"
    ISOLATED.add(suffix)
    env = {
        "NOVACRON_APP_ID": f"novacron-test-{suffix}",
        "NOVACRON_WEB_PORT": str(free_port()),
        "NOVACRON_BATCH_WITHIN_S": "0.02",
        # Windows are keyed by link id; a run must not find an earlier run's windows.
        "NOVACRON_REDIS_KEY_PREFIX": f"novacron-test:{suffix}",
        # A registry of its own, seeded from the shipped models when the worker starts.
        "NOVACRON_REGISTRY_URL": f"sqlite:///{REGISTRY_ROOT}/{suffix}/registry.sqlite",
        "NOVACRON_ARTIFACT_DIR": f"{REGISTRY_ROOT}/{suffix}/artifacts",
    }
    for role in roles():
        env[f"NOVACRON_TOPICS__{role.upper()}"] = f"test.{suffix}.{role}"
    return env


@pytest.fixture(scope="session", autouse=True)
def delete_isolated_topics() -> Iterator[None]:
    """After the session, delete the topics of every isolated environment it made: a
    broker that keeps every run's topics (thousands of partitions after a few runs of
    ``make test``) runs out of heap."""
    yield
    forget_isolated_topics()


def forget_isolated_topics() -> None:
    """Delete the topics of the isolated environments made so far in this process (the
    session fixture, and the benchmarks that start workers, call it when they end)."""
    if ISOLATED:
        with contextlib.suppress(Exception):  # a stopped broker keeps them: nothing to do
            run(delete_topics_of(sorted(ISOLATED)))


async def delete_topics_of(suffixes: list[str]) -> int:
    """Delete the broker's topics whose names contain one of ``suffixes``."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=Settings().bootstrap_servers, request_timeout_ms=30_000
    )
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if any(s in t for s in suffixes)]
        for start in range(0, len(names), 200):
            await admin.delete_topics(names[start : start + 200])
        return len(names)
    finally:
        await admin.close()


def settings_for(env: dict[str, str]) -> Settings:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerHandle]:
    env = isolated_env(request.module.__name__.rsplit(".", 1)[-1].replace("_", "-"))
    settings = settings_for(env)
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(settings, log, env)
    try:
        wait_healthy(settings, proc, timeout_s=120)
        yield WorkerHandle(settings, env, proc, log)
    except RuntimeError as exc:
        pytest.fail(f"{exc}; is the stack up (`make stack-up`)?\n{log.read_text()[-3000:]}")
    finally:
        stop_worker(proc)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if the worker has not exited 40 s later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def send(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        linger_ms=5,
        acks="all",
        **kafka_options(settings),
    )
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def collect(
    settings: Settings,
    topics: list[str],
    *,
    until: Any,
    timeout_s: float = 60.0,
    settle_s: float = 2.0,
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Read topics from the start until ``until(records)`` holds, then ``settle_s`` more."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        **kafka_options(settings),
    )
    await consumer.start()
    records: dict[str, list[tuple[str, dict[str, Any]]]] = {t: [] for t in topics}
    deadline = time.monotonic() + timeout_s
    settle_deadline: float | None = None
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for tp, messages in batches.items():
                for m in messages:
                    records[tp.topic].append(
                        (m.key.decode() if m.key else "", orjson.loads(m.value))
                    )
            if settle_deadline is None and until(records):
                settle_deadline = time.monotonic() + settle_s
            if settle_deadline is not None and time.monotonic() >= settle_deadline:
                break
    finally:
        await consumer.stop()
    return records


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def worker_python() -> str:
    return sys.executable
