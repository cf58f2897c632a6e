"""``novacron train bandwidth``: data -> LSTM -> ONNX -> registry, with gated activation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streams.errors import ConfigError

from .datasets import Series, WindowSet, assemble, read_directory, synthetic_series
from .features import FeatureStats, fit_stats
from .lstm_predictor import LstmBandwidthPredictor, model_name
from .registry import ModelRegistry, ModelVersion
from .scoring import metrics_dict, score
from .training import TrainedModel, mode_config, train_lstm

Activation = Literal["auto", "always", "never"]


@dataclass(frozen=True, slots=True)
class TrainRequest:
    """What to train on and how.

    Attributes:
        mode: ``datacenter`` or ``internet`` (window, units, dropout, lr, epochs).
        data: telemetry files or folders (split 70/15/15 by file; one file: by time).
        synthetic: also train on synthetic links of the mode (split by time).
        synthetic_links, synthetic_length: how many synthetic links, samples each.
        epochs: override the mode's epochs (early stopping still applies).
        units: override the mode's LSTM units (e.g. a small model for tests).
        stride: keep every n-th training window (validation and test keep all).
        horizon: predict the sample this many steps after the window's last (default 1).
        activate: ``auto`` activates only if it beats the active version on the same
            test data; ``always`` / ``never`` as they say.
        threads: TensorFlow intra-op threads (0: TensorFlow's default, all cores).
    """

    mode: str
    data: Sequence[Path] = ()
    synthetic: bool = True
    synthetic_links: int = 8
    synthetic_length: int = 6000
    epochs: int | None = None
    units: tuple[int, int] | None = None
    stride: int = 1
    seed: int = 0
    activate: Activation = "auto"
    horizon: int = 1
    threads: int = 0


@dataclass(slots=True)
class TrainReport:
    """The registered version, whether it was activated and why, and its figures."""

    version: ModelVersion
    activated: bool
    reason: str
    trained: TrainedModel
    active_before: str | None = None
    active_metrics: dict[str, float] = field(default_factory=dict)


def prepare(request: TrainRequest) -> tuple[dict[str, WindowSet], FeatureStats, list[Series]]:
    """Windows for train/val/test and the feature statistics of the training part."""
    config = mode_config(request.mode)
    synth: list[Series] = []
    if request.synthetic:
        synth = synthetic_series(
            request.mode, request.synthetic_links, request.synthetic_length, request.seed
        )
    folders = [read_directory(path) for path in request.data]
    if not synth and not any(folders):
        msg = "Nothing to train on: give --data FILE/DIR or leave synthetic data on."
        raise ConfigError(msg)
    data = assemble(
        synth, folders, config.window, horizon=request.horizon, stride=request.stride,
        seed=request.seed,
    )  # fmt: skip
    stats = fit_stats([data["train"].windows[:, -1, :]])
    return data, stats, synth + [s for folder in folders for s in folder]


def train_bandwidth(
    registry: ModelRegistry,
    request: TrainRequest,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train, export, register and (gated) activate a bandwidth model."""
    config = mode_config(request.mode)
    data, stats, _ = prepare(request)
    extra: dict[str, Any] = {
        "trained_on": data["train"].names,
        "validated_on": data["val"].names,
        "tested_on": data["test"].names,
    }
    trained = train_lstm(
        config,
        data,
        stats,
        epochs=request.epochs,
        units=request.units,
        seed=request.seed,
        on_epoch=on_epoch,
        extra=extra,
        horizon=request.horizon,
        threads=request.threads,
    )
    dataset = "+".join(["synthetic"] * request.synthetic + [str(p) for p in request.data])
    return register_trained(registry, request.mode, trained, dataset, request.activate)


def register_trained(
    registry: ModelRegistry,
    mode: str,
    trained: TrainedModel,
    dataset: str,
    activate: Activation = "auto",
) -> TrainReport:
    """Register an exported model and activate it as ``activate`` says."""
    name = model_name(mode)
    version = registry.register(
        name,
        trained.onnx_path,
        mode=mode,
        kind="onnx-lstm",
        params={
            **trained.params,
            "parity_max_abs": trained.parity_max_abs,
            "train_seconds": trained.train_seconds,
        },
        metrics=trained.metrics,
        history=trained.history,
        dataset=dataset,
        notes=f"baselines on the same test set: {trained.baselines}",
    )
    for baseline, figures in trained.baselines.items():
        registry.record_metrics(name, version.version, f"baseline:{baseline}", figures)
    report = TrainReport(version, False, "", trained)
    active = registry.active(name)
    report.active_before = active.version if active else None
    if activate == "never":
        report.reason = "not activated (--activate never)"
    elif activate == "always" or active is None:
        report.activated = True
        report.reason = (
            "first version of this model" if active is None else "activated (--activate always)"
        )
    else:
        current = LstmBandwidthPredictor.load(
            registry.verify(active), name=name, version=active.version
        )
        forecast = current.predict(trained.test.windows)
        ok = np.isfinite(forecast.point)
        report.active_metrics = metrics_dict(score(forecast.point[ok], trained.test.targets[ok]))
        new_mae, old_mae = trained.metrics["mae"], report.active_metrics["mae"]
        report.activated = new_mae < old_mae
        verb = "beats" if report.activated else "does not beat"
        report.reason = (
            f"MAE {new_mae:.4g} {verb} active v{active.version}'s {old_mae:.4g} "
            "on the same test data"
        )
    if report.activated:
        registry.activate(name, version.version, reason=report.reason)
    return report
