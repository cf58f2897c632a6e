"""The bandwidth processor: warm-up, one prediction per event, redeliveries, order."""

from __future__ import annotations

import numpy as np
import pytest

from models.baseline import HarmonicMeanPredictor
from streams.processors import BandwidthProcessor
from streams.records import LinkSample, WindowEntry
from tests.helpers import run_processor


def samples(link: str, n: int, start: int = 0, mode: str = "internet") -> list[LinkSample]:
    return [
        LinkSample(f"{link}-{i}", link, 1.7e9 + i, mode, bandwidth_mbps=100.0 + (i % 7))
        for i in range(start, start + n)
    ]


def processor(window_steps: int = 10) -> BandwidthProcessor:
    return BandwidthProcessor(lambda mode: HarmonicMeanPredictor(mode, window_steps=window_steps))


def test_one_prediction_per_sample_after_warm_up() -> None:
    result = run_processor(processor(), samples("a", 25) + samples("b", 5), {})
    assert [p.event_id for p in result.predictions] == [f"a-{i}" for i in range(9, 25)]
    assert result.warming_up == 9 + 5
    assert len(result.scores) == 30


def test_existing_window_counts_toward_warm_up() -> None:
    history = {
        "a": [
            WindowEntry(f"old-{i}", 1.6e9 + i, (100.0, np.nan, np.nan, np.nan, np.nan))
            for i in range(9)
        ]
    }
    result = run_processor(processor(), samples("a", 1), history)
    assert [p.event_id for p in result.predictions] == ["a-0"]
    assert result.predictions[0].window_samples == 10
    assert result.predictions[0].window_from_ts == 1.6e9


def test_redelivered_event_in_the_window_is_not_appended_or_predicted_again() -> None:
    # A window entry is stored only after its prediction was delivered.
    proc = processor(window_steps=3)
    first = run_processor(proc, samples("a", 5), {})
    window = {"a": first.appends["a"]}
    again = run_processor(proc, samples("a", 2, start=3), window)
    assert again.duplicates == 2
    assert again.appends == {}
    assert again.predictions == []


def test_redelivery_longer_than_the_loaded_window_is_recognised() -> None:
    # 30 samples were stored; only the newest 3 are loaded; all 30 come again, then 2 new.
    proc = processor(window_steps=3)
    first = run_processor(proc, samples("a", 30), {})
    tail = {"a": first.appends["a"][-3:]}
    again = run_processor(proc, samples("a", 32), tail)
    assert again.duplicates == 30
    assert [e.event_id for e in again.appends["a"]] == ["a-30", "a-31"]
    assert [p.event_id for p in again.predictions] == ["a-30", "a-31"]


def test_undelivered_batch_predicts_the_same_again() -> None:
    # Delivered but not stored (a crash in between): the same batch gives the same records.
    proc = processor(window_steps=3)
    head = run_processor(proc, samples("a", 10), {})
    window = {"a": head.appends["a"]}
    first = run_processor(proc, samples("a", 5, start=10), window)
    again = run_processor(proc, samples("a", 5, start=10), window)
    assert [p.to_record(0.0) for p in again.predictions] == [
        p.to_record(0.0) for p in first.predictions
    ]


def test_batched_equals_event_by_event() -> None:
    stream = [
        s
        for pair in zip(samples("a", 30), samples("b", 30, mode="datacenter"), strict=True)
        for s in pair
    ]
    proc = processor()
    whole = run_processor(proc, stream, {})
    windows: dict[str, list[WindowEntry]] = {}
    one_by_one = []
    for sample in stream:
        r = run_processor(proc, [sample], windows)
        for key, new in r.appends.items():
            windows[key] = (windows.get(key, []) + new)[-60:]
        one_by_one.extend(r.predictions)
    assert [p.to_record(0.0) for p in whole.predictions] == [p.to_record(0.0) for p in one_by_one]


def test_window_is_capped() -> None:
    proc = BandwidthProcessor(lambda m: HarmonicMeanPredictor(m), window_size=60)
    result = run_processor(proc, samples("a", 100), {})
    assert result.predictions[-1].window_samples == 10
    assert len(result.appends["a"]) == 100  # the store trims; the processor appends all


def test_mixed_modes_keep_input_order() -> None:
    stream = samples("dc", 12, mode="datacenter") + samples("in", 12, mode="internet")
    stream = [s for pair in zip(stream[:12], stream[12:], strict=True) for s in pair]
    ids = [p.event_id for p in run_processor(processor(), stream, {}).predictions]
    assert ids == [s.event_id for s in stream if int(s.event_id.split("-")[1]) >= 9]


def test_no_bandwidth_history_means_no_prediction() -> None:
    latency_only = [
        LinkSample(f"e{i}", "a", 1.7e9 + i, "internet", latency_ms=5.0) for i in range(12)
    ]
    result = run_processor(processor(), latency_only, {})
    assert result.predictions == []
    assert result.no_history == 3


def test_prediction_interval_contains_point_and_target_ts_uses_step() -> None:
    stream = [
        LinkSample(f"e{i}", "a", 1.7e9 + 5 * i, "internet", throughput_mbps=50.0 + i % 3)
        for i in range(12)
    ]
    p = run_processor(processor(), stream, {}).predictions[-1]
    assert p.lower_mbps <= p.predicted_bandwidth_mbps <= p.upper_mbps
    assert p.target_ts == pytest.approx(p.ts + 5.0)
    assert 0.0 <= p.confidence <= 1.0
    assert p.features_seen == ("throughput_mbps",)
