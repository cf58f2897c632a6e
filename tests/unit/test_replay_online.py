"""`novacron replay` runs the online path as the worker does, on event time: a recorded
incident (a link whose capacity halves and is then shared) replays into the drift, the
champion change and the retrain request the worker would have sent, with the request
marked as skipped, and two replays give the same records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

import schemas
from agents.settings import Settings
from models.synthetic import synthesize_link_series
from novacron.replaying import run_replay

T0 = 1.75e9
CHANGE, N = 1500, 1900


def incident_file(path: Path) -> Path:
    x = synthesize_link_series("internet", N, seed=21)[:, 0]
    k = np.arange(N - CHANGE)
    x[CHANGE:] = 0.5 * np.median(x[:CHANGE]) * np.where(k % 2 == 0, 1.0, 0.6)
    rows = [
        {"event_id": f"inc-{i}", "link_id": "inc", "ts": T0 + i, "mode": "internet",
         "bandwidth_mbps": round(float(x[i]), 3)}
        for i in range(N)
    ]  # fmt: skip
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def replay(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    settings = Settings(
        registry_url=f"sqlite:///{tmp_path / name}/registry.sqlite",
        artifact_dir=tmp_path / name / "artifacts",
    )
    out = tmp_path / f"{name}.jsonl"
    run_replay(settings, incident_file(tmp_path / "incident.jsonl"), out, show_progress=False)
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def test_replay_backtests_the_adaptation_and_skips_the_retrain(tmp_path: Path) -> None:
    lines = replay(tmp_path, "first")
    events = [line["value"] for line in lines if line["topic"] == "model.events.v1"]
    validator = schemas.validator("model.events.v1")
    assert events and all(validator.is_valid(e) for e in events)
    kinds = [e["event"] for e in events]
    assert "retrain_requested" not in kinds
    (drift,) = [e for e in events if e["event"] == "drift_detected"]
    confirmed = int(drift["detail"]["event_id"].rsplit("-", 1)[1])
    assert CHANGE <= confirmed <= CHANGE + 60 and drift["ts"] == T0 + confirmed
    (skipped,) = [e for e in events if e["event"] == "retrain_skipped"]
    assert "replay" in skipped["detail"]["why"] and skipped["detail"]["key"] == "inc"
    assert [e["detail"]["champion"] for e in events if e["event"] == "champion_changed"] == [
        "online"
    ]
    served = {
        int(line["value"]["source_event_ids"][0].rsplit("-", 1)[1]): line["value"]["model"]["name"]
        for line in lines
        if line["topic"] == "predictions.bandwidth.v1"
    }
    assert served[CHANGE - 1] == "bandwidth-lstm-internet" and served[N - 2] == "online-bandwidth"

    def without_wall_clock(rows: list[dict[str, Any]]) -> list[Any]:
        return [
            {k: v for k, v in row["value"].items() if k != "produced_at"} | {"t": row["topic"]}
            for row in rows
        ]

    assert without_wall_clock(replay(tmp_path, "second")) == without_wall_clock(lines)
