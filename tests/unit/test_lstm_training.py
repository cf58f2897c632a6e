"""The bandwidth LSTM: a tiny seeded model trains, beats the harmonic mean, exports to ONNX
with parity, and its interval covers what it says. Needs the train extra (TensorFlow)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from models.datasets import build_windows, synthetic_series
from models.features import fit_stats
from models.lstm_predictor import LstmBandwidthPredictor
from models.training import TrainedModel, mode_config, train_lstm
from streams.errors import ModelError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def tiny() -> TrainedModel:
    config = dataclasses.replace(mode_config("internet"), window=20, epochs=6, patience=3)
    series = synthetic_series("internet", 3, 2500, seed=11)
    data = build_windows(series, config.window, by_file=False, stride=2)
    stats = fit_stats([data["train"].windows[:, -1, :]])
    return train_lstm(config, data, stats, units=(16, 8), seed=3)


def test_training_converges_and_beats_the_harmonic_mean(tiny: TrainedModel) -> None:
    losses = [h["val_loss"] for h in tiny.history]
    assert min(losses) < losses[0]
    assert tiny.metrics["mae"] < tiny.baselines["harmonic_mean_5"]["mae"]
    assert tiny.metrics["acc20"] >= tiny.baselines["harmonic_mean_5"]["acc20"]


def test_onnx_matches_keras(tiny: TrainedModel) -> None:
    assert tiny.parity_max_abs < 1e-4


def test_interval_coverage_is_near_nominal(tiny: TrainedModel) -> None:
    assert tiny.metrics["n"] > 500
    assert abs(tiny.metrics["coverage"] - 0.8) <= 0.05
    assert 0.0 < tiny.metrics["mean_confidence"] <= 1.0


def test_predictor_serves_missing_features_and_short_windows(tiny: TrainedModel) -> None:
    predictor = LstmBandwidthPredictor.load(tiny.onnx_path, name="tiny", version="1")
    windows = tiny.test.windows[:8].copy()
    windows[:4, :, :4] = np.nan  # throughput only, as many real probes send
    short = windows[:, -12:]  # fewer samples than the model window: left-padded
    for batch in (windows, short):
        forecast = predictor.predict(batch)
        assert np.all(np.isfinite(forecast.point))
        assert np.all(forecast.lower <= forecast.point) and np.all(forecast.point <= forecast.upper)


def test_large_batches_run_in_bounded_chunks(tiny: TrainedModel) -> None:
    predictor = LstmBandwidthPredictor.load(tiny.onnx_path, name="tiny", version="1")
    windows = tiny.test.windows[:50]
    whole = predictor.predict(windows).point
    calls = []
    session_run = predictor.loaded.session.run

    def counting_run(outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(next(iter(feeds.values())).shape[0])
        return session_run(outputs, feeds)  # type: ignore[no-any-return]

    predictor.max_rows_per_run = 16
    predictor.loaded.session.run = counting_run  # type: ignore[method-assign]
    chunked = predictor.predict(windows).point
    assert calls == [16, 16, 16, 2]
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)


def test_load_refuses_a_model_without_metadata(tiny: TrainedModel, tmp_path: Path) -> None:
    proto = onnx.load(str(tiny.onnx_path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelError, match="no 'novacron' metadata"):
        LstmBandwidthPredictor.load(bare, name="x", version="1")


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        LstmBandwidthPredictor.load(tmp_path / "none.onnx", name="x", version="1")
