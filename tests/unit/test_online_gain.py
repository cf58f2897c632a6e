"""Online gain: per-link adaptation of the model's correction, learned from the window."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from models.baseline import HarmonicMeanPredictor
from online.gain import OnlineGain
from streams.predictor import IntervalForecast, bandwidth_target
from streams.processors import BandwidthProcessor
from streams.records import LinkSample, WindowEntry
from streams.store import InMemoryWindowStore, decode_entry, encode_entry
from tests.helpers import run_processor


class RatioPredictor:
    """Predicts ``last * correction(window)``, with a +-10% interval."""

    name = "ratio"
    version = "1"
    mode = "internet"
    window_steps = 60
    min_history = 2
    horizon_steps = 1

    def __init__(self, correction: Callable[[np.ndarray], np.ndarray]) -> None:
        self.correction = correction

    def predict(self, windows: np.ndarray) -> IntervalForecast:
        series = bandwidth_target(windows)
        point = series[:, -1] * self.correction(series)
        return IntervalForecast(point, 0.9 * point, 1.1 * point, np.full(len(point), 0.8), 0.8)


def link(values: np.ndarray, name: str = "a") -> list[LinkSample]:
    return [
        LinkSample(f"{name}-{i}", name, 1.7e9 + i, "internet", bandwidth_mbps=float(v))
        for i, v in enumerate(values)
    ]


def run(predictor: object, stream: list[LinkSample], online: OnlineGain | None) -> np.ndarray:
    """Published predictions, aligned: ``out[t]`` is the prediction made at sample ``t``."""
    proc = BandwidthProcessor(lambda mode: predictor, online=online)  # type: ignore[arg-type,return-value]
    out = np.full(len(stream), np.nan)
    index = {s.event_id: i for i, s in enumerate(stream)}
    for p in run_processor(proc, stream, {}).predictions:
        out[index[p.event_id]] = p.predicted_bandwidth_mbps
    return out


def mae(predicted: np.ndarray, actual: np.ndarray, start: int = 65) -> float:
    return float(np.nanmean(np.abs(predicted[start:-1] - actual[start + 1 :])))


def test_a_harmful_correction_is_learned_away_on_a_random_walk() -> None:
    rng = np.random.default_rng(0)
    x = 100 * np.exp(np.cumsum(rng.normal(0, 0.05, 300)))
    # The model "corrects" by a random +-8% each step: pure noise on a random walk.
    noisy = RatioPredictor(lambda s: np.exp(rng.choice([-0.08, 0.08], s.shape[0])))
    plain, adapted = run(noisy, link(x), None), run(noisy, link(x), OnlineGain())
    last = mae(x, x)
    assert mae(adapted, x) < 0.9 * mae(plain, x)
    assert mae(adapted, x) < 1.05 * last


def test_a_timid_correction_is_amplified_on_a_mean_reverting_link() -> None:
    rng = np.random.default_rng(1)
    level = np.log(200.0)
    logs = [level]
    for _ in range(400):
        logs.append(level + rng.normal(0, 0.1))
    x = np.exp(np.array(logs))
    # The best forecast is the level, last * (200 / last); the model takes half of that.
    timid = RatioPredictor(lambda s: (200.0 / s[:, -1]) ** 0.5)
    plain, adapted = run(timid, link(x), None), run(timid, link(x), OnlineGain())
    # The best expert of the grid takes the correction to the power 1.5.
    best = mae(x * (200.0 / x) ** 0.75, x)
    # The adapted predictions close at least half of the gap to it.
    assert mae(adapted, x) < mae(plain, x) - 0.5 * (mae(plain, x) - best)
    proc = BandwidthProcessor(lambda mode: timid, online=OnlineGain())  # type: ignore[arg-type,return-value]
    gains = [p.online_gain or 0.0 for p in run_processor(proc, link(x), {}).predictions[40:]]
    assert np.median(gains) > 1.2


def test_without_online_gain_the_model_output_is_published_as_is() -> None:
    x = np.linspace(100, 130, 40)
    const = RatioPredictor(lambda s: np.full(s.shape[0], 1.1))
    plain = run(const, link(x), None)
    np.testing.assert_allclose(plain[1:], 1.1 * x[1:])
    proc = BandwidthProcessor(lambda mode: const)  # type: ignore[arg-type,return-value]
    assert all(p.online_gain is None for p in run_processor(proc, link(x), {}).predictions)
    result = run_processor(proc, link(x), {})
    assert "online_gain" not in result.predictions[0].to_record(0.0)
    assert all(e.predicted is None for e in result.appends["a"])  # nothing extra stored


def test_a_new_link_takes_the_mean_gain_and_the_interval_moves_with_the_point() -> None:
    const = RatioPredictor(lambda s: np.full(s.shape[0], 1.21))
    proc = BandwidthProcessor(lambda mode: const, online=OnlineGain())  # type: ignore[arg-type,return-value]
    first = run_processor(proc, link(np.array([100.0, 100.0])), {}).predictions[0]
    assert first.online_gain == pytest.approx(0.75)
    assert first.predicted_bandwidth_mbps == pytest.approx(100 * 1.21**0.75)
    assert first.lower_mbps == pytest.approx(0.9 * first.predicted_bandwidth_mbps)
    assert first.upper_mbps == pytest.approx(1.1 * first.predicted_bandwidth_mbps)


def test_entries_keep_the_model_prediction_and_survive_the_store() -> None:
    const = RatioPredictor(lambda s: np.full(s.shape[0], 1.1))
    proc = BandwidthProcessor(lambda mode: const, online=OnlineGain())  # type: ignore[arg-type,return-value]
    result = run_processor(proc, link(np.array([100.0, 100.0, 120.0])), {})
    entries = result.appends["a"]
    # The first sample is warming up (no prediction); the others keep the model's own
    # (unadapted) point, not the published one.
    assert [e.predicted for e in entries] == [None, pytest.approx(110.0), pytest.approx(132.0)]
    assert [decode_entry(encode_entry(e)) for e in entries] == entries
    store = InMemoryWindowStore(60)
    asyncio.run(store.append("link", result.appends))
    loaded = asyncio.run(store.load("link", ["a"]))["a"]
    assert [e.predicted for e in loaded] == [e.predicted for e in entries]


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_predictions_do_not_depend_on_how_samples_were_batched(batch: int) -> None:
    rng = np.random.default_rng(2)
    stream = [
        s
        for pair in zip(
            link(100 + 20 * rng.random(80), "a"), link(50 + 30 * rng.random(80), "b"), strict=True
        )
        for s in pair
    ]
    proc = BandwidthProcessor(
        lambda mode: HarmonicMeanPredictor(mode, window_steps=20), window_size=30,
        online=OnlineGain(),
    )  # fmt: skip
    whole = run_processor(proc, stream, {}).predictions
    store = InMemoryWindowStore(30)
    parts = []
    for start in range(0, len(stream), batch):
        chunk = stream[start : start + batch]
        windows = asyncio.run(store.load("link", sorted({s.link_id for s in chunk})))
        result = run_processor(proc, chunk, windows)
        asyncio.run(store.append("link", result.appends))
        parts.extend(result.predictions)
    assert [p.to_record(0.0) for p in parts] == [p.to_record(0.0) for p in whole]
    assert len({p.online_gain for p in whole}) > 10  # the gain does move


def test_a_redelivered_batch_predicts_the_same_with_online_gain() -> None:
    rng = np.random.default_rng(3)
    stream = link(100 + 20 * rng.random(40))
    proc = BandwidthProcessor(
        lambda mode: HarmonicMeanPredictor(mode, window_steps=10), online=OnlineGain()
    )
    head = run_processor(proc, stream[:-5], {})
    windows: dict[str, list[WindowEntry]] = {"a": head.appends["a"]}
    # Delivered, then the worker died before storing the windows: the tail comes again.
    first = run_processor(proc, stream[-5:], windows)
    again = run_processor(proc, stream[-5:], windows)
    assert len(first.predictions) == 5 and again.duplicates == 0
    assert [p.to_record(0.0) for p in again.predictions] == [
        p.to_record(0.0) for p in first.predictions
    ]
    # Stored: a redelivery now finds the tail in the window and predicts nothing again.
    stored = {"a": windows["a"] + first.appends["a"]}
    late = run_processor(proc, stream[-5:], stored)
    assert late.duplicates == 5 and late.predictions == [] and late.appends == {}
