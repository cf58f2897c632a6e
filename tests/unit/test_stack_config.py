"""The broker configuration that ``novacron stack up`` generates, checked without processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.settings import Settings
from novacron.stack_services import kafka_server_properties


def _parse(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.fixture
def props(tmp_path: Path) -> dict[str, str]:
    settings = Settings(
        state_dir=tmp_path / "state",
        kafka_host="127.0.0.1",
        kafka_port=29092,
        kafka_controller_port=29093,
    )
    return _parse(kafka_server_properties(settings))


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("process.roles", "broker,controller"),
        ("node.id", "1"),
        ("controller.quorum.voters", "1@127.0.0.1:29093"),
        ("listeners", "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"),
        ("advertised.listeners", "PLAINTEXT://127.0.0.1:29092"),
        ("controller.listener.names", "CONTROLLER"),
        ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"),
        ("num.partitions", "4"),
        ("auto.create.topics.enable", "true"),
        ("offsets.topic.replication.factor", "1"),
        ("transaction.state.log.replication.factor", "1"),
        ("transaction.state.log.min.isr", "1"),
        ("group.initial.rebalance.delay.ms", "0"),
    ],
)
def test_server_properties_value(props: dict[str, str], key: str, expected: str) -> None:
    assert props[key] == expected


def test_data_lives_under_the_state_dir(props: dict[str, str], tmp_path: Path) -> None:
    assert Path(props["log.dirs"]) == (tmp_path / "state" / "kafka" / "data").resolve()


def test_default_ports_are_the_documented_ones(tmp_path: Path) -> None:
    props = _parse(kafka_server_properties(Settings(state_dir=tmp_path)))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"


def test_no_key_is_written_twice(tmp_path: Path) -> None:
    text = kafka_server_properties(Settings(state_dir=tmp_path))
    keys = [line.split("=", 1)[0] for line in text.splitlines() if not line.startswith("#")]
    assert len(keys) == len(set(keys))
