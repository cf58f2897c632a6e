"""``novacron train forecast``: synthetic demand -> RF + GB + Ridge -> one ONNX -> registry.

Series from :func:`models.synthetic_demand.demand_series` (plus any given) are split
70/15/15 by series into training, calibration and test sets, so every figure is on
series the members never saw. Windows of ``lookback`` values are drawn at random
positions of each series; the members learn the change from the last value at each
horizon in units of the window's level (:mod:`models.forecast_features`), with targets
clipped to ``±target_clip`` levels so a rare on/off jump does not dominate the squared
error. The calibration set gives the member weights and interval quantiles
(:mod:`models.forecast`) from the ONNX graph's own outputs; the test set gives the
figures registered with the version. Needs the ``train`` extra (scikit-learn, skl2onnx).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from streams.errors import ConfigError

from .forecast import ALL_TYPES, MEMBERS, MODEL_NAME, ForecastMetadata, OnnxForecaster
from .forecast_export import check_parity, members_to_onnx, sklearn_outputs, with_metadata
from .forecast_features import feature_names, forecast_inputs, squash, unsquash
from .forecast_metrics import ForecastWindows, forecast_windows, score_windows
from .registry import ModelRegistry, ModelVersion
from .synthetic_demand import DemandSeries, demand_series

Activation = Literal["auto", "always", "never"]
HORIZONS = (1, 3, 5, 10, 15, 30)
LOOKBACK = 60
CONFIDENCE_K = 4.0


@dataclass(frozen=True, slots=True)
class ForecastTrainRequest:
    """What to train on and how (defaults: the shipped model).

    Attributes:
        series: synthetic series to generate (split 70/15/15 by series).
        windows_per_series: windows drawn from each series.
        trees: trees of the Random Forest, and of each horizon's Gradient Boosting.
        rf_max_depth, rf_min_samples_leaf: bound the forest's size (the file's size).
        gb_max_depth: depth of the boosted trees.
        min_type_windows: calibration windows a workload type needs for its own weights
            and quantiles.
        weight_powers: the candidate powers of the inverse-MAE member weights; the one
            with the smallest calibration MAE is kept.
        extra_series: more series to train on (split with the synthetic ones).
        n_jobs: processes for the Random Forest's trees and the per-horizon boosting.
    """

    series: int = 540
    seed: int = 0
    windows_per_series: int = 120
    lookback: int = LOOKBACK
    horizons: tuple[int, ...] = HORIZONS
    trees: int = 100
    rf_max_depth: int = 9
    rf_min_samples_leaf: int = 20
    gb_max_depth: int = 4
    ridge_alpha: float = 1.0
    squash: float = 2.0
    target_clip: float = 50.0
    interval_level: float = 0.8
    min_type_windows: int = 300
    weight_powers: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0)
    extra_series: tuple[DemandSeries, ...] = ()
    activate: Activation = "auto"
    n_jobs: int = 1


@dataclass(slots=True)
class TrainedForecaster:
    """An exported ensemble and its figures on the test series."""

    onnx_path: Path
    params: dict[str, Any]
    metrics: dict[str, float]
    parity_max_abs: float
    test: ForecastWindows
    dataset: str
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(slots=True)
class ForecastTrainReport:
    """The registered version, whether it was activated and why."""

    version: ModelVersion
    activated: bool
    reason: str
    trained: TrainedForecaster


def workload_host_series(per_type: int, seed: int) -> list[DemandSeries]:
    """Every reported metric of ``per_type`` labelled synthetic hosts of each workload type
    (:func:`models.synthetic_workloads.generate_hosts`), gaps held at the last value, as
    series of that type (so the classifier's own types get weights of their own).

    Raises:
        ConfigError: ``models.synthetic_workloads`` is not available.
    """
    try:
        from .synthetic_workloads import generate_hosts
    except ImportError as exc:
        msg = f"Workload host series need models.synthetic_workloads: {exc}"
        raise ConfigError(msg) from exc
    rng = np.random.default_rng(seed)
    out = []
    for i, host in enumerate(generate_hosts(per_type, seed)):
        start = 1_704_067_200.0 + host.step_s * float(rng.integers(0, int(3e7 / host.step_s)))
        for j in range(host.history.shape[1]):
            column = host.history[:, j]
            seen = np.isfinite(column)
            if seen.mean() < 0.8:
                continue
            last_seen = np.maximum.accumulate(np.where(seen, np.arange(len(column)), 0))
            filled = column[last_seen]
            filled[: np.argmax(seen)] = column[np.argmax(seen)]
            family = f"host:{host.workload_type.lower()}"
            out.append(
                DemandSeries(
                    f"{family}-{i}-{j}", family, host.workload_type, host.step_s, start, filled
                )
            )
    return out


def split_series(
    series: Sequence[DemandSeries], seed: int
) -> tuple[list[DemandSeries], list[DemandSeries], list[DemandSeries]]:
    """Train / calibration / test: 70 / 15 / 15 % of the series, shuffled by ``seed``."""
    order = np.random.default_rng(seed).permutation(len(series))
    n_cal = n_test = max(1, round(0.15 * len(series)))
    if len(series) < 3 * n_cal:
        msg = f"Training the forecaster needs at least 7 series. Got {len(series)}."
        raise ConfigError(msg)
    test = [series[i] for i in order[:n_test]]
    cal = [series[i] for i in order[n_test : n_test + n_cal]]
    return [series[i] for i in order[n_test + n_cal :]], cal, test


def fit_members(
    windows: ForecastWindows, request: ForecastTrainRequest
) -> dict[str, Any | list[Any]]:
    """The fitted Random Forest, per-horizon Gradient Boosting and Ridge."""
    from joblib import Parallel, delayed
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge

    inputs = forecast_inputs(windows.histories, windows.last_ts, windows.step_s, request.horizons)
    clip = request.target_clip
    y = squash(np.clip(windows.targets(inputs), -clip, clip), request.squash)
    x = inputs.x
    forest = RandomForestRegressor(
        n_estimators=request.trees, max_depth=request.rf_max_depth,
        min_samples_leaf=request.rf_min_samples_leaf, max_features=0.33,
        n_jobs=request.n_jobs, random_state=request.seed,
    ).fit(x, y)  # fmt: skip
    boosted = Parallel(n_jobs=request.n_jobs)(
        delayed(
            GradientBoostingRegressor(
                n_estimators=request.trees,
                max_depth=request.gb_max_depth,
                learning_rate=0.1,
                subsample=0.5,
                max_features=0.3,
                random_state=request.seed + i,
            ).fit
        )(x, y[:, i])  # fmt: skip
        for i in range(len(request.horizons))
    )
    # The SVD solver: the features are collinear by design (the last value is also z_59).
    ridge = Ridge(alpha=request.ridge_alpha, solver="svd").fit(x, y)
    return {"random_forest": forest, "gradient_boosting": list(boosted), "ridge": ridge}


def calibrate(
    outputs: np.ndarray,
    windows: ForecastWindows,
    request: ForecastTrainRequest,
    max_output: float,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """Weights and interval quantiles per group from calibration windows.

    ``outputs`` are the members' ``(k, M, H)`` raw outputs (from the ONNX graph).
    Returns ``(weights, q_low, q_high, power)``: group -> arrays; the ``"*"`` group uses
    every window, a workload type its own windows when it has ``min_type_windows``; the
    weights are ``MAE ** -power`` normalised, the power chosen on all windows.
    """
    inputs = forecast_inputs(windows.histories, windows.last_ts, windows.step_s, request.horizons)
    y = windows.targets(inputs)
    outputs = unsquash(np.clip(outputs, -max_output, max_output), request.squash)
    alpha = (1.0 - request.interval_level) / 2
    types = np.array([t or "" for t in windows.types])
    groups = {ALL_TYPES: np.ones(len(types), bool)}
    for t in sorted(set(types) - {""}):
        if (types == t).sum() >= request.min_type_windows:
            groups[t] = types == t
    power = weight_power(outputs, y, request.weight_powers)
    weights, q_low, q_high = {}, {}, {}
    for group, rows in groups.items():
        w = inverse_error_weights(outputs[rows], y[rows], power)
        residual = y[rows] - np.einsum("mh,kmh->kh", w, outputs[rows])
        weights[group] = w
        q_low[group] = np.quantile(residual, alpha, axis=0, method="lower")
        q_high[group] = np.quantile(residual, 1 - alpha, axis=0, method="higher")
    return weights, q_low, q_high, power


def inverse_error_weights(outputs: np.ndarray, y: np.ndarray, power: float) -> np.ndarray:
    """``(M, H)`` weights proportional to ``MAE ** -power`` of each member and horizon.

    Examples:
        >>> y = np.zeros((4, 1))
        >>> outputs = np.array([[[1.0], [2.0]]] * 4)  # member errors 1 and 2
        >>> inverse_error_weights(outputs, y, 1.0).round(3).tolist()
        [[0.667], [0.333]]
    """
    mae = np.abs(outputs - y[:, None, :]).mean(axis=0)
    inverse = 1.0 / np.maximum(mae, 1e-9) ** power
    return np.asarray(inverse / inverse.sum(axis=0, keepdims=True))


def weight_power(outputs: np.ndarray, y: np.ndarray, candidates: Sequence[float]) -> float:
    """The power of the inverse-MAE weights (0: equal weights) whose ensemble has the
    smallest MAE over all windows and horizons."""

    def ensemble_mae(power: float) -> float:
        w = inverse_error_weights(outputs, y, power)
        return float(np.abs(y - np.einsum("mh,kmh->kh", w, outputs)).mean())

    return min(candidates, key=ensemble_mae)


def train_forecaster(request: ForecastTrainRequest) -> TrainedForecaster:
    """Generate, split, fit, export, calibrate and score (no registry involved)."""
    started = time.perf_counter()
    series = demand_series(request.series, request.seed) + list(request.extra_series)
    train_s, cal_s, test_s = split_series(series, request.seed)
    make = forecast_windows
    args = (request.lookback, request.horizons, request.windows_per_series)
    train = make(train_s, *args, seed=request.seed)
    cal = make(cal_s, *args, seed=request.seed + 1)
    test = make(test_s, *args, seed=request.seed + 2)
    members = fit_members(train, request)
    names = feature_names(request.lookback, request.horizons)
    graph = members_to_onnx(members, len(names), len(request.horizons))
    session = ort.InferenceSession(with_metadata(graph, "{}"), providers=["CPUExecutionProvider"])
    cal_in = forecast_inputs(cal.histories, cal.last_ts, cal.step_s, request.horizons)
    cal_out = np.stack(session.run(list(MEMBERS), {"x": cal_in.x}), axis=1)
    parity = check_parity(
        sklearn_outputs(members, cal_in.x),
        dict(zip(MEMBERS, cal_out.transpose(1, 0, 2), strict=True)),
    )
    max_output = float(squash(np.array(request.target_clip), request.squash))
    weights, q_low, q_high, power = calibrate(cal_out, cal, request, max_output)
    dataset = f"synthetic-demand(series={request.series}, seed={request.seed})" + (
        f"+{len(request.extra_series)} given series" if request.extra_series else ""
    )
    params = _params(request, train, cal, test)
    params["weight_power"] = power
    metadata = ForecastMetadata(
        lookback=request.lookback, horizons=request.horizons, members=MEMBERS,
        features=names, weights=weights, q_low=q_low, q_high=q_high,
        interval_level=request.interval_level, confidence_k=CONFIDENCE_K,
        squash=request.squash, max_output=max_output,
        extra={"dataset": dataset, "params": params},
    )  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="novacron-forecast-")) / f"{MODEL_NAME}.onnx"
    path.write_bytes(with_metadata(graph, metadata.to_json()))
    served = OnnxForecaster.load(path, MODEL_NAME, "candidate")
    scores = score_windows(served, test)
    params.update(train_seconds=time.perf_counter() - started, parity_max_abs=parity)
    params["onnx_bytes"] = path.stat().st_size
    metrics = scores.pop("ensemble")
    return TrainedForecaster(path, params, metrics, parity, test, dataset, scores)


def _params(request: ForecastTrainRequest, *sets: ForecastWindows) -> dict[str, Any]:
    plain = replace(request, extra_series=())
    params = {
        k: getattr(plain, k)
        for k in plain.__dataclass_fields__
        if k not in ("extra_series", "activate")
    }
    params["horizons"] = list(request.horizons)
    params["windows"] = {
        n: len(s.histories) for n, s in zip(("train", "cal", "test"), sets, strict=True)
    }
    return params


def register_forecaster(
    registry: ModelRegistry, trained: TrainedForecaster, activate: Activation = "auto"
) -> ForecastTrainReport:
    """Register the exported ensemble; activate it as ``activate`` says (``auto``: if its
    mean normalised MAE over horizons beats the active version's on the same test windows)."""
    version = registry.register(
        MODEL_NAME, trained.onnx_path, mode="host", kind="onnx-sklearn",
        params=trained.params, metrics=trained.metrics, dataset=trained.dataset,
        notes="figures on held-out synthetic series; baselines under baseline:NAME",
    )  # fmt: skip
    for name, figures in trained.baselines.items():
        registry.record_metrics(MODEL_NAME, version.version, f"baseline:{name}", figures)
    active = registry.active(MODEL_NAME)
    report = ForecastTrainReport(version, False, "", trained)
    if activate == "never":
        report.reason = "not activated (--no-activate)"
    elif activate == "always" or active is None:
        report.activated = True
        report.reason = (
            "first version of this model" if active is None else "activated (--activate)"
        )
    else:
        current = OnnxForecaster.load(registry.verify(active), MODEL_NAME, active.version)
        old = score_windows(current, trained.test)["ensemble"]["nmae_mean"]
        new = trained.metrics["nmae_mean"]
        report.activated = new < old
        verb = "beats" if report.activated else "does not beat"
        report.reason = (
            f"mean normalised MAE {new:.4g} {verb} active v{active.version}'s {old:.4g} "
            "on the same test windows"
        )
    if report.activated:
        registry.activate(MODEL_NAME, version.version, reason=report.reason)
    return report
