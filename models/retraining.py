"""Retrain a bandwidth model on recent telemetry; keep it only if it is better there.

What ``novacron retrain`` runs for a model whose links drifted: each link's recent
series is split in time (the last ``holdout`` fraction is the recent holdout, before it
train and validation), a candidate of the mode's design is trained with
:func:`models.training.train_lstm`, the candidate and the active version are scored on
the same holdout targets, the candidate is registered with those figures, and it is
activated only if its holdout MAE is lower. The request ids are stored in the version's
``params["retrain"]``, so a request handled once is recognised after a restart.

No Kafka, no settings: the caller hands in the recent telemetry
(:mod:`models.recent_telemetry`), a registry and options.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.errors import ConfigError, ModelError

from .datasets import WindowSet, build_windows, synthetic_series
from .features import fit_stats
from .lstm_predictor import LstmBandwidthPredictor, model_name
from .recent_telemetry import RecentData, holdout_windows
from .registry import ModelRegistry, ModelVersion
from .scoring import metrics_dict, score
from .training import MODE_CONFIGS, TrainedModel, mode_config, train_lstm


@dataclass(frozen=True, slots=True)
class RetrainRequest:
    """One ``retrain_requested`` record: which model drifted, on which link, when.

    Attributes:
        request_id: the requester's id (duplicates are recognised by it).
        model: the model's registry name, e.g. ``bandwidth-lstm-internet``.
        mode: ``datacenter`` or ``internet``.
        ts: event time at which the drift was confirmed.
        version: the version that drifted.
        key: the link that drifted; ``reason``: ``drift`` or ``accuracy``.
    """

    request_id: str
    model: str
    mode: str
    ts: float
    version: str = ""
    key: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RetrainOptions:
    """How a retrain trains.

    Attributes:
        epochs: most epochs (early stopping restores the best one's weights).
        units: LSTM units, default the mode's (a small model trains in seconds).
        max_samples: the newest samples kept over all links.
        holdout: the last fraction of each link's samples, scored and never trained on.
        validation: the last fraction of what precedes the holdout (early stopping and
            the interval's calibration).
        synthetic_links: synthetic links of the mode mixed into train and validation.
            0 by default: the training set balances families, so synthetic links would
            carry half the loss however many real links drifted, pulling the model back
            toward the traffic it is being retrained away from.
        synthetic_length: samples per synthetic link.
        seed: seeds training and the synthetic links.
        threads: TensorFlow intra-op threads (0: TensorFlow's default).
    """

    epochs: int = 5
    units: tuple[int, int] | None = None
    max_samples: int = 200_000
    holdout: float = 0.2
    validation: float = 0.2
    synthetic_links: int = 0
    synthetic_length: int = 6000
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        for name, value in (("holdout", self.holdout), ("validation", self.validation)):
            if not 0.0 < value < 1.0:
                msg = (
                    f"The '{name}' parameter of RetrainOptions must be in the open interval "
                    f"(0, 1). Got {value!r} instead."
                )
                raise ConfigError(msg)
        for name, number, low in (
            ("epochs", self.epochs, 1),
            ("max_samples", self.max_samples, 1),
            ("synthetic_links", self.synthetic_links, 0),
            ("synthetic_length", self.synthetic_length, 1),
            ("threads", self.threads, 0),
        ):
            if number < low:
                msg = (
                    f"The '{name}' parameter of RetrainOptions must be an int >= {low}. "
                    f"Got {number!r} instead."
                )
                raise ConfigError(msg)
        if self.units is not None and (len(self.units) != 2 or min(self.units) < 1):
            msg = (
                "The 'units' parameter of RetrainOptions must be two positive ints "
                f"(e.g. (32, 16)). Got {self.units!r} instead."
            )
            raise ConfigError(msg)


def holdout_scores(
    predictors: Mapping[str, LstmBandwidthPredictor], data: RecentData
) -> dict[str, dict[str, float]]:
    """MAE, ±20% accuracy and interval figures of each predictor on the same targets.

    A target is scored only where every predictor gives a finite prediction.
    """
    forecasts = {}
    targets = np.zeros(0)
    for label, predictor in predictors.items():
        ws = holdout_windows(data, predictor.window_steps)
        forecasts[label], targets = predictor.predict(ws.windows), ws.targets
    ok = np.all([np.isfinite(f.point) for f in forecasts.values()], axis=0)
    return {
        label: metrics_dict(
            score(f.point[ok], targets[ok], f.lower[ok], f.upper[ok], f.confidence[ok])
        )
        for label, f in forecasts.items()
    }


@dataclass(slots=True)
class RetrainReport:
    """The registered candidate, whether it was activated and why, and the figures."""

    name: str
    request_ids: list[str]
    version: ModelVersion
    activated: bool
    reason: str
    candidate_metrics: dict[str, float]
    active_version: str | None
    active_metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    data: RecentData
    trained: TrainedModel = field(repr=False)


def _training_windows(data: RecentData, options: RetrainOptions) -> dict[str, WindowSet]:
    sets = dict(data.windows)
    if options.synthetic_links:
        synth = build_windows(
            synthetic_series(data.mode, options.synthetic_links, options.synthetic_length,
                             options.seed),
            mode_config(data.mode).window, by_file=False,
        )  # fmt: skip
        for part in ("train", "val"):
            a, b = sets[part], synth[part]
            sets[part] = WindowSet(
                np.concatenate([a.windows, b.windows]),
                np.concatenate([a.targets, b.targets]),
                np.concatenate([a.weights, b.weights]),
                sorted(a.names + b.names),
                np.concatenate([a.families, b.families]),
            )
    sets["train"] = WindowSet(
        sets["train"].windows, sets["train"].targets, sets["train"].weights.copy(),
        sets["train"].names, sets["train"].families,
    )  # fmt: skip
    sets["train"].balance_families()
    return sets


def retrain(
    registry: ModelRegistry,
    requests: Sequence[RetrainRequest],
    data: RecentData,
    options: RetrainOptions,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> RetrainReport:
    """Train a candidate on ``data``, score it and the active version on the holdout,
    register it, and activate it only if its holdout MAE is lower.

    Raises:
        ModelError: the requests name another mode's model, or training failed.
    """
    name = model_name(data.mode)
    others = sorted({r.model for r in requests if r.model != name})
    if not requests or others:
        msg = (
            f"retrain got requests for {others or 'no model'}; it retrains '{name}' on "
            f"{data.mode} telemetry. Give it the requests of that model only."
        )
        raise ModelError(msg)
    request_ids = list(dict.fromkeys(r.request_id for r in requests))
    started_at = clock()
    config = mode_config(data.mode)
    sets = _training_windows(data, options)
    stats = fit_stats([sets["train"].windows[:, -1, :]])
    trained = train_lstm(
        config, sets, stats, epochs=options.epochs, units=options.units, seed=options.seed,
        on_epoch=on_epoch, threads=options.threads,
        extra={"trained_on": sets["train"].names, "validated_on": sets["val"].names,
               "tested_on": data.windows["test"].names, "retrain_requests": request_ids},
    )  # fmt: skip
    candidate = LstmBandwidthPredictor.load(trained.onnx_path, name=name, version="candidate")
    active = registry.active(name)
    predictors = {"candidate": candidate}
    if active is not None:
        predictors["active"] = LstmBandwidthPredictor.load(
            registry.verify(active), name=name, version=active.version
        )
    scores = holdout_scores(predictors, data)
    new_mae = scores["candidate"]["mae"]
    if active is None:
        activate, reason = True, "first version of this model"
    else:
        old_mae = scores["active"]["mae"]
        activate = new_mae < old_mae
        verb = "beats" if activate else "does not beat"
        reason = (
            f"holdout MAE {new_mae:.4g} {verb} active v{active.version}'s {old_mae:.4g} "
            "on the same recent holdout"
        )
    keys = sorted({r.key for r in requests if r.key})
    version = registry.register(
        name,
        trained.onnx_path,
        mode=data.mode,
        kind="onnx-lstm",
        params={
            **trained.params,
            "parity_max_abs": trained.parity_max_abs,
            "train_seconds": trained.train_seconds,
            "retrain": {
                "request_ids": request_ids,
                "keys": keys,
                "started_at": started_at,
                "data_start": data.start,
                "data_end": data.end,
                "links": len(data.links),
                "samples": data.samples,
                "holdout": options.holdout,
                "validation": options.validation,
                "synthetic_links": options.synthetic_links,
                "compared_with": None if active is None else active.version,
                "decision": "activate" if activate else "reject",
            },
        },
        metrics=scores["candidate"],
        history=trained.history,
        dataset=data.dataset,
        notes=(
            f"retrain for request(s) {', '.join(request_ids)}"
            + (f" (drift on {', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''})"
               if keys else "")
            + f"; {reason}; {'activated' if activate else 'not activated'}"
        ),
    )  # fmt: skip
    for baseline, figures in trained.baselines.items():
        registry.record_metrics(name, version.version, f"baseline:{baseline}", figures)
    if active is not None:
        registry.record_metrics(
            name, active.version, f"retrain holdout of v{version.version}", scores["active"]
        )
    if activate:
        version = registry.activate(name, version.version, reason=f"retrain: {reason}")
    return RetrainReport(
        name, request_ids, version, activate, reason, scores["candidate"],
        None if active is None else active.version, scores.get("active", {}),
        trained.baselines, data, trained,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RetrainHistory:
    """What the registry says about a model's past retrains.

    Attributes:
        handled: request id -> the version registered for it.
        last_started: wall-clock start of the newest retrain (the cooldown runs from it).
        covered_until: event time of the newest sample the newest retrain used: a
            request confirmed at or before it was answered by that retrain.
        last_version: the version the newest retrain registered.
    """

    handled: dict[str, str] = field(default_factory=dict)
    last_started: float | None = None
    covered_until: float | None = None
    last_version: str | None = None


def retrain_history(registry: ModelRegistry, name: str) -> RetrainHistory:
    """The retrains recorded in the versions of ``name`` (none for an unknown name)."""
    handled: dict[str, str] = {}
    newest: tuple[float, ModelVersion, dict[str, Any]] | None = None
    for mv in registry.versions(name):
        info = mv.params.get("retrain")
        if not isinstance(info, dict):
            continue
        for request_id in info.get("request_ids", []):
            handled[str(request_id)] = mv.version
        started = float(info.get("started_at", mv.created_at))
        if newest is None or started >= newest[0]:
            newest = (started, mv, info)
    if newest is None:
        return RetrainHistory(handled)
    started, mv, info = newest
    return RetrainHistory(handled, started, float(info.get("data_end", 0.0)), mv.version)


def complete_activation(registry: ModelRegistry, name: str) -> tuple[ModelVersion, str] | None:
    """Activate a retrained version whose activation was decided but never made.

    A retrain registers its candidate, then activates it; a job stopped between the two
    leaves a better version registered only. It is activated now if the version it was
    compared with is still the active one. Returns it and the version it replaced.
    """
    history = retrain_history(registry, name)
    if history.last_version is None:
        return None
    mv = registry.get(name, history.last_version)
    info = mv.params["retrain"]
    active = registry.active(name)
    current = None if active is None else active.version
    if (
        info.get("decision") != "activate"
        or mv.activated_at is not None
        or info.get("compared_with") != current
    ):
        return None
    reason = f"retrain: activation completed after a restart ({mv.notes})"
    return registry.activate(name, mv.version, reason=reason), current or ""


def retrainable_mode(name: str) -> str | None:
    """The mode of a bandwidth model's name, None for a model retrain does not train.

    Examples:
        >>> retrainable_mode("bandwidth-lstm-internet"), retrainable_mode("workload")
        ('internet', None)
    """
    return next((mode for mode in MODE_CONFIGS if model_name(mode) == name), None)
