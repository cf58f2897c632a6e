"""Train the bandwidth LSTM (TensorFlow/Keras): the model, its fit, and the trained result.

Needs the ``train`` extra (``pip install .[train]``); TensorFlow is imported inside the
functions that need it, so nothing else in the package pulls it in. The interval's
calibration and the metrics are in :mod:`models.scoring`, the ONNX export in
:mod:`models.onnx_export`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streams.errors import ConfigError, ModelError

from .datasets import WindowSet
from .features import CHANNELS, FeatureStats, encode_windows
from .lstm_predictor import LstmBandwidthPredictor, ModelMetadata
from .onnx_export import export_onnx
from .scoring import (
    baseline_predictions,
    calibrate_interval,
    choose_ewma_alpha,
    metrics_dict,
    score,
)


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
    threads: int = 0,
) -> TrainedModel:
    """Fit, calibrate the conformal interval on validation, export to ONNX, check parity.

    ``threads`` caps TensorFlow's intra-op threads (0 leaves its default).
    """
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
