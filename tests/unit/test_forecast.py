"""The demand forecast ensemble: a tiny seeded training beats persistence on held-out
seasonal series, its ONNX graph equals scikit-learn, its interval covers what it says,
the workload type selects the weights, a flat series stays flat, bad files are refused,
and the shipped model forecasts a daily cycle through the registry. Needs the train extra
(scikit-learn fitting, skl2onnx, onnx)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.forecast import MEMBERS, MODEL_NAME, OnnxForecaster
from models.forecast_export import members_to_onnx, sklearn_outputs, with_metadata
from models.forecast_features import feature_names, forecast_inputs
from models.forecast_metrics import ForecastWindows, forecast_windows, score_windows
from models.forecast_training import (
    ForecastTrainRequest,
    TrainedForecaster,
    fit_members,
    train_forecaster,
)
from models.registry import ModelRegistry
from models.serving import SHIPPED_BUNDLE
from models.synthetic_demand import demand_series
from streams.errors import ModelError

HORIZONS = (1, 3, 5, 10, 15, 30)
REQUEST = ForecastTrainRequest(
    series=72, windows_per_series=60, trees=20, rf_max_depth=8, min_type_windows=40, seed=3
)


@pytest.fixture(scope="module")
def tiny() -> TrainedForecaster:
    return train_forecaster(REQUEST)


@pytest.fixture(scope="module")
def forecaster(tiny: TrainedForecaster) -> OnnxForecaster:
    return OnnxForecaster.load(tiny.onnx_path, MODEL_NAME, "1")


def _held_out(families: tuple[str, ...], seed: int = 91, count: int = 24) -> ForecastWindows:
    series = demand_series(count, seed, families=families)
    return forecast_windows(series, 60, HORIZONS, per_series=80, seed=seed)


def test_beats_persistence_on_held_out_seasonal_series(forecaster: OnnxForecaster) -> None:
    scores = score_windows(forecaster, _held_out(("diurnal", "requests")))
    for h in (15, 30):
        assert scores["ensemble"][f"nmae_h{h}"] < 0.95 * scores["persistence"][f"nmae_h{h}"]


def test_onnx_outputs_equal_the_scikit_learn_members() -> None:
    request = ForecastTrainRequest(trees=8, rf_max_depth=6, seed=5)
    windows = forecast_windows(demand_series(18, seed=5), 60, HORIZONS, per_series=40, seed=5)
    members = fit_members(windows, request)
    n_features = len(feature_names(60, HORIZONS))
    session = ort.InferenceSession(
        with_metadata(members_to_onnx(members, n_features, len(HORIZONS)), "{}"),
        providers=["CPUExecutionProvider"],
    )
    held = _held_out(("diurnal", "bursty", "batch", "flat"), seed=6, count=8)
    x = forecast_inputs(held.histories, held.last_ts, held.step_s, HORIZONS).x
    reference = sklearn_outputs(members, x)
    got = dict(zip(MEMBERS, session.run(list(MEMBERS), {"x": x}), strict=True))
    for name in MEMBERS:
        assert got[name].shape == (len(x), len(HORIZONS))
        np.testing.assert_allclose(got[name], reference[name], rtol=1e-4, atol=1e-5)


def test_interval_coverage_is_near_nominal(forecaster: OnnxForecaster) -> None:
    scores = score_windows(forecaster, _held_out(tuple(_families()), seed=92, count=45))
    assert forecaster.interval_level == 0.8
    assert 0.7 <= scores["ensemble"]["coverage"] <= 0.9
    for h in (1, 15, 30):
        assert 0.65 <= scores["ensemble"][f"coverage_h{h}"] <= 0.92


def _families() -> list[str]:
    from models.synthetic_demand import DEMAND_FAMILIES

    return list(DEMAND_FAMILIES)


def _daily(n: int = 60, step: float = 60.0, seed: int = 0) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    last_ts = 1_718_000_000.0
    t = last_ts + step * np.arange(1 - n, 1)
    values = 50 + 20 * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, 1, n)
    return values, last_ts


def test_the_workload_type_selects_the_weights(forecaster: OnnxForecaster) -> None:
    groups = set(forecaster.metadata.weights)
    assert {"*", "BURSTY", "PERIODIC"} <= groups
    history, last_ts = _daily()
    batch = np.stack([history] * 4)
    out = forecaster.forecast_many(
        batch, np.full(4, last_ts), np.full(4, 60.0), [None, "BURSTY", "PERIODIC", "NO_SUCH"]
    )
    assert out[0].weights != out[1].weights
    assert out[1].weights != out[2].weights
    assert out[3].weights == out[0].weights  # a type without weights of its own: "*"
    assert not np.allclose(out[1].point, out[2].point)
    for f in out:
        assert sum(f.weights.values()) == pytest.approx(1.0)
        assert set(f.weights) == set(MEMBERS)


def test_a_flat_series_forecasts_flat(forecaster: OnnxForecaster) -> None:
    flat = np.stack([np.full(60, 42.0), np.zeros(60), np.full(60, 1e6)])
    out = forecaster.forecast_many(
        flat, np.full(3, 1.7e9), np.array([60.0, 60.0, 300.0]), [None] * 3
    )
    for f, value in zip(out, (42.0, 0.0, 1e6), strict=True):
        np.testing.assert_allclose(f.point, value, rtol=0.01, atol=1e-9)
        assert np.all(f.upper - f.lower <= 0.05 * value + 1e-9)
        assert f.confidence > 0.9


def test_forecasts_are_ordered_and_batched(forecaster: OnnxForecaster) -> None:
    held = _held_out(("bursty", "batch", "trend"), seed=93, count=9)
    k = min(512, len(held.histories))
    out = forecaster.forecast_many(
        held.histories[:k], held.last_ts[:k], held.step_s[:k], held.types[:k]
    )
    assert len(out) == k and out[0].horizons == HORIZONS and out[0].interval_level == 0.8
    for f in out:
        assert np.all(f.lower <= f.point) and np.all(f.point <= f.upper)
        assert np.all(f.lower >= 0.0)  # histories of demand are never negative
        assert 0.0 <= f.confidence <= 1.0
    one = forecaster.forecast_many(
        held.histories[5:6], held.last_ts[5:6], held.step_s[5:6], held.types[5:6]
    )
    np.testing.assert_allclose(one[0].point, out[5].point)


def test_bad_inputs_are_refused(forecaster: OnnxForecaster) -> None:
    history, last_ts = _daily()
    with pytest.raises(ModelError, match=r"\(k, >= 60\)"):
        forecaster.forecast_many(history[None, :30], np.array([last_ts]), np.array([60.0]), [None])
    bad = history.copy()
    bad[3] = np.nan
    with pytest.raises(ModelError, match="rows \\[0\\]"):
        forecaster.forecast_many(bad[None], np.array([last_ts]), np.array([60.0]), [None])
    with pytest.raises(ModelError, match="one per history"):
        forecaster.forecast_many(history[None], np.array([last_ts]), np.array([60.0]), [])


def _rewrite(source: Path, target: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    model = onnx.load(str(source))
    meta = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    data = json.loads(meta["novacron"])
    result = edit(data)
    if result is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "novacron", json.dumps(result)
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: None, "no 'novacron' metadata property"),
        (lambda d: {**d, "format": "other/1"}, "metadata format must be"),
        (lambda d: {k: v for k, v in d.items() if k != "weights"}, "incomplete or malformed"),
        (lambda d: {**d, "lookback": 30}, "feature layout differs"),
        (lambda d: {**d, "weights": {"BURSTY": d["weights"]["*"]}}, "'\\*' group"),
        (lambda d: {**d, "members": ["random_forest", "lstm"], "weights": {"*": [[0.5] * 6] * 2}},
         "Missing \\['lstm'\\]"),
        (lambda d: {**d, "interval": {**d["interval"], "q_low": {"*": [9.0] * 6}}},
         "q_low <= q_high"),
    ],
)  # fmt: skip
def test_a_file_with_missing_or_wrong_metadata_is_refused(
    tiny: TrainedForecaster, tmp_path: Path, edit: Callable[[dict[str, Any]], Any], message: str
) -> None:
    path = _rewrite(tiny.onnx_path, tmp_path / "bad.onnx", edit)
    with pytest.raises(ModelError, match=message):
        OnnxForecaster.load(path)


def test_training_records_figures_and_parity(tiny: TrainedForecaster) -> None:
    assert tiny.parity_max_abs < 1e-4
    assert tiny.metrics["n"] > 500
    assert set(tiny.baselines) == {"persistence", "seasonal_naive", *MEMBERS}
    assert tiny.params["weight_power"] in REQUEST.weight_powers


def test_the_shipped_model_forecasts_a_daily_cycle_through_the_registry(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "artifacts")
    registry.import_bundle(SHIPPED_BUNDLE)
    active = registry.active(MODEL_NAME)
    assert active is not None and active.kind == "onnx-sklearn" and active.mode == "host"
    model = OnnxForecaster.load(registry.verify(active), MODEL_NAME, active.version)
    rng = np.random.default_rng(7)
    step, n = 60.0, 3 * 1440
    t = 1_718_000_000.0 + step * np.arange(n)
    daily = 40 + 25 * np.sin(2 * np.pi * (t / 86_400 - 0.3)) + rng.normal(0, 1.5, n)
    ends = np.arange(59, n - 30, 7)
    histories = daily[ends[:, None] + np.arange(-59, 1)]
    out = model.forecast_many(histories, t[ends], np.full(len(ends), step), [None] * len(ends))
    point = np.array([f.point[-1] for f in out])
    actual = daily[ends + 30]
    model_mae = np.abs(point - actual).mean()
    persistence_mae = np.abs(histories[:, -1] - actual).mean()
    assert model_mae < 0.95 * persistence_mae
