"""The local stack that ``make test`` starts (``novacron stack up``), checked for real.

These tests fail, never skip, when Kafka or Redis is not running: under
``make test`` and CI a missing service is a broken set-up, not an excuse.
"""

from __future__ import annotations

import pytest
import redis
from aiokafka import AIOKafkaClient

from agents.settings import Settings
from novacron.stack import render, stack_status, stack_up

pytestmark = pytest.mark.integration

HINT = "start the stack with `make stack-up` (or `novacron stack up`)"


@pytest.fixture
def settings() -> Settings:
    return Settings()


def test_status_reports_both_components_up_and_reachable(settings: Settings) -> None:
    status = stack_status(settings)
    for comp in status.components:
        assert comp.state in {"running", "foreign"}, f"{HINT}\n{render(status)}"
        assert comp.healthy, f"{comp.name} does not answer ({comp.note}); {HINT}"
    assert {c.name for c in status.components} == {"kafka", "redis"}


def test_second_stack_up_reuses_the_running_processes(settings: Settings) -> None:
    before = stack_status(settings)
    assert all(c.healthy for c in before.components), f"{HINT}\n{render(before)}"
    after = stack_up(settings, timeout_s=30)
    assert [(c.name, c.state, c.pid) for c in after.components] == [
        (c.name, c.state, c.pid) for c in before.components
    ]
    assert all("reused" in line for line in after.actions), after.actions
    assert not any("started" in line for line in after.actions), after.actions


def test_redis_answers_ping_at_the_configured_address(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_dsn, socket_timeout=5, socket_connect_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


async def test_kafka_answers_a_metadata_request_at_the_configured_address(
    settings: Settings,
) -> None:
    client = AIOKafkaClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=10_000)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
    finally:
        await client.close()
    assert len(metadata.brokers()) >= 1
