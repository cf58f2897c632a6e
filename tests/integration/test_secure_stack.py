"""The secure stack: Kafka SASL_SSL (SCRAM-SHA-512), Redis TLS with an ACL user, a worker
round trip through both, and plain clients refused.

`novacron stack up --secure` starts a second stack of its own (state dir and ports),
beside the plain one the other tests use.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from aiokafka import AIOKafkaClient

from agents.connections import redis_options
from agents.settings import Settings
from novacron.demo import start_worker, wait_healthy

from .conftest import collect, free_port, isolated_env, send, settings_for, stop_worker

pytestmark = pytest.mark.integration

NOVACRON = str(Path(sys.executable).with_name("novacron"))


@pytest.fixture(scope="module")
def secure_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("secure-stack")
    env = {
        "NOVACRON_STATE_DIR": str(state),
        "NOVACRON_KAFKA_PORT": str(free_port()),
        "NOVACRON_KAFKA_CONTROLLER_PORT": str(free_port()),
        "NOVACRON_REDIS_PORT": str(free_port()),
    }
    # The broker's jars, as `make setup` fetched them for the plain stack.
    (state / "kafka").mkdir()
    (state / "kafka" / "libs").symlink_to((Path(Settings().state_dir) / "kafka" / "libs").resolve())
    full = {**os.environ, **env}
    up = subprocess.run(
        [NOVACRON, "stack", "up", "--secure", "--timeout", "120"],
        env=full, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        credentials = state / "secure" / "credentials.env"
        assert oct(credentials.stat().st_mode & 0o777) == "0o600"
        pairs = [line.split("=", 1) for line in credentials.read_text().splitlines()]
        yield env | dict(pairs)
    finally:
        subprocess.run(
            [NOVACRON, "stack", "down", "--purge"], env=full, capture_output=True, timeout=120,
            check=False,
        )  # fmt: skip


def test_plain_clients_are_refused(secure_env: dict[str, str]) -> None:
    port = int(secure_env["NOVACRON_REDIS_PORT"])
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_timeout=3).ping()  # no TLS
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=3, ssl=True, ssl_cert_reqs="none").ping()

    async def kafka_plaintext() -> None:
        client = AIOKafkaClient(
            bootstrap_servers=f"127.0.0.1:{secure_env['NOVACRON_KAFKA_PORT']}",
            request_timeout_ms=3000,
        )
        try:
            await asyncio.wait_for(client.bootstrap(), 10)
        finally:
            await client.close()

    with pytest.raises(Exception, match="bootstrap|closed|Connect"):
        asyncio.run(kafka_plaintext())


def test_worker_round_trip_over_sasl_ssl_and_redis_tls(
    secure_env: dict[str, str], tmp_path: Path
) -> None:
    env = isolated_env("secure") | secure_env
    settings = settings_for(env)
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.redis_tls
    assert settings.redis_dsn.startswith("rediss://")
    log = tmp_path / "worker.log"
    proc = start_worker(settings, log, env)
    try:
        wait_healthy(settings, proc, timeout_s=120)
        samples = [
            {"event_id": f"s-{n}-{i}", "link_id": f"link-{n}", "mode": "datacenter",
             "ts": 1.76e9 + i, "bandwidth_mbps": 5000.0 + 100 * (i % 5), "latency_ms": 2.0}
            for i in range(30)
            for n in range(3)
        ]  # fmt: skip
        asyncio.run(
            send(settings, settings.topics.link,
                 [(s["link_id"].encode(), orjson.dumps(s)) for s in samples])
        )  # fmt: skip
        topic = settings.topics.predictions
        out = asyncio.run(
            collect(settings, [topic], until=lambda r: len(r[topic]) >= 3 * 20, timeout_s=90)
        )
        predicted = {v["source_event_ids"][0] for _, v in out[topic]}
        for n in range(3):
            got = sorted(int(e.rsplit("-", 1)[1]) for e in predicted if e.startswith(f"s-{n}-"))
            assert got and got == list(range(got[0], 30)), (n, got)
        # The windows went through the TLS connection with the ACL user.
        client = redis.Redis.from_url(settings.redis_dsn, **redis_options(settings))
        try:
            assert client.llen(f"{settings.redis_key_prefix}:link:link-0") == 30
        finally:
            client.close()
    finally:
        stop_worker(proc)
