"""The Go consumer in examples/go against a real worker's output topics.

The migration orchestrator reads NovaCron's topics from Go. This builds the example
consumer, lets a worker publish predictions (and host outputs) on topics of its own,
adds a redelivered copy, an older prediction and a record of a newer schema version,
and checks the Go program's view against what Python reads from the same topics.
"""

from __future__ import annotations

import functools
import os
import random
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.connections import kafka_options
from agents.settings import Settings

from .conftest import WorkerHandle, collect, run, send

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GO_MODULE = ROOT / "examples" / "go"
SCHEMAS = ROOT / "schemas"
WARM_UP = 10  # the first prediction of a link is made at its 10th sample (index 9)
LINKS = [f"go-link-{n}" for n in range(4)]
PER_LINK = 24
HOSTS = [f"go-host-{n}" for n in range(2)]
PER_HOST = 300


def go_version(text: str) -> tuple[int, ...]:
    """``"1.26.0"`` or ``"go1.26.8"`` as a tuple of numbers."""
    return tuple(int(part) for part in re.findall(r"\d+", text.removeprefix("go"))[:3])


@functools.cache
def go_tool() -> str:
    """The first Go on PATH or in /usr/local/go/bin that examples/go/go.mod accepts, as
    scripts/setup-system.sh picks it."""
    match = re.search(r"^go (\S+)$", (GO_MODULE / "go.mod").read_text(), re.MULTILINE)
    assert match, "examples/go/go.mod has no go directive"
    need = go_version(match[1])
    found = []
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate is None or not Path(candidate).is_file():
            continue
        banner = subprocess.run(  # noqa: S603 - a Go toolchain
            [candidate, "version"],
            env={**os.environ, "GOTOOLCHAIN": "local"},
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        have = banner.split()[2]
        found.append(f"{have} at {candidate}")
        if go_version(have) >= need:
            return candidate
    where = ", ".join(found) or "none on PATH nor in /usr/local/go/bin"
    pytest.fail(
        f"examples/go needs Go {match[1]} or newer; found {where}: run `make setup` "
        "(scripts/setup-system.sh installs Go, or says what to install)"
    )


def go_env() -> dict[str, str]:
    flags = f"{os.environ.get('GOFLAGS', '')} -mod=readonly".strip()
    return {**os.environ, "GOFLAGS": flags}


def go(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the Go toolchain on our own module
        [go_tool(), *args],
        cwd=GO_MODULE,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="module")
def consumer_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("go") / "novacron-consumer"
    built = go("build", "-o", str(binary), ".")
    assert built.returncode == 0, f"go build failed:\n{built.stderr}"
    return binary


def test_the_example_module_is_clean_and_its_tests_pass() -> None:
    """gofmt, go vet and go test (the struct-against-schema check among them)."""
    gofmt = shutil.which("gofmt", path=str(Path(go_tool()).parent)) or "gofmt"
    unformatted = subprocess.run(  # noqa: S603
        [gofmt, "-l", "."], cwd=GO_MODULE, capture_output=True, text=True, check=True
    ).stdout.split()
    assert unformatted == [], f"gofmt would change {unformatted}"
    vet = go("vet", "./...")
    assert vet.returncode == 0, vet.stderr
    tested = go("test", "-count=1", "./...")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "ok  \tgithub.com/novacron/novacron/examples/go/novacron" in tested.stdout


def link_message(link: str, i: int) -> tuple[bytes, bytes]:
    value = {
        "event_id": f"{link}-{i}",
        "link_id": link,
        "ts": 1.75e9 + i,
        "mode": "internet" if link.endswith(("0", "2")) else "datacenter",
        "bandwidth_mbps": 300.0 + (i * 53) % 120,
        "latency_ms": 20.0 + i % 7,
    }
    return link.encode(), orjson.dumps(value)


def host_messages() -> list[tuple[bytes, bytes]]:
    """Quiet CPU on two hosts, and a 12-sample spike on the first: one alert, opened and
    resolved, and a few scaling actions."""
    rng = random.Random(3)
    messages = []
    for i in range(PER_HOST):
        for host in HOSTS:
            spike = 55.0 if host == HOSTS[0] and 250 <= i < 262 else 0.0
            value = {
                "event_id": f"{host}-{i}",
                "host_id": host,
                "ts": 1.75e9 + 60.0 * i,
                "metrics": {"cpu_pct": round(30.0 + rng.gauss(0, 2) + spike, 3),
                            "mem_pct": 40.0 + i % 3},
            }  # fmt: skip
            messages.append((host.encode(), orjson.dumps(value)))
    return messages


async def produce(
    settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]
) -> list[tuple[int, int]]:
    """Send messages one by one and return each one's (partition, offset)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", **kafka_options(settings)
    )
    await producer.start()
    try:
        placed = []
        for key, value in messages:
            meta = await producer.send_and_wait(topic, value, key=key)
            placed.append((meta.partition, meta.offset))
        return placed
    finally:
        await producer.stop()


def consume_in_go(
    binary: Path, settings: Settings, group: str, *extra: str
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Run the Go consumer until it exits; its record lines and its summary."""
    t = settings.topics
    done = subprocess.run(  # noqa: S603 - the binary this module built
        [
            str(binary),
            "--brokers", settings.bootstrap_servers,
            "--group", group,
            "--predictions-topic", t.predictions,
            "--alerts-topic", t.alerts,
            "--scaling-topic", t.scaling,
            "--schemas", str(SCHEMAS),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    *lines, last = done.stdout.splitlines()
    records = [dict(field.split("=", 1) for field in shlex.split(line)) for line in lines]
    return records, orjson.loads(last)


def newest_by_ts(predictions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for p in predictions:
        if p["link_id"] not in latest or p["ts"] > latest[p["link_id"]]["ts"]:
            latest[p["link_id"]] = p
    return latest


def test_the_go_consumer_sees_what_the_worker_published(
    worker: WorkerHandle, consumer_binary: Path
) -> None:
    t = worker.settings.topics
    run(send(worker.settings, t.host, host_messages()))
    run(send(worker.settings, t.link, [link_message(k, i) for i in range(PER_LINK) for k in LINKS]))
    expected = len(LINKS) * (PER_LINK - WARM_UP + 1)
    out = run(
        collect(
            worker.settings,
            [t.predictions, t.alerts, t.scaling],
            until=lambda r: len(r[t.predictions]) >= expected and len(r[t.alerts]) >= 2,
            settle_s=3.0,
        )
    )
    published = [v for _, v in out[t.predictions]]
    assert len(published) == expected
    ids = {p["prediction_id"] for p in published}
    assert len(ids) == expected

    # A redelivered copy of a prediction; a prediction the consumer has not seen, but
    # older than its link's newest; a record of a schema version it does not know.
    first = min(published, key=lambda p: p["ts"])
    older = {**first, "prediction_id": first["prediction_id"] + ":replayed"}
    newer_schema = {**first, "prediction_id": first["prediction_id"] + ":v2", "schema_version": 2}
    key = first["link_id"].encode()
    (_, dup_offset), (_, older_offset), (_, bad_offset) = run(
        produce(
            worker.settings,
            t.predictions,
            [(key, orjson.dumps(first)), (key, orjson.dumps(older)),
             (key, orjson.dumps(newer_schema))],
        )
    )  # fmt: skip

    group = f"go-consumer-{uuid.uuid4().hex[:8]}"
    lines, summary = consume_in_go(consumer_binary, worker.settings, group, "--idle-exit", "4s")
    assert summary["exit"] == "idle"

    by_topic: dict[str, list[dict[str, str]]] = {}
    for line in lines:
        by_topic.setdefault(line["topic"], []).append(line)
    pred_lines = by_topic[t.predictions]
    valid = [line["id"] for line in pred_lines if line["outcome"] == "valid"]
    assert len(valid) == len(set(valid)), "a prediction was applied twice"
    assert set(valid) == ids | {older["prediction_id"]}
    [dup] = [line for line in pred_lines if line["outcome"] == "duplicate"]
    assert (dup["id"], int(dup["offset"])) == (first["prediction_id"], dup_offset)
    [stale] = [line for line in pred_lines if line.get("stale") == "true"]
    assert (stale["id"], int(stale["offset"])) == (older["prediction_id"], older_offset)
    [bad] = [line for line in pred_lines if line["outcome"] == "invalid"]
    assert int(bad["offset"]) == bad_offset
    assert bad["error"] == "unknown_schema_version"
    assert bad["reason"] == "schema_version must be 1, got 2"

    assert summary["topics"][t.predictions] == {
        "role": "predictions",
        "received": expected + 3,
        "valid": expected + 1,
        "invalid": 1,
        "duplicates": 1,
    }
    want_latest = {
        link: {
            "prediction_id": p["prediction_id"],
            "ts": p["ts"],
            "predicted_bandwidth_mbps": p["predicted_bandwidth_mbps"],
        }
        for link, p in newest_by_ts(published).items()
    }
    got_latest = {
        link: {k: p[k] for k in ("prediction_id", "ts", "predicted_bandwidth_mbps")}
        for link, p in summary["latest_predictions"].items()
    }
    assert got_latest == want_latest
    assert set(want_latest) == set(LINKS)

    # The worker's host outputs: every record valid, each applied once.
    for topic, role, id_of in (
        (t.alerts, "alerts", lambda v: f"{v['alert_id']}#{v['seq']}"),
        (t.scaling, "scaling", lambda v: v["action_id"]),
    ):
        python_ids = sorted(id_of(v) for _, v in out[topic])
        assert python_ids, f"the worker published nothing on {topic}"
        go_ids = sorted(line["id"] for line in by_topic.get(topic, []))
        assert go_ids == python_ids, topic
        n = len(python_ids)
        assert summary["topics"][topic] == {
            "role": role, "received": n, "valid": n, "invalid": 0, "duplicates": 0
        }  # fmt: skip

    # Offsets were committed as records were handled: the group has nothing left.
    again, summary = consume_in_go(consumer_binary, worker.settings, group, "--idle-exit", "3s")
    assert again == []
    assert {c["received"] for c in summary["topics"].values()} == {0}

    # Stopped after 10 records, a consumer of another group commits those 10 and no
    # more: the next run of that group reads exactly the rest.
    group = f"go-consumer-{uuid.uuid4().hex[:8]}"
    part, summary = consume_in_go(consumer_binary, worker.settings, group, "--max-records", "10")
    assert summary["exit"] == "max-records"
    assert len(part) == 10
    rest, _ = consume_in_go(consumer_binary, worker.settings, group, "--idle-exit", "3s")
    where = [(line["topic"], line["partition"], line["offset"]) for line in part + rest]
    assert sorted(where) == sorted((x["topic"], x["partition"], x["offset"]) for x in lines)
