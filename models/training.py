"""Train the bandwidth LSTM (TensorFlow/Keras), calibrate its interval, export to ONNX.

Needs the ``train`` extra (``pip install .[train]``); TensorFlow is imported inside the
functions that need it, so nothing else in the package pulls it in.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from novacron.errors import ConfigError, ModelError

from .baseline import best_ewma_alpha, harmonic_mean_of_last
from .datasets import WindowSet
from .features import CHANNELS, FeatureStats, encode_windows, last_bandwidth
from .lstm_predictor import IntervalSpec, LstmBandwidthPredictor, ModelMetadata, window_volatility
from .predictor import bandwidth_target

PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True, slots=True)
class ModeConfig:
    """The design's hyper-parameters of one mode."""

    mode: str
    window: int
    units: tuple[int, int]
    dropout: float
    learning_rate: float
    epochs: int
    batch_size: int = 32
    patience: int = 10
    min_history: int = 10


MODE_CONFIGS = {
    "datacenter": ModeConfig("datacenter", 30, (128, 64), 0.2, 0.001, 30),
    "internet": ModeConfig("internet", 60, (256, 128), 0.3, 0.0005, 50),
}


def mode_config(mode: str) -> ModeConfig:
    if mode not in MODE_CONFIGS:
        msg = (
            f"The 'mode' parameter of train_bandwidth must be one of "
            f"{{'datacenter', 'internet'}}. Got {mode!r} instead."
        )
        raise ConfigError(msg)
    return MODE_CONFIGS[mode]


@dataclass(slots=True)
class Metrics:
    """Point and interval quality on one test set."""

    mae: float
    rmse: float
    mae_pct_of_mean: float
    acc10: float
    acc20: float
    coverage: float | None = None
    mean_confidence: float | None = None
    n: int = 0


def score(
    point: np.ndarray,
    actual: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
) -> Metrics:
    """MAE, RMSE, accuracy within ±10% and ±20%, and interval coverage.

    Examples:
        >>> m = score(np.array([100.0, 90.0]), np.array([100.0, 120.0]))
        >>> m.mae, m.acc10, m.acc20
        (15.0, 0.5, 0.5)
    """
    err = np.abs(point - actual)
    metrics = Metrics(
        mae=float(err.mean()),
        rmse=float(np.sqrt(np.mean(err**2))),
        mae_pct_of_mean=float(100 * err.mean() / np.mean(np.abs(actual))),
        acc10=float(np.mean(err <= 0.1 * np.abs(actual))),
        acc20=float(np.mean(err <= 0.2 * np.abs(actual))),
        n=int(actual.size),
    )
    if lower is not None and upper is not None:
        metrics.coverage = float(np.mean((actual >= lower) & (actual <= upper)))
    if confidence is not None:
        metrics.mean_confidence = float(np.mean(confidence))
    return metrics


def metrics_dict(m: Metrics) -> dict[str, float]:
    names = ("mae", "rmse", "mae_pct_of_mean", "acc10", "acc20", "coverage", "mean_confidence", "n")
    return {k: float(getattr(m, k)) for k in names if getattr(m, k) is not None}


def window_ewma(windows: np.ndarray, alpha: float) -> np.ndarray:
    """EWMA over each raw window's bandwidth (the baseline's next-step prediction)."""
    target = bandwidth_target(windows)
    level = np.full(target.shape[0], np.nan)
    for s in range(target.shape[1]):
        x = target[:, s]
        level = np.where(
            np.isnan(level), x, np.where(np.isnan(x), level, alpha * x + (1 - alpha) * level)
        )
    return level


def baseline_predictions(windows: np.ndarray, alpha: float) -> dict[str, np.ndarray]:
    """Last value, EWMA and harmonic mean of 5 on the same windows."""
    target = bandwidth_target(windows)
    return {
        "last_value": last_bandwidth(windows),
        "ewma": window_ewma(windows, alpha),
        "harmonic_mean_5": harmonic_mean_of_last(target, 5),
    }


def choose_ewma_alpha(train: WindowSet) -> float:
    """The EWMA alpha with the lowest training MAE (never chosen on test data)."""
    sample = slice(0, min(len(train), 20_000))
    windows, targets = train.windows[sample], train.targets[sample]
    return best_ewma_alpha(lambda a: float(np.nanmean(np.abs(window_ewma(windows, a) - targets))))


def build_model(config: ModeConfig, units: tuple[int, int] | None = None) -> Any:
    """LSTM -> Dropout -> LSTM -> Dropout -> Dense(32) -> Dense(16) -> Dense(1).

    Written against Keras 3 (``keras.ops``), so it also trains on a JAX or PyTorch
    backend; export to ONNX is done with the TensorFlow backend.
    """
    import keras

    u1, u2 = units or config.units
    inputs = keras.Input((config.window, len(CHANNELS)), name="x")
    h = keras.layers.LSTM(u1, return_sequences=True)(inputs)
    h = keras.layers.Dropout(config.dropout)(h)
    h = keras.layers.LSTM(u2)(h)
    h = keras.layers.Dropout(config.dropout)(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    outputs = keras.layers.Dense(1)(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(config.learning_rate), loss=ratio_mae)
    return model


def ratio_mae(y_true: Any, y_pred: Any) -> Any:
    """|exp(o) - exp(y)| = |prediction - actual| / last, the relative error of a window.

    With a per-window weight of last / series level every link counts alike.
    """
    from keras import ops

    clipped = ops.clip(y_pred, -5.0, 5.0)
    return ops.mean(ops.abs(ops.exp(clipped) - ops.exp(y_true)), axis=-1)


def fit_model(
    config: ModeConfig,
    data: dict[str, WindowSet],
    stats: FeatureStats,
    *,
    epochs: int | None = None,
    units: tuple[int, int] | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    max_seconds: float | None = None,
    init_weights: Path | None = None,
) -> tuple[Any, list[dict[str, float]], float]:
    """Fit with early stopping (best weights restored); returns model, history, seconds.

    ``max_seconds`` ends training after the epoch that passes it, still restoring the
    best weights (for a machine lent for a fixed time). ``init_weights`` starts from a
    saved model of the same architecture (fine-tuning on more data) instead of from
    random weights.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if len(data["train"]) == 0 or len(data["val"]) == 0 or len(data["test"]) == 0:
        sizes = {k: len(v) for k, v in data.items()}
        msg = f"Training needs windows in train, val and test; got {sizes}. Give more data."
        raise ModelError(msg)
    x_tr, y_tr, w_tr, _ = _targets(data["train"], stats)
    x_va, y_va, w_va, _ = _targets(data["val"], stats)
    model = build_model(config, units)
    if init_weights is not None:
        model.load_weights(init_weights)

    started = time.perf_counter()

    class EpochReport(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if on_epoch is not None:
                on_epoch(epoch + 1, dict(logs or {}))
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                self.model.stop_training = True

    fit = model.fit(
        x_tr, y_tr, sample_weight=w_tr, batch_size=config.batch_size,
        epochs=epochs or config.epochs, validation_data=(x_va, y_va, w_va),
        shuffle=True, verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True),
            EpochReport(),
        ],
    )  # fmt: skip
    seconds = time.perf_counter() - started
    history = [
        {"epoch": i + 1, "loss": float(loss), "val_loss": float(val)}
        for i, (loss, val) in enumerate(
            zip(fit.history["loss"], fit.history["val_loss"], strict=True)
        )
    ]
    return model, history, seconds


@dataclass(slots=True)
class TrainedModel:
    """A trained, exported and checked model with its report."""

    onnx_path: Path
    metadata: ModelMetadata
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    history: list[dict[str, float]]
    params: dict[str, Any]
    parity_max_abs: float
    train_seconds: float
    test: WindowSet = field(repr=False)


def _targets(
    windows: WindowSet, stats: FeatureStats
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, last = encode_windows(windows.windows, stats)
    ok = np.isfinite(last) & (windows.targets > 0)
    y = np.log(np.maximum(windows.targets, 1e-3)) - last
    weights = np.where(ok, windows.weights, 0.0)
    return (
        x[ok],
        y[ok].astype(np.float32),
        (weights[ok] / weights[ok].mean()).astype(np.float32),
        ok,
    )


def train_lstm(
    config: ModeConfig,
    data: dict[str, WindowSet],
    stats: FeatureStats,
    *,
    epochs: int | None = None,
    units: tuple[int, int] | None = None,
    seed: int = 0,
    level: float = 0.8,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    extra: dict[str, Any] | None = None,
    horizon: int = 1,
) -> TrainedModel:
    """Fit, calibrate the conformal interval on validation, export to ONNX, check parity."""
    threads = int(os.environ.get("NOVACRON_TF_THREADS", "0"))
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
    model, history, train_seconds = fit_model(
        config, data, stats, epochs=epochs, units=units, seed=seed, on_epoch=on_epoch
    )
    return finalize(
        config,
        model,
        data,
        stats,
        history,
        train_seconds,
        epochs=epochs,
        units=units,
        seed=seed,
        level=level,
        extra=extra,
        horizon=horizon,
    )


VOLATILITY_CANDIDATES = (10, 3, 4, 5, 7, 20, 30)
"""Windows (steps) of the interval's volatility scale tried at calibration; 10 first."""


def calibrate_interval(
    residuals: np.ndarray,
    encoded: np.ndarray,
    families: np.ndarray,
    level: float,
    *,
    floor: float = 0.01,
    better_by: float = 0.005,
) -> IntervalSpec:
    """Split-conformal interval on validation residuals ``log(next/last) - out``.

    Residuals are divided by the window's volatility over its last ``k`` steps and the
    interval takes their ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles. ``k`` is
    chosen among :data:`VOLATILITY_CANDIDATES` so that the validation coverage of the
    worst-covered family (synthetic links, each trace folder) is nearest to ``level``:
    families whose errors scale with short-term jumps differently would otherwise be
    covered unevenly. A ``k`` must beat the first candidate by ``better_by`` to be taken,
    so data with one family keeps 10.
    """
    alpha = (1 - level) / 2
    n = residuals.size
    groups = [families == f for f in np.unique(families)] or [np.ones(n, dtype=bool)]
    best: tuple[float, IntervalSpec] | None = None
    for steps in VOLATILITY_CANDIDATES:
        z = residuals / window_volatility(encoded, floor, steps)
        q_low = float(np.quantile(z, max(0.0, alpha * (n + 1) / n - 1 / n)))
        q_high = float(np.quantile(z, min(1.0, (1 - alpha) * (n + 1) / n)))
        inside = (z >= q_low) & (z <= q_high)
        worst = max(abs(float(inside[g].mean()) - level) for g in groups)
        if best is None or worst < best[0] - better_by:
            best = (worst, IntervalSpec(level, q_low, q_high, floor, steps))
    assert best is not None
    return best[1]


def finalize(
    config: ModeConfig,
    model: Any,
    data: dict[str, WindowSet],
    stats: FeatureStats,
    history: list[dict[str, float]],
    train_seconds: float,
    *,
    epochs: int | None = None,
    units: tuple[int, int] | None = None,
    seed: int = 0,
    level: float = 0.8,
    extra: dict[str, Any] | None = None,
    horizon: int = 1,
) -> TrainedModel:
    """Calibrate the interval on validation, export to ONNX, score on test.

    ``horizon`` must be the one the windows were built with (targets ``horizon`` steps
    after each window's last sample).
    """
    x_va, y_va, _, ok_va = _targets(data["val"], stats)
    # Normalised conformal calibration on the validation split (never the test split).
    out_va = model.predict(x_va, batch_size=1024, verbose=0)[:, 0]
    families = data["val"].families[ok_va]
    metadata = ModelMetadata(
        mode=config.mode,
        window=config.window,
        horizon=horizon,
        min_history=config.min_history,
        channels=CHANNELS,
        stats=stats,
        interval=calibrate_interval(y_va - np.clip(out_va, -5, 5), x_va, families, level),
        extra=extra or {},
    )
    onnx_path, parity = export_onnx(model, metadata, data["test"], stats)
    predictor = LstmBandwidthPredictor.load(onnx_path, name="candidate", version="candidate")
    forecast = predictor.predict(data["test"].windows)
    test = data["test"]
    ok = np.isfinite(forecast.point)
    metrics = score(
        forecast.point[ok],
        test.targets[ok],
        forecast.lower[ok],
        forecast.upper[ok],
        forecast.confidence[ok],
    )
    alpha_ewma = choose_ewma_alpha(data["train"])
    baselines = {
        name: metrics_dict(score(pred[ok], test.targets[ok]))
        for name, pred in baseline_predictions(test.windows, alpha_ewma).items()
    }
    baselines["ewma"]["alpha"] = alpha_ewma
    params = {
        "mode": config.mode,
        "window": config.window,
        "units": list(units or config.units),
        "dropout": config.dropout,
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "max_epochs": epochs or config.epochs,
        "epochs_run": len(history),
        "patience": config.patience,
        "seed": seed,
        "train_windows": int(np.isfinite(data["train"].targets).sum()),
        "val_windows": int(len(y_va)),
        "test_windows": int(ok.sum()),
        "train_seconds": train_seconds,
        "interval_level": level,
        "horizon_steps": horizon,
    }
    return TrainedModel(
        onnx_path,
        metadata,
        metrics_dict(metrics),
        baselines,
        history,
        params,
        parity,
        train_seconds,
        test,
    )


def export_onnx(
    model: Any, metadata: ModelMetadata, test: WindowSet, stats: FeatureStats
) -> tuple[Path, float]:
    """Convert with tf2onnx, embed the metadata, and refuse a graph that differs from Keras."""
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, metadata.window, len(CHANNELS)), tf.float32, name="x"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "novacron", metadata.to_json()
    path = Path(tempfile.mkdtemp(prefix="novacron-train-")) / f"bandwidth-lstm-{metadata.mode}.onnx"
    onnx.save(proto, str(path))
    # Every test window: the first few thousand may all be one family (a mixed set starts
    # with the synthetic links, where a model can be nearly constant) and prove little.
    x, last = encode_windows(test.windows, stats)
    x = x[np.isfinite(last)]
    keras_out = model.predict(x, batch_size=1024, verbose=0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    parity = float(np.max(np.abs(keras_out - onnx_out))) if x.size else 0.0
    if parity >= PARITY_TOLERANCE:
        msg = (
            f"ONNX output differs from Keras by {parity:.2e} (limit {PARITY_TOLERANCE}); "
            "not exporting."
        )
        raise ModelError(msg)
    return path, parity
