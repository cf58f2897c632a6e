"""``novacron retrain --once`` on the real broker: two drift requests become one retrain
on the recent telemetry of their mode, its records tell the story the registry holds,
offsets are committed, and a request seen again trains nothing twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import schemas
from agents.connections import kafka_options
from agents.settings import Settings
from models.lstm_predictor import model_name
from models.registry import ModelRegistry
from models.synthetic import synthesize_link_series

from .conftest import collect, isolated_env, run, send, settings_for

pytestmark = pytest.mark.integration

NAME = model_name("datacenter")
DC_LINKS = [f"retrain-dc-{i}" for i in range(4)]
PER_LINK = 600
INTERNET_SAMPLES = 300
COLUMNS = ("bandwidth_mbps", "latency_ms", "packet_loss_pct", "jitter_ms", "throughput_mbps")


def telemetry(now: float) -> list[tuple[bytes, bytes]]:
    """Four datacenter links and one internet link in 100-sample batches, and two
    messages the codec refuses.

    The datacenter links drifted: their bandwidth now alternates 40% above and below
    its level from one sample to the next, which the shipped model, close to the last
    value there, misses by far and a model trained on it learns in two epochs.
    """
    messages = []
    links = [(link, "datacenter", PER_LINK) for link in DC_LINKS]
    for n, (link, mode, count) in enumerate(
        [*links, ("retrain-inet", "internet", INTERNET_SAMPLES)]
    ):
        values = synthesize_link_series(mode, count, seed=20 + n)
        if mode == "datacenter":
            values[:, 0] *= 1.0 + 0.4 * (-1.0) ** np.arange(count)
        samples = [
            {"link_id": link, "ts": now - count + i, "mode": mode,
             **{c: float(v) for c, v in zip(COLUMNS, values[i], strict=True)}}
            for i in range(count)
        ]  # fmt: skip
        for start in range(0, count, 100):
            batch = {"samples": samples[start : start + 100]}
            messages.append((link.encode(), orjson.dumps(batch)))
    messages.append((b"retrain-dc-0", b"{not json"))
    messages.append((b"retrain-dc-0", orjson.dumps({"link_id": "retrain-dc-0", "ts": now})))
    return messages


def retrain_request(request_id: str, link: str, ts: float) -> tuple[bytes, bytes]:
    value = {
        "schema_version": 1,
        "event": "retrain_requested",
        "model": {"name": NAME, "version": "1"},
        "previous_version": None,
        "ts": ts,
        "detail": {
            "request_id": request_id, "mode": "datacenter", "key": link,
            "key_group": "dc", "reason": "drift", "evidence": {"detector": "test"},
        },
        "produced_at": time.time(),
    }  # fmt: skip
    return NAME.encode(), orjson.dumps(value)


def retrain_once(env: dict[str, str]) -> str:
    command = [sys.executable, "-m", "novacron", "retrain", "--once", "--idle-exit", "5",
               "--epochs", "2", "--units", "16,8"]  # fmt: skip
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        command, env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def model_events(settings: Settings, count: int) -> list[dict[str, Any]]:
    topic = settings.topics.model_events
    out = run(collect(settings, [topic], until=lambda r: len(r[topic]) >= count, settle_s=1.0))
    records = out[topic]
    assert all(key == NAME for key, _ in records)
    return [value for _, value in records]


async def committed_offsets(settings: Settings) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **kafka_options(settings)
    )
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{settings.app_id}-retrain")
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


def test_requests_become_one_retrain_whose_records_match_the_registry() -> None:
    env = isolated_env("retrain")
    settings = settings_for(env)
    now = time.time()
    run(send(settings, settings.topics.link, telemetry(now)))
    requests = [
        retrain_request("req-a", DC_LINKS[0], now - 120),
        retrain_request("req-b", DC_LINKS[2], now - 60),
    ]
    run(send(settings, settings.topics.model_events, requests))

    output = retrain_once(env)
    assert "retraining for 2 request(s) on 4 links" in output, output[-4000:]
    records = model_events(settings, 5)
    validator = schemas.validator("model.events.v1")
    for value in records:
        assert validator.is_valid(value), list(validator.iter_errors(value))[:1]
    kinds = [value["event"] for value in records]
    counts = Counter(kinds)
    assert len(records) == 5, kinds
    assert counts["retrain_requested"] == 2
    assert counts["retrain_started"] == 1
    assert counts["retrain_skipped"] == 0  # the second request joined the first's retrain
    assert counts["retrain_finished"] == counts["activated"] == 1
    assert counts["retrain_rejected"] == 0
    assert kinds.index("retrain_started") < kinds.index("retrain_finished")
    assert kinds.index("retrain_finished") < kinds.index("activated")

    started = records[kinds.index("retrain_started")]
    detail = started["detail"]
    assert detail["request_ids"] == ["req-a", "req-b"]
    assert detail["mode"] == "datacenter" and detail["links"] == len(DC_LINKS)
    assert detail["samples"] == len(DC_LINKS) * PER_LINK
    assert detail["telemetry"]["refused"] == 2
    assert detail["telemetry"]["other_mode_samples"] == INTERNET_SAMPLES
    assert detail["time_range"]["end"] == pytest.approx(now - 1)
    assert detail["time_range"]["start"] < detail["holdout"]["start"] < detail["holdout"]["end"]
    assert started["ts"] == detail["time_range"]["end"]

    before = started["model"]["version"]
    finished = records[kinds.index("retrain_finished")]
    figures = finished["detail"]
    version = figures["version"]
    assert figures["activated"] is True and figures["request_ids"] == ["req-a", "req-b"]
    assert figures["active"]["version"] == before
    assert figures["candidate"]["mae"] < 0.5 * figures["active"]["metrics"]["mae"]
    assert finished["model"]["version"] == version and finished["previous_version"] == before
    activated = records[kinds.index("activated")]
    assert activated["model"]["version"] == version
    assert activated["previous_version"] == before

    # The registry holds what the records say.
    registry = ModelRegistry.from_url(settings.registry_url, settings.artifact_dir)
    assert [mv.version for mv in registry.versions(NAME)] == [before, version]
    assert registry.active_versions()[NAME] == version
    assert registry.active_versions()[NAME] == version
    registered = registry.get(NAME, version)
    assert registered.params["retrain"]["request_ids"] == ["req-a", "req-b"]
    assert registered.metrics["mae"] == figures["candidate"]["mae"]
    assert (
        registry.metrics(NAME, before)[f"retrain holdout of v{version}"]["mae"]
        == (figures["active"]["metrics"]["mae"])
    )

    # Committed past every record read, the two requests included: a restart does not
    # see them again.
    offsets = run(committed_offsets(settings))
    assert sum(offsets.values()) == len(records)

    # A request seen again, and one whose drift the retrain's data already held: both
    # are answered without training.
    run(send(settings, settings.topics.model_events, [
        retrain_request("req-a", DC_LINKS[0], now - 120),
        retrain_request("req-c", DC_LINKS[1], now - 30),
    ]))  # fmt: skip
    retrain_once(env)
    later = model_events(settings, len(records) + 4)[len(records) :]
    assert [v["event"] for v in later] == ["retrain_requested"] * 2 + ["retrain_skipped"] * 2
    skipped = {v["detail"]["request_ids"][0]: v for v in later if v["event"] == "retrain_skipped"}
    assert skipped["req-a"]["detail"]["kind"] == "already_handled"
    assert skipped["req-c"]["detail"]["kind"] == "covered"
    assert all(validator.is_valid(v) for v in later)
    assert [mv.version for mv in registry.versions(NAME)] == [before, version]
    assert registry.active_versions()[NAME] == version
