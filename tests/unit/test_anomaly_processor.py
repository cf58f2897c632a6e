"""Anomaly alerts through the pipeline (in-memory store): one open and one resolve per
incident, valid records, redelivery and a restarted worker change nothing, and an alert
the batch detectors did not score says so."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np
import orjson
import pytest

import schemas
from agents.settings import Settings
from models.anomaly import AnomalyEnsemble, Recipe
from models.baseline import HarmonicMeanPredictor
from models.synthetic_incidents import incident_host
from streams.alerts import AlertPolicy
from streams.pipeline import BatchOutcome, RawMessage, TelemetryPipeline, build_pipeline
from streams.processors import ProcessorParts
from streams.records import SourceRef
from streams.store import InMemoryWindowStore
from streams.topics import Topics

T0 = 1.75e9
STEP_S = 60.0
HOST_TOPIC = "telemetry.host.v1"
ALERTS = Topics().alerts

# a CPU spike on a host with enough history for its daily cycle to be known
N = 2100
START = 2000
LENGTH = 40
HOST = "h-cpu"


def event_id(i: int) -> str:
    return SourceRef(HOST_TOPIC, 0, i).event_id()


def index_of(ts: float) -> int:
    return round((ts - T0) / STEP_S)


def messages(host: str, samples: Sequence[dict[str, float]]) -> list[RawMessage]:
    return [
        RawMessage(
            orjson.dumps({"host_id": host, "ts": T0 + STEP_S * i, "metrics": metrics}),
            SourceRef(HOST_TOPIC, 0, i),
        )
        for i, metrics in enumerate(samples)
    ]


@cache
def cpu_spike() -> tuple[RawMessage, ...]:
    host = incident_host("cpu_spike", n=N, start=START, length=LENGTH, seed=0)
    return tuple(messages(HOST, [host.sample(i) for i in range(N)]))


def level_shift(n: int = 600, at: int = 400) -> list[RawMessage]:
    """A host with one flat metric (no daily cycle) whose level steps up and stays."""
    rng = np.random.default_rng(3)
    temp = 50.0 + rng.normal(0.0, 1.0, n)
    temp[at:] += 15.0
    return messages("h-temp", [{"temp_c": round(float(v), 3)} for v in temp])


def pipeline(
    store: InMemoryWindowStore,
    recipe: Recipe | None = None,
    policy: AlertPolicy | None = None,
    *,
    with_scores: bool = False,
) -> TelemetryPipeline:
    parts = ProcessorParts(
        predictors=lambda mode: HarmonicMeanPredictor(mode),
        anomaly=AnomalyEnsemble(recipe),
        alert_policy=policy or Settings().alert_policy(),
    )
    return build_pipeline(parts, store, clock=lambda: 1.8e9, with_scores=with_scores)


def handle(pipe: TelemetryPipeline, batch: Sequence[RawMessage]) -> BatchOutcome:
    return asyncio.run(pipe.handle("host", list(batch)))


def alerts_of(outcome: BatchOutcome) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in outcome.outputs if r.topic == ALERTS]


@dataclass
class Run:
    alerts: list[dict[str, Any]]
    outcomes: list[BatchOutcome]

    @property
    def dead_letters(self) -> int:
        return sum(len(o.dead_letters) for o in self.outcomes)

    def count(self, name: str) -> int:
        return sum(o.counts.get(name, 0) for o in self.outcomes)


def run_batches(
    pipe: TelemetryPipeline,
    msgs: Sequence[RawMessage],
    size: int,
    first: int = 0,
    stop: int | None = None,
) -> Run:
    stop = len(msgs) if stop is None else stop
    run = Run([], [])
    for a in range(first, stop, size):
        outcome = handle(pipe, msgs[a : min(a + size, stop)])
        run.outcomes.append(outcome)
        run.alerts += alerts_of(outcome)
    return run


def identity(alert: dict[str, Any]) -> tuple[Any, ...]:
    """What must not change between runs of the same stream."""
    return (
        alert["alert_id"],
        alert["status"],
        alert["seq"],
        alert["ts"],
        alert["severity"],
        alert["anomaly_type"],
        alert["anomaly_score"],
        tuple(alert["source_event_ids"]),
        alert["reason"]["summary"],
    )


@cache
def reference() -> tuple[tuple[Any, ...], ...]:
    """The cpu_spike host through one uninterrupted pipeline, in batches of 50."""
    run = run_batches(pipeline(InMemoryWindowStore()), cpu_spike(), 50)
    assert run.dead_letters == 0
    assert run.count("anomaly_scored") == N
    return tuple(tuple(sorted(a.items())) for a in run.alerts)


def reference_alerts() -> list[dict[str, Any]]:
    return [dict(a) for a in reference()]


# -- one incident, one alert --------------------------------------------------------


def test_a_cpu_spike_gives_one_open_and_one_resolve_of_type_cpu() -> None:
    alerts = reference_alerts()
    opened = [a for a in alerts if a["status"] == "open"]
    resolved = [a for a in alerts if a["status"] == "resolve"]
    assert len(opened) == 1 and len(resolved) == 1, [(a["status"], a["ts"]) for a in alerts]
    first, last = opened[0], resolved[0]
    assert alerts[0]["status"] == "open"
    assert alerts[-1]["status"] == "resolve"
    assert {a["alert_id"] for a in alerts} == {first["alert_id"]}
    assert {a["anomaly_type"] for a in alerts} == {"cpu"}
    assert {(a["entity_kind"], a["entity_id"]) for a in alerts} == {("host", HOST)}
    # it opens during the spike, on the opening event, and resolves after recovery
    at = index_of(first["ts"])
    assert START <= at < START + LENGTH
    assert first["alert_id"] == f"{HOST}:cpu:{event_id(at)}"
    assert all(a["source_event_ids"][0] == event_id(at) for a in alerts)
    assert all(a["opened_ts"] == first["ts"] for a in alerts)
    assert index_of(last["ts"]) >= START + LENGTH
    assert last["resolution"] == "recovered"
    assert [a["seq"] for a in alerts] == list(range(len(alerts)))
    assert "cpu_pct" in first["reason"]["summary"]
    assert first["reason"]["top_features"][0]["name"] == "cpu_pct"
    assert first["anomaly_score"] >= first["reason"]["threshold"] == 0.5
    assert first["reason"]["fitted_detectors"] is True
    assert "statistical and online detectors only" not in first["reason"]["summary"]


def test_every_alert_record_validates_against_its_schema() -> None:
    validator = schemas.validator("alerts.anomaly.v1")
    alerts = reference_alerts()
    assert alerts
    for alert in alerts:
        errors = [e.message for e in validator.iter_errors(alert)]
        assert errors == [], (alert["status"], errors)
        assert alert["time_range"] == {"from_ts": alert["opened_ts"], "to_ts": alert["ts"]}
        assert abs(sum(m["contribution"] for m in alert["metrics"]) - 1.0) < 1e-9


# -- redelivery and restarts ------------------------------------------------------


def test_a_redelivered_batch_emits_no_second_alert() -> None:
    pipe = pipeline(InMemoryWindowStore())
    msgs = cpu_spike()
    alerts: list[dict[str, Any]] = []
    for a in range(0, N, 50):
        batch = msgs[max(0, a - 20) : a + 50]  # each batch repeats the last 20 messages
        outcome = handle(pipe, batch)
        assert outcome.duplicates == min(a, 20)
        assert outcome.counts["anomaly_scored"] == len(batch) - outcome.duplicates
        alerts += alerts_of(outcome)
        again = handle(pipe, batch)  # delivered, then redelivered as a whole
        assert again.outputs == [] and again.duplicates == len(batch)
        assert again.counts.get("anomaly_scored", 0) == 0
    assert [identity(a) for a in alerts] == [identity(a) for a in reference_alerts()]


@pytest.mark.parametrize(
    "cut",
    [
        140,  # the first fit was requested (at 128) and is not in use yet (144)
        START + 20,  # the alert is open
    ],
)
def test_a_restarted_worker_on_the_same_store_gives_the_same_records(cut: int) -> None:
    store = InMemoryWindowStore()
    msgs = cpu_spike()
    before = run_batches(pipeline(store), msgs, 50, stop=cut)
    after = run_batches(pipeline(store), msgs, 50, first=cut)
    assert before.dead_letters == after.dead_letters == 0
    assert after.outcomes[0].counts["state_restored"] == 1
    assert after.count("state_restored") == 1
    got = [identity(a) for a in before.alerts + after.alerts]
    assert got == [identity(a) for a in reference_alerts()]
    if cut > START:
        assert [a["status"] for a in before.alerts][0] == "open"
        assert after.alerts[-1]["status"] == "resolve"


def test_a_batch_redone_by_a_worker_that_lost_its_cache_gives_the_same_records() -> None:
    # the batch with the opening is processed but not persisted (a crash before the
    # store write): the next worker does it again from the stored state
    store = InMemoryWindowStore()
    msgs = cpu_spike()
    first = pipeline(store)
    run_batches(first, msgs, 50, stop=START)
    lost = asyncio.run(first.process("host", list(msgs[START : START + 50])))
    assert [a["status"] for a in alerts_of(lost)][0] == "open"
    second = pipeline(store)
    redone = run_batches(second, msgs, 50, first=START)
    assert [identity(a) for a in alerts_of(lost)] == [
        identity(a) for a in redone.alerts[: len(alerts_of(lost))]
    ]
    assert [identity(a) for a in redone.alerts] == [identity(a) for a in reference_alerts()]


def test_hosts_interleaved_in_one_batch_get_the_alerts_each_gets_alone() -> None:
    cpu = cpu_spike()
    temp = level_shift()
    alone = run_batches(pipeline(InMemoryWindowStore()), temp, 50).alerts
    assert alone
    mixed: list[RawMessage] = []
    for i in range(N):
        sources = [(cpu[i], event_id(i))]
        if i < len(temp):
            sources.append((temp[i], f"temp-{i}"))
        for msg, eid in sources:
            body = orjson.loads(msg.value) | {"event_id": eid}
            mixed.append(RawMessage(orjson.dumps(body), SourceRef(HOST_TOPIC, 0, len(mixed))))
    run = run_batches(pipeline(InMemoryWindowStore()), mixed, 150)
    assert run.dead_letters == 0
    by_host = {h: [a for a in run.alerts if a["entity_id"] == h] for h in (HOST, "h-temp")}
    assert [identity(a) for a in by_host[HOST]] == [identity(a) for a in reference_alerts()]
    renamed = [
        identity(a | {"alert_id": a["alert_id"].replace("telemetry.host.v1:0:", "temp-"),
                      "source_event_ids": [e.replace("telemetry.host.v1:0:", "temp-")
                                           for e in a["source_event_ids"]]})
        for a in alone
    ]  # fmt: skip
    assert [identity(a) for a in by_host["h-temp"]] == renamed


# -- an alert the batch detectors did not score ------------------------------------


def test_an_alert_before_min_fit_says_only_the_statistical_and_online_detectors_scored() -> None:
    recipe = Recipe(min_fit=1000)
    run = run_batches(pipeline(InMemoryWindowStore(), recipe), level_shift(), 50)
    assert run.dead_letters == 0
    opened = [a for a in run.alerts if a["status"] == "open"]
    assert len(opened) == 1, [(a["status"], a["ts"]) for a in run.alerts]
    alert = opened[0]
    history = alert["reason"]["history_samples"]
    assert 400 <= history < recipe.min_fit
    assert alert["reason"]["fitted_detectors"] is False
    assert alert["anomaly_type"] == "general"
    summary = alert["reason"]["summary"]
    assert "scored by the statistical and online detectors only" in summary
    assert f"{history} samples of history are too few" in summary
    assert not set(alert["reason"]["detectors"]) & {
        "isolation_forest",
        "one_class_svm",
        "local_outlier_factor",
    }
    assert schemas.validator("alerts.anomaly.v1").is_valid(alert)


# -- known defects ------------------------------------------------------------------

NEW_NORMAL = replace(Settings().alert_policy(), new_normal_after=6)
"""A level that lasts 6 samples is the new normal: the model re-baselines at once."""


def score_lines(outcomes: Sequence[BatchOutcome]) -> np.ndarray:
    return np.array(
        [orjson.loads(line.value)["anomaly_score"] for o in outcomes for line in o.scores]
    )


def test_a_restart_after_a_new_normal_rebaseline_goes_on() -> None:
    msgs = level_shift()
    whole = run_batches(pipeline(InMemoryWindowStore(), policy=NEW_NORMAL), msgs, 50)
    assert [a["resolution"] for a in whole.alerts if a["status"] == "resolve"][0] == "new_normal"
    store = InMemoryWindowStore()
    before = run_batches(pipeline(store, policy=NEW_NORMAL), msgs, 50, stop=450)
    assert "new_normal" in [a["resolution"] for a in before.alerts]
    after = run_batches(pipeline(store, policy=NEW_NORMAL), msgs, 50, first=450)
    assert after.dead_letters == 0
    assert [identity(a) for a in before.alerts + after.alerts] == [
        identity(a) for a in whole.alerts
    ]


def test_scores_after_a_new_normal_rebaseline_do_not_depend_on_batching() -> None:
    msgs = level_shift(n=480)

    def scores(size: int) -> np.ndarray:
        pipe = pipeline(InMemoryWindowStore(), policy=NEW_NORMAL, with_scores=True)
        run = run_batches(pipe, msgs, size)
        assert "new_normal" in [a["resolution"] for a in run.alerts]
        return score_lines(run.outcomes)

    by_50, by_7 = scores(50), scores(7)
    assert len(by_50) == len(by_7) == len(msgs)
    assert np.array_equal(by_50, by_7), np.flatnonzero(by_50 != by_7)[:5]


@pytest.mark.xfail(
    strict=True,
    reason=(
        "KNOWN LIMITATION (detection on young keys): a 40-sample CPU spike from ~45% to ~94% on an "
        "incident_host (seed 0) is not held as one alert until it ends when the host has "
        "less than ~2000 samples of history: at 800 samples no alert opens at all (score "
        "peaks at 0.22; no daily period is known before 1024 samples), at 1300 the alert "
        "opens at ~1306 and resolves at ~1335 while the CPU is still at ~94% until 1340 "
        "(the likelihood decays while the detectors stay saturated)"
    ),
)
@pytest.mark.parametrize("start", [800, 1300])
def test_a_young_host_holds_a_cpu_alert_until_the_spike_ends(start: int) -> None:
    host = incident_host("cpu_spike", n=start + 100, start=start, length=LENGTH, seed=0)
    msgs = messages("h-young", [host.sample(i) for i in range(start + 100)])
    run = run_batches(pipeline(InMemoryWindowStore()), msgs, 100)
    opened = [index_of(a["ts"]) for a in run.alerts if a["status"] == "open"]
    resolved = [index_of(a["ts"]) for a in run.alerts if a["status"] == "resolve"]
    assert len(opened) == 1 and start <= opened[0] < start + LENGTH, opened
    assert len(resolved) == 1 and resolved[0] >= start + LENGTH, resolved


def test_helpers_agree_with_the_decoder() -> None:
    outcome = handle(pipeline(InMemoryWindowStore()), cpu_spike()[:3])
    assert outcome.accepted == 3 and outcome.dead_letters == []
    assert outcome.appends[HOST][0].event_id == event_id(0)
    assert index_of(outcome.appends[HOST][2].ts) == 2
