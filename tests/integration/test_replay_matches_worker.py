"""`novacron replay` (the command) writes exactly the records the worker sends for the same input.

10,000 messages, link and host telemetry interleaved with a few refused ones, go once
through the CLI and once through Kafka to a real worker on the real stack (same
registry, so the same shipped models). Predictions must be identical apart from
``produced_at``; dead letters identical apart from where they came from; host windows
in Redis hold the hosts' newest events.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis

from models.synthetic import synthesize_link_series
from streams.store import decode_entry

from .conftest import WorkerHandle, collect, run, send

pytestmark = pytest.mark.integration

LINKS = 16
ROWS_PER_LINK = 500  # 8,000 link messages
HOSTS = 8
ROWS_PER_HOST = 249  # 1,992 host messages
BAD = [b'{"link_id": "x"', b'{"link_id": "l", "ts": 1, "mode": "dc", "latency_ms": 1}',
       b'{"host_id": "h", "ts": 1, "metrics": {"cpu_pct": "high"}}', b'{"schema_version": 9}',
       b'{"host_id": "h", "ts": 1, "metrics": {}}', b"[1, 2]", b'{"samples": []}',
       b'{"link_id": "l", "ts": 1, "mode": "internet"}']  # fmt: skip
TOTAL = LINKS * ROWS_PER_LINK + HOSTS * ROWS_PER_HOST + len(BAD)


def write_jsonl(path: Path) -> list[tuple[str, bytes]]:
    """The input as (input role, message) pairs, also written as JSON lines."""
    series = {
        n: synthesize_link_series("internet" if n % 2 else "datacenter", ROWS_PER_LINK, seed=n)
        for n in range(LINKS)
    }
    rng = np.random.default_rng(3)
    out: list[tuple[str, bytes]] = []
    names = ("bandwidth_mbps", "latency_ms", "packet_loss_pct", "jitter_ms", "throughput_mbps")
    for i in range(ROWS_PER_LINK):
        for n in range(LINKS):
            sample: dict[str, Any] = {
                "event_id": f"link-{n:02d}-{i}",
                "link_id": f"link-{n:02d}",
                "mode": "internet" if n % 2 else "datacenter",
                "ts": 1.76e9 + i,
            }
            for name, value in zip(names, series[n][i], strict=True):
                sample[name] = round(float(value), 3)
            if i % 50 == 7:
                del sample["bandwidth_mbps"]  # a probe without it: throughput stands in
            out.append(("link", orjson.dumps(sample)))
        if i < ROWS_PER_HOST:
            for h in range(HOSTS):
                metrics = {"cpu_pct": round(float(rng.uniform(5, 95)), 2)}
                if h % 2:
                    metrics["mem_pct"] = round(float(rng.uniform(20, 80)), 2)
                host = {"event_id": f"host-{h}-{i}", "host_id": f"host-{h}", "ts": 1.76e9 + i,
                        "metrics": metrics, "cluster": f"c{h % 3}"}  # fmt: skip
                out.append(("host", orjson.dumps(host)))
        if i % 60 == 30 and i // 60 < len(BAD):
            bad = BAD[i // 60]
            out.append(("host" if b"host_id" in bad else "link", bad))
    path.write_bytes(b"\n".join(raw for _, raw in out) + b"\n")
    return out


def strip(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != "produced_at"}


def dead_letter_body(value: dict[str, Any]) -> tuple[str, str, str]:
    return value["error_kind"], value["reason"], value["original_bytes_b64"]


def test_cli_replay_of_10000_messages_equals_the_worker(
    worker: WorkerHandle, tmp_path: Path
) -> None:
    settings = worker.settings
    topics = settings.topics
    messages = write_jsonl(tmp_path / "telemetry.jsonl")
    assert len(messages) == TOTAL and TOTAL >= 10_000
    out_path = tmp_path / "replay.jsonl"
    novacron = Path(sys.executable).with_name("novacron")
    done = subprocess.run(
        [str(novacron), "replay", "-i", str(tmp_path / "telemetry.jsonl"), "-o", str(out_path)],
        env={**os.environ, **worker.env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The command says which versions it served: the worker's shipped LSTMs.
    assert "served datacenter: bandwidth-lstm-datacenter:" in done.stdout, done.stdout
    assert "served internet: bandwidth-lstm-internet:" in done.stdout, done.stdout

    lines = [orjson.loads(line) for line in out_path.read_bytes().splitlines()]
    by_topic = Counter(line["topic"] for line in lines)
    assert by_topic[topics.scores] == TOTAL - len(BAD)  # one per accepted event
    replayed = {
        line["value"]["prediction_id"]: strip(line["value"])
        for line in lines
        if line["topic"] == topics.predictions
    }
    assert {p["model"]["name"] for p in replayed.values()} == {
        "bandwidth-lstm-datacenter",
        "bandwidth-lstm-internet",
    }
    replayed_dead = Counter(
        dead_letter_body(line["value"]) for line in lines if line["topic"] == topics.dlq
    )
    assert sum(replayed_dead.values()) == len(BAD)
    replayed_alerts = {
        (line["value"]["alert_id"], line["value"]["seq"]): strip(line["value"])
        for line in lines
        if line["topic"] == topics.alerts
    }
    replayed_actions = {
        line["value"]["action_id"]: strip(line["value"])
        for line in lines
        if line["topic"] == topics.scaling
    }
    replayed_classes = {
        line["value"]["class_id"]: strip(line["value"])
        for line in lines
        if line["topic"] == topics.workload
    }
    assert replayed_actions, "the hosts' random CPU gets scaling actions"
    assert set(by_topic) <= {
        topics.scores, topics.predictions, topics.dlq, topics.alerts, topics.workload,
        topics.scaling,
    }  # fmt: skip
    assert all("anomaly_score" in line["value"] for line in lines if line["topic"] == topics.scores)

    for role in ("link", "host"):
        batch = [
            (orjson.loads(raw).get(f"{role}_id", "bad").encode(), raw)
            if raw not in BAD
            else (b"bad", raw)
            for r, raw in messages
            if r == role
        ]
        run(send(settings, topics.name(role), batch))
    outputs = [topics.predictions, topics.dlq, topics.alerts, topics.workload, topics.scaling]
    out = run(
        collect(
            settings,
            outputs,
            until=lambda r: (
                len(r[topics.predictions]) >= len(replayed)
                and len(r[topics.dlq]) >= len(BAD)
                and len(r[topics.alerts]) >= len(replayed_alerts)
                and len(r[topics.scaling]) >= len(replayed_actions)
                and len(r[topics.workload]) >= len(replayed_classes)
            ),
            timeout_s=240,
            settle_s=3.0,
        )
    )
    streamed = {value["prediction_id"]: strip(value) for _, value in out[topics.predictions]}
    assert len(out[topics.predictions]) == len(streamed), "the worker sent a prediction twice"
    assert streamed.keys() == replayed.keys()
    mismatched = [pid for pid in replayed if replayed[pid] != streamed[pid]]
    assert mismatched == [], (replayed[mismatched[0]], streamed[mismatched[0]])
    assert Counter(dead_letter_body(v) for _, v in out[topics.dlq]) == replayed_dead
    # The worker's alerts are the replay's, record for record (scores do not depend on
    # how the stream was batched).
    streamed_alerts = {(v["alert_id"], v["seq"]): strip(v) for _, v in out[topics.alerts]}
    assert len(out[topics.alerts]) == len(streamed_alerts), "the worker sent an alert twice"
    assert streamed_alerts == replayed_alerts
    # And its workload classes and scaling actions (decided per host, in event time).
    streamed_actions = {v["action_id"]: strip(v) for _, v in out[topics.scaling]}
    assert len(out[topics.scaling]) == len(streamed_actions), "the worker sent an action twice"
    assert streamed_actions == replayed_actions
    streamed_classes = {v["class_id"]: strip(v) for _, v in out[topics.workload]}
    assert len(out[topics.workload]) == len(streamed_classes)
    assert streamed_classes == replayed_classes

    # Every host event reached its window: Redis holds each host's newest ones, in order.
    client = redis.Redis.from_url(settings.redis_dsn)
    try:
        for h in range(HOSTS):
            raw = client.lrange(f"{settings.redis_key_prefix}:host:host-{h}", 0, -1)
            ids = [decode_entry(r).event_id for r in raw]
            expected = [f"host-{h}-{i}" for i in range(ROWS_PER_HOST)][-settings.window_size :]
            assert ids == expected
    finally:
        client.close()
