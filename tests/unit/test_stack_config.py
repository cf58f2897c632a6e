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


def test_secure_mode_has_only_tls_listeners_and_scram_users(tmp_path: Path) -> None:
    from novacron.stack_processes import stack_paths
    from novacron.stack_services import redis_cmd
    from novacron.stack_tls import ensure_material, kafka_scram_users

    settings = Settings(state_dir=tmp_path, kafka_port=19092, redis_port=16380)
    material = ensure_material(settings, stack_paths(settings))
    text = kafka_server_properties(settings, material)
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092"
    assert "PLAINTEXT://" not in props["listeners"]
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert material.admin_password in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    users = kafka_scram_users(material)
    assert f"SCRAM-SHA-512=[name=novacron,password={material.client_password}]" in users
    cmd = redis_cmd(settings, stack_paths(settings), material)
    # The plain port is switched off (the last --port wins) and the default user too.
    assert cmd[len(cmd) - 1 - cmd[::-1].index("--port") + 1] == "0"
    assert cmd[cmd.index("--tls-port") + 1] == "16380"
    assert ["--user", "default", "off"] == cmd[cmd.index("default") - 1 : cmd.index("default") + 2]
    # Made once: a second call reuses the CA, certificate and passwords.
    again = ensure_material(settings, stack_paths(settings))
    assert again.client_password == material.client_password
    assert again.ca.read_bytes() == material.ca.read_bytes()
    env = (tmp_path / "secure" / "credentials.env").read_text()
    assert "NOVACRON_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in env
