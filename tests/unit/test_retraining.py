"""Retraining on recent telemetry: the holdout is the last part in time, a candidate is
activated only if it beats the active version there, and the registry remembers which
requests it answered. Tiny seeded models (TensorFlow, the train extra)."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest

import schemas
from models.datasets import build_windows, synthetic_series
from models.features import fit_stats
from models.lstm_predictor import model_name
from models.recent_telemetry import RecentData, prepare_recent, recent_links
from models.registry import ModelRegistry
from models.retraining import (
    RetrainOptions,
    RetrainReport,
    RetrainRequest,
    complete_activation,
    retrain,
    retrain_history,
)
from models.training import mode_config, train_lstm
from novacron.retrain_records import outcome_events, started_event
from streams.codec import encode_output
from streams.errors import ConfigError, ModelError
from streams.records import LinkSample
from streams.topics import Topics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODE = "datacenter"
NAME = model_name(MODE)
T0 = 1.77e9
LINKS = 4
PER_LINK = 1200


def alternating_samples(seed: int = 3) -> list[LinkSample]:
    """Links whose bandwidth now alternates high/low every sample: last value is off by
    about 60% of the level there, while the pattern is easy to learn."""
    rng = np.random.default_rng(seed)
    samples = []
    for link in range(LINKS):
        level = 3000.0 + 1000.0 * link
        t = np.arange(PER_LINK)
        bw = level * (1 + 0.4 * (-1.0) ** t) * (1 + 0.02 * rng.standard_normal(PER_LINK))
        latency = 2.0 + 0.1 * rng.standard_normal(PER_LINK) ** 2
        # Shuffled and with one duplicate: the series must come out in event-time order.
        order = rng.permutation(PER_LINK).tolist() + [0]
        samples.extend(
            LinkSample(f"l{link}-{i}", f"link-{link}", T0 + i + 0.25 * link, MODE,
                       bandwidth_mbps=float(bw[i]), latency_ms=float(latency[i]))
            for i in order
        )  # fmt: skip
    return samples


def request(request_id: str, ts: float, key: str = "link-0") -> RetrainRequest:
    return RetrainRequest(request_id, NAME, MODE, ts, "1", key, "drift")


@pytest.fixture(scope="module")
def recent() -> RecentData:
    return prepare_recent(recent_links(alternating_samples()), MODE)


@dataclass
class Run:
    registry: ModelRegistry
    poor_version: str
    activated: RetrainReport
    rejected: RetrainReport


@pytest.fixture(scope="module")
def run(recent: RecentData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("registry")
    registry = ModelRegistry(root / "registry.sqlite", root / "artifacts")
    # The active version: one epoch of a 4-unit model on smooth synthetic links, which
    # predicts about the last value, far off on links that now alternate.
    config = mode_config(MODE)
    data = build_windows(synthetic_series(MODE, 2, 1500, seed=5), config.window, by_file=False)
    stats = fit_stats([data["train"].windows[:, -1, :]])
    poor = train_lstm(config, data, stats, epochs=1, units=(4, 4), seed=1)
    mv = registry.register(NAME, poor.onnx_path, mode=MODE, kind="onnx-lstm")
    registry.activate(NAME, mv.version)
    activated = retrain(
        registry,
        [request("r1", T0 + 900), request("r2", T0 + 950, "link-2"), request("r1", T0 + 900)],
        recent,
        RetrainOptions(epochs=4, units=(16, 8)),
    )
    # Against that trained version, one epoch of a 4-unit model does worse.
    rejected = retrain(
        registry, [request("r3", T0 + 1190)], recent, RetrainOptions(epochs=1, units=(4, 4))
    )
    yield Run(registry, mv.version, activated, rejected)
    shutil.rmtree(root, ignore_errors=True)


def test_series_come_in_event_time_order_with_each_event_once(recent: RecentData) -> None:
    assert [link.series.name for link in recent.links] == [f"link-{i}" for i in range(LINKS)]
    for link in recent.links:
        assert link.times.size == PER_LINK
        assert np.all(np.diff(link.times) > 0)


def test_holdout_is_the_chronologically_last_part(recent: RecentData) -> None:
    holdout_start = math.floor(PER_LINK * 0.8)  # 960
    val_start = math.floor(holdout_start * 0.8)  # 768
    for link in recent.links:
        split = recent.splits[link.series.name]
        assert split.train is not None and split.val is not None and split.holdout is not None
        assert split.train.start == link.times[9]  # the first target has 10 samples before
        assert split.train.end == link.times[val_start - 1]
        assert split.val.start == link.times[val_start]
        assert split.val.end == link.times[holdout_start - 1]
        assert split.holdout.start == link.times[holdout_start]
        assert split.holdout.end == link.times[-1]
        assert split.holdout.targets == PER_LINK - holdout_start
    summary = recent.summary()
    assert summary["holdout"] == {
        "fraction": 0.2, "start": T0 + holdout_start, "end": T0 + PER_LINK - 1 + 0.75,
        "targets": LINKS * (PER_LINK - holdout_start),
    }  # fmt: skip
    assert summary["samples"] == LINKS * PER_LINK
    assert summary["time_range"] == {"start": T0, "end": T0 + PER_LINK - 1 + 0.75}
    assert len(recent.windows["test"]) == LINKS * (PER_LINK - holdout_start)
    assert recent.dataset == (
        "recent telemetry: 4 links, 4800 samples, "
        "2026-02-02 02:40:00 UTC to 2026-02-02 02:59:59 UTC"
    )


def test_max_samples_keeps_the_newest() -> None:
    data = prepare_recent(recent_links(alternating_samples()), MODE, max_samples=2000)
    assert data.samples == 2000 and data.dropped == LINKS * PER_LINK - 2000
    assert data.end == T0 + PER_LINK - 1 + 0.75
    assert data.start == T0 + PER_LINK - 500  # 500 per link, the newest


def test_too_little_telemetry_says_what_to_do() -> None:
    few = [s for s in alternating_samples() if s.ts < T0 + 15]
    with pytest.raises(ModelError, match="--lookback"):
        prepare_recent(recent_links(few), MODE)


def test_a_candidate_better_on_the_holdout_is_activated(run: Run) -> None:
    report = run.activated
    assert report.activated
    assert report.active_version == run.poor_version
    # Clearly better, on the same recent holdout targets.
    assert report.candidate_metrics["mae"] < 0.5 * report.active_metrics["mae"]
    assert report.candidate_metrics["n"] == report.active_metrics["n"] == LINKS * 240
    assert report.candidate_metrics["mae"] < report.baselines["last_value"]["mae"]
    assert report.reason.startswith("holdout MAE") and "beats active v1's" in report.reason
    assert report.request_ids == ["r1", "r2"]
    mv = run.registry.get(NAME, report.version.version)
    assert mv.params["retrain"]["request_ids"] == ["r1", "r2"]
    assert mv.params["retrain"]["decision"] == "activate"
    assert mv.params["retrain"]["compared_with"] == run.poor_version
    metrics = run.registry.metrics(NAME, mv.version)
    assert metrics[report.data.dataset]["mae"] == report.candidate_metrics["mae"]
    assert "baseline:last_value" in metrics
    # The active version's figures on that holdout are kept beside its own.
    old = run.registry.metrics(NAME, run.poor_version)
    assert old[f"retrain holdout of v{mv.version}"]["mae"] == report.active_metrics["mae"]


def test_a_candidate_not_better_on_the_holdout_is_rejected(run: Run) -> None:
    report = run.rejected
    assert not report.activated
    assert report.active_version == run.activated.version.version
    assert report.candidate_metrics["mae"] >= report.active_metrics["mae"]
    assert "does not beat" in report.reason
    # Registered for the record, and the active version stays.
    assert run.registry.get(NAME, report.version.version).status == "registered"
    active = run.registry.active(NAME)
    assert active is not None and active.version == run.activated.version.version
    # The active version was scored on this holdout as before: the same figures.
    assert report.active_metrics["mae"] == pytest.approx(run.activated.candidate_metrics["mae"])


def test_history_knows_the_requests_and_the_data_they_covered(run: Run) -> None:
    history = retrain_history(run.registry, NAME)
    first, second = run.activated.version.version, run.rejected.version.version
    assert history.handled == {"r1": first, "r2": first, "r3": second}
    assert history.last_version == second
    assert history.covered_until == run.rejected.data.end
    assert retrain_history(run.registry, "no-such-model").handled == {}


def test_an_activation_decided_but_not_made_is_completed(run: Run, tmp_path: Path) -> None:
    trained = run.registry.artifact_path(run.activated.version)
    registry = ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "artifacts")
    first = registry.register(NAME, trained, mode=MODE)
    registry.activate(NAME, first.version)

    def interrupted(compared_with: str) -> str:
        params = {"retrain": {"request_ids": ["r9"], "started_at": 2e9, "data_end": T0 + 2000,
                              "decision": "activate", "compared_with": compared_with}}  # fmt: skip
        return registry.register(NAME, trained, mode=MODE, params=params).version

    stale = interrupted(compared_with="7")  # another version was active since: left alone
    assert complete_activation(registry, NAME) is None
    assert registry.get(NAME, stale).status == "registered"
    pending = interrupted(compared_with=first.version)
    done = complete_activation(registry, NAME)
    assert done is not None
    assert (done[0].version, done[1]) == (pending, first.version)
    assert registry.active_versions()[NAME] == pending
    assert complete_activation(registry, NAME) is None  # made once


def test_records_validate_against_the_schema(run: Run) -> None:
    validator = schemas.validator("model.events.v1")
    for report in (run.activated, run.rejected):
        started = started_event(
            [request("r1", T0)], report.active_version or "1", report.data, {"topic": "t"}, {}
        )
        events = [started, *outcome_events(report)]
        for event in events:
            value = orjson.loads(encode_output(event, Topics(), 1.8e9).value)
            validator.validate(value)
            assert value["model"]["name"] == NAME
    finished, activated = outcome_events(run.activated)
    assert (finished.event, activated.event) == ("retrain_finished", "activated")
    assert finished.detail["activated"] is True
    assert activated.model.version == run.activated.version.version
    assert activated.previous_version == run.poor_version
    (rejected,) = outcome_events(run.rejected)
    assert rejected.event == "retrain_rejected" and rejected.detail["activated"] is False
    assert rejected.detail["active"]["version"] == run.activated.version.version


def test_requests_for_another_model_are_refused(recent: RecentData, tmp_path: Path) -> None:
    other = RetrainRequest("x", model_name("internet"), "internet", T0)
    registry = ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "artifacts")
    with pytest.raises(ModelError, match="bandwidth-lstm-internet"):
        retrain(registry, [other], recent, RetrainOptions())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"holdout": 0.0}, "'holdout' parameter of RetrainOptions must be in the open interval"),
        ({"validation": 1.0}, "'validation' parameter"),
        ({"epochs": 0}, "'epochs' parameter of RetrainOptions must be an int >= 1. Got 0"),
        ({"units": (8,)}, "'units' parameter"),
        ({"synthetic_links": -1}, "'synthetic_links' parameter"),
    ],
)
def test_options_refuse_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetrainOptions(**kwargs)  # type: ignore[arg-type]
