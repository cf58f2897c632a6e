"""`novacron replay` writes exactly the records the worker sends for the same input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from models.serving import registry_source
from models.synthetic import synthesize_link_series
from novacron.replaying import run_replay
from streams.replay import ReplayOptions, read_messages

from .conftest import WorkerHandle, collect, run, send

pytestmark = pytest.mark.integration

LINKS = 20
ROWS_PER_LINK = 500


def write_csv(path: Path) -> None:
    series = {
        n: synthesize_link_series("internet" if n % 2 else "datacenter", ROWS_PER_LINK, seed=n)
        for n in range(LINKS)
    }
    lines = [
        "timestamp,link_id,mode,bandwidth_mbps,latency_ms,packet_loss_pct,jitter_ms,throughput_mbps"
    ]
    for i in range(ROWS_PER_LINK):
        for n in range(LINKS):
            row = series[n][i]
            cells = [f"{v:.3f}" for v in row]
            if i % 50 == 7:
                cells[0] = ""  # a probe that missed the bandwidth measure: throughput stands in
            lines.append(
                f"{1.76e9 + i:.1f},link-{n:02d},{'internet' if n % 2 else 'datacenter'},"
                + ",".join(cells)
            )
    path.write_text("\n".join(lines) + "\n")


def strip(value: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in value.items() if k != "produced_at"}


def test_replay_of_10000_rows_equals_the_worker(worker: WorkerHandle, tmp_path: Path) -> None:
    csv_path = tmp_path / "links.csv"
    write_csv(csv_path)
    out_path = tmp_path / "replay.jsonl"
    source = registry_source(worker.settings)
    report = run_replay(worker.settings, csv_path, out_path, source=source, show_progress=False)
    assert report.rows == LINKS * ROWS_PER_LINK == 10_000
    lines = [orjson.loads(line) for line in out_path.read_bytes().splitlines()]
    scores = [line for line in lines if line["topic"] == "scores.v1"]
    assert len(scores) == 10_000
    assert len({s["value"]["event_id"] for s in scores}) == 10_000
    replayed = {
        line["value"]["prediction_id"]: strip(line["value"])
        for line in lines
        if line["topic"] == worker.settings.topics.predictions
    }
    assert len(replayed) == LINKS * (ROWS_PER_LINK - 9)

    # The same rows as Kafka messages, with the event ids replay derives from file and row.
    messages = []
    for _, raw, source in read_messages(csv_path, ReplayOptions()):
        value = orjson.loads(raw)
        value["event_id"] = source.event_id()
        messages.append((value["link_id"].encode(), orjson.dumps(value)))
    topic = worker.settings.topics.predictions
    run(send(worker.settings, worker.settings.topics.link, messages))
    out = run(
        collect(
            worker.settings,
            [topic],
            until=lambda r: len(r[topic]) >= len(replayed),
            timeout_s=120,
            settle_s=2.0,
        )
    )
    streamed = {value["prediction_id"]: strip(value) for _, value in out[topic]}
    assert len(out[topic]) == len(streamed), "the worker sent a prediction twice"
    assert streamed.keys() == replayed.keys()
    mismatched = [pid for pid in replayed if replayed[pid] != streamed[pid]]
    assert mismatched == [], (replayed[mismatched[0]], streamed[mismatched[0]])
    # Scores line up with the predictions they describe.
    predicted = {s["value"]["event_id"]: s["value"]["predicted_bandwidth_mbps"] for s in scores}
    for value in list(replayed.values())[:100]:
        event = value["source_event_ids"][0]  # type: ignore[index]
        assert np.isclose(predicted[event], value["predicted_bandwidth_mbps"])  # type: ignore[arg-type]
