"""The workload and scaling processors through the pipeline (in-memory store), with small
stand-in models implementing the core's protocols: the outputs do not depend on how the
stream was batched or on a worker restart between batches, classes are published on
change and periodically, and the forecaster hears the host's workload class. The online
demand path (online.demand) is on, as in the worker: its events too must not depend on
batching or restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import numpy as np
import orjson
import pytest

import schemas
from models.baseline import HarmonicMeanPredictor
from online.demand import DemandOnline, DemandOnlineSettings
from streams.capacity import (
    DemandForecast,
    ScalingDecision,
    WorkloadClass,
)
from streams.history import ChunkedHistory
from streams.pipeline import RawMessage, TelemetryPipeline, build_pipeline
from streams.processors import ProcessorParts
from streams.records import SourceRef
from streams.store import InMemoryWindowStore
from streams.topics import Topics

T0 = 1.75e9
STEP = 60.0
POISON = 12.345
"""A demand the stand-in controller raises on."""
TOPICS = Topics()


class StandIn:
    """A classifier by mean CPU, a last-value forecaster and a threshold controller."""

    name = "stand-in"
    version = "1"
    min_samples = 30
    lookback = 60
    horizons = (1, 3, 5)
    policy = "PREDICTIVE"
    resource = "vm_count"
    ready_delay_s = 180.0

    def __init__(self) -> None:
        self.kinds_seen: list[str | None] = []

    def classify_many(
        self, histories: Sequence[np.ndarray], step_s: Sequence[float]
    ) -> list[WorkloadClass]:
        out = []
        for rows in histories:
            cpu = float(np.nanmean(rows[:, 0])) if np.isfinite(rows[:, 0]).any() else 0.0
            kind = "CPU_INTENSIVE" if cpu > 50 else "BACKGROUND"
            out.append(WorkloadClass(kind, "STEADY_STATE", 0.9, {kind: 0.9}, {"cpu_mean": cpu}, 0))
        return out

    def forecast_many(
        self,
        histories: np.ndarray,
        last_ts: np.ndarray,
        step_s: np.ndarray,
        workload_types: Sequence[str | None],
    ) -> list[DemandForecast]:
        self.kinds_seen.extend(workload_types)
        trend = (histories[:, -1] - histories[:, -6]) / 5
        steps = np.array(self.horizons, dtype=float)
        points = histories[:, -1:] + trend[:, None] * steps
        return [DemandForecast(self.horizons, p, p * 0.9, p * 1.1, 0.8, 0.7) for p in points]

    def new_state(self, first_demand: float) -> bytes:
        return json.dumps({"n": max(1, int(np.ceil(first_demand / 60.0))), "last": 0.0}).encode()

    def step(
        self,
        state: bytes,
        ts: float,
        demand: float,
        forecast: DemandForecast | None,
        step_s: float,
    ) -> tuple[bytes, ScalingDecision | None]:
        if demand == POISON:
            raise ValueError("a controller bug on one sample")
        s = json.loads(state)
        want = demand if forecast is None else max(demand, float(forecast.upper[-1]))
        need = max(1, int(np.ceil(want / 60.0)))
        if need == s["n"] or ts - s["last"] < 600:
            return state, None
        action = "SCALE_OUT" if need > s["n"] else "SCALE_IN"
        decision = ScalingDecision(
            action, "vm_count", self.policy, s["n"], need, 0.5, 0.5, 0.7, s["n"] * 60.0,
            None, demand, forecast, 0.05, 0.1, f"{action} to {need}", "threshold",
        )  # fmt: skip
        return json.dumps({"n": need, "last": ts}).encode(), decision


def host_stream(n: int = 400, hosts: int = 2) -> list[RawMessage]:
    """Hosts with a slow cycle in CPU: every host crosses the thresholds both ways."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        for h in range(hosts):
            cpu = 50 + 45 * np.sin(2 * np.pi * (i + 37 * h) / 240) + rng.normal(0, 2)
            metrics = {"cpu_pct": round(float(np.clip(cpu, 0, 100)), 3), "mem_pct": 40.0}
            value = {"host_id": f"h{h}", "ts": T0 + STEP * i, "metrics": metrics}
            out.append(RawMessage(orjson.dumps(value), SourceRef(TOPICS.host, 0, len(out))))
    return out


def pipeline(
    store: InMemoryWindowStore, models: StandIn, bucket_s: float = 0.0
) -> TelemetryPipeline:
    parts = ProcessorParts(
        lambda mode: HarmonicMeanPredictor(mode),
        workload=lambda: models,
        workload_history=200,
        workload_bucket_s=bucket_s,
        forecaster=lambda: models,
        scaling=models,
        online_demand=DemandOnline(DemandOnlineSettings(summary_every=100)),
    )
    pipe = build_pipeline(parts, store, clock=lambda: 1.8e9)
    for proc in pipe.processors["host"]:
        if proc.name == "workload":
            proc.publish_every = 90  # type: ignore[attr-defined]
    return pipe


def run(
    messages: Sequence[RawMessage],
    sizes: Sequence[int],
    restart: bool = False,
    bucket_s: float = 0.0,
) -> list[bytes]:
    """Every output's bytes, feeding the stream in batches of the given sizes in turn;
    with ``restart``, a new pipeline (empty memory, same store) for every batch."""
    store = InMemoryWindowStore()
    models = StandIn()
    pipe = pipeline(store, models, bucket_s)
    out: list[bytes] = []
    i = k = 0
    while i < len(messages):
        size = sizes[k % len(sizes)]
        if restart:
            pipe = pipeline(store, models, bucket_s)
        outcome = asyncio.run(pipe.handle("host", messages[i : i + size]))
        out.extend(r.value for r in outcome.outputs)
        i, k = i + size, k + 1
    return out


def by_topic(values: Sequence[bytes]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"workload": [], "scaling": [], "events": []}
    for raw in values:
        record = orjson.loads(raw)
        if "workload_type" in record:
            out["workload"].append(record)
        elif "action_id" in record:
            out["scaling"].append(record)
        elif record.get("event") == "accuracy_summary" or "drift" in record.get("event", ""):
            out["events"].append(record)
    return out


@pytest.fixture(scope="module")
def whole() -> list[bytes]:
    return run(host_stream(), [800])


def test_classes_and_actions_validate_and_follow_the_cycle(whole: list[bytes]) -> None:
    records = by_topic(whole)
    for record in records["workload"]:
        schemas.validator("workload.class.v1").validate(record)
    for record in records["scaling"]:
        schemas.validator("actions.scaling.v1").validate(record)
    triggers = [r["trigger"] for r in records["workload"] if r["host_id"] == "h0"]
    assert triggers[0] == "first"
    assert "changed" in triggers and "periodic" in triggers
    actions = [r["action"] for r in records["scaling"] if r["target"] == "h0"]
    assert "SCALE_OUT" in actions and "SCALE_IN" in actions
    first = next(r for r in records["scaling"] if r["reason"].get("forecast"))
    assert first["reason"]["forecast_horizons_s"] == [60.0, 180.0, 300.0]
    assert [m["name"] for m in first["models"]] == ["stand-in", "stand-in"]
    assert first["reason"]["forecast_source"] == "forecaster"
    summaries = [e for e in records["events"] if e["event"] == "accuracy_summary"]
    assert len(summaries) == 2 * (400 // 100), "every 100 samples per host"
    for event in records["events"]:
        schemas.validator("model.events.v1").validate(event)


@pytest.mark.parametrize("sizes", [[1], [7, 3], [250]])
def test_outputs_do_not_depend_on_batching(whole: list[bytes], sizes: list[int]) -> None:
    assert by_topic(run(host_stream(), sizes)) == by_topic(whole)


def test_a_restarted_worker_goes_on_from_the_store(whole: list[bytes]) -> None:
    assert by_topic(run(host_stream(), [13, 50], restart=True)) == by_topic(whole)


def test_bucketed_histories_do_not_depend_on_batching_or_restarts() -> None:
    stream = host_stream(600, hosts=1)
    whole = by_topic(run(stream, [600], bucket_s=180.0))
    assert whole["workload"], "three-sample rows: classified from row 30 on"
    assert by_topic(run(stream, [1], bucket_s=180.0)) == whole
    assert by_topic(run(stream, [4, 11], restart=True, bucket_s=180.0)) == whole
    one_row_each = by_topic(run(stream, [600]))["workload"]
    assert len(one_row_each) != len(whole["workload"]) or one_row_each != whole["workload"]


def test_the_forecaster_hears_the_workload_class() -> None:
    store = InMemoryWindowStore()
    models = StandIn()
    outcome = asyncio.run(pipeline(store, models).handle("host", host_stream(200, hosts=1)))
    classes = by_topic([r.value for r in outcome.outputs])["workload"]
    # the host is classified (from sample 30) before it has a forecast (from sample 60)
    assert None not in models.kinds_seen
    assert models.kinds_seen[-1] == classes[-1]["workload_type"]


def test_hosts_without_the_demand_metric_get_no_actions() -> None:
    store = InMemoryWindowStore()
    messages = [
        RawMessage(
            orjson.dumps({"host_id": "m", "ts": T0 + STEP * i, "metrics": {"mem_pct": 99.0}}),
            SourceRef(TOPICS.host, 0, i),
        )
        for i in range(80)
    ]
    outcome = asyncio.run(pipeline(store, StandIn()).handle("host", messages))
    assert outcome.counts["scaling_no_metric"] == 80
    assert outcome.counts["scaling_actions"] == 0


def test_a_chunked_history_restores_after_its_ring_wrapped() -> None:
    rng = np.random.default_rng(1)
    stored: dict[str, bytes] = {}
    history = ChunkedHistory(capacity=100, columns=3, chunk=8)
    rows = rng.normal(size=(1000, 3))
    at = 0
    while at < len(rows):
        size = int(rng.integers(1, 40))
        history.append(rows[at : at + size])
        stored.update(history.dump("h"))
        at += size
        back = ChunkedHistory.restore(stored, "h", history.end, 100, 3, 8)
        assert np.array_equal(back.rows(), rows[:at][-100:])
    # a chunk from another end (a stale write) stops the walk back: never wrong rows
    stale = ChunkedHistory.restore(stored, "h", history.end - 3, 100, 3, 8)
    assert len(stale.rows()) == 0 or np.array_equal(
        stale.rows(), rows[: history.end - 3][-len(stale.rows()) :]
    )


def test_a_batch_redone_sample_by_sample_restarts_each_host_from_its_last_state() -> None:
    """One host's sample makes the controller raise: the batch is redone sample by
    sample from the states the last batch saved (held in memory, not reloaded), so the
    other host's actions are those of a run without the bad sample."""

    def actions_of_h0(poison: bool) -> list[dict]:
        stream = host_stream(400)
        if poison:
            value = orjson.loads(stream[601].value)  # host h1, in the second batch
            value["metrics"]["cpu_pct"] = POISON
            stream[601] = RawMessage(orjson.dumps(value), stream[601].source)
        store = InMemoryWindowStore()
        pipe = pipeline(store, StandIn())
        out = []
        for a in range(0, len(stream), 500):
            outcome = asyncio.run(pipe.handle("host", stream[a : a + 500]))
            out += [r.value for r in outcome.outputs]
            if poison and a == 500:
                assert [d.error_kind for d in outcome.dead_letters] == ["processing_error"]
        return [r for r in by_topic(out)["scaling"] if r["target"] == "h0"]

    clean = actions_of_h0(poison=False)
    assert clean and actions_of_h0(poison=True) == clean
