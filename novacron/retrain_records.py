"""The ``model.events.v1`` records ``novacron retrain`` writes, built from plain values.

A model's story on the topic (key: the model name): ``retrain_requested`` (from the
worker), then ``retrain_started``, then ``retrain_finished`` and ``activated``, or
``retrain_rejected``; a request not acted on gets ``retrain_skipped``. ``ts`` is event
time: the newest telemetry sample the retrain used (for a skip, the newest request's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.recent_telemetry import RecentData
from models.retraining import RetrainReport, RetrainRequest
from streams.records import ModelEvent, ModelRef

from .retrain_schedule import Skip

BASELINES = ("last_value", "ewma", "harmonic_mean_5")


def _ids(requests: Sequence[RetrainRequest]) -> list[str]:
    return list(dict.fromkeys(r.request_id for r in requests))


def _keys(requests: Sequence[RetrainRequest]) -> list[str]:
    return sorted({r.key for r in requests if r.key})


def skipped_event(skip: Skip) -> ModelEvent:
    """``retrain_skipped``: which requests, and why they were not acted on.

    Examples:
        >>> r = RetrainRequest("r1", "bandwidth-lstm-internet", "internet", 1.8e9, "3", "l1")
        >>> e = skipped_event(Skip(r.model, (r,), "covered", "data up to ...", "4"))
        >>> e.event, e.model.version, e.detail["kind"], e.detail["request_ids"]
        ('retrain_skipped', '4', 'covered', ['r1'])
    """
    requests = skip.requests
    version = skip.version or requests[-1].version or "unknown"
    return ModelEvent(
        "retrain_skipped",
        ModelRef(skip.model, version),
        max(r.ts for r in requests),
        detail={
            "kind": skip.kind,
            "why": skip.reason,
            "request_ids": skip.request_ids,
            "keys": _keys(requests),
        },
    )


def started_event(
    requests: Sequence[RetrainRequest],
    active_version: str,
    data: RecentData,
    telemetry: dict[str, Any],
    training: dict[str, Any],
) -> ModelEvent:
    """``retrain_started``: the requests coalesced, the data and how it is split."""
    return ModelEvent(
        "retrain_started",
        ModelRef(requests[0].model, active_version),
        data.end,
        detail={
            "request_ids": _ids(requests),
            "keys": _keys(requests),
            **data.summary(),
            "telemetry": telemetry,
            "training": training,
        },
    )


def outcome_events(report: RetrainReport) -> list[ModelEvent]:
    """``retrain_finished`` and ``activated``, or ``retrain_rejected``."""
    version = report.version.version
    detail: dict[str, Any] = {
        "request_ids": report.request_ids,
        "version": version,
        "activated": report.activated,
        "reason": report.reason,
        "dataset": report.data.dataset,
        "candidate": report.candidate_metrics,
        "active": {"version": report.active_version, "metrics": report.active_metrics},
        "baselines": {
            name: report.baselines[name]["mae"] for name in BASELINES if name in report.baselines
        },
        "epochs_run": len(report.trained.history),
        "train_seconds": report.trained.train_seconds,
    }
    ref = ModelRef(report.name, version)
    ts = report.data.end
    if not report.activated:
        return [ModelEvent("retrain_rejected", ref, ts, detail=detail)]
    return [
        ModelEvent("retrain_finished", ref, ts, previous_version=report.active_version,
                   detail=detail),
        ModelEvent("activated", ref, ts, previous_version=report.active_version,
                   detail={"reason": f"retrain: {report.reason}",
                           "request_ids": report.request_ids}),
    ]  # fmt: skip


def completed_activation_event(
    name: str, version: str, previous: str, ts: float, notes: str
) -> ModelEvent:
    """``activated`` for a retrained version whose activation a restart completed."""
    return ModelEvent(
        "activated",
        ModelRef(name, version),
        ts,
        previous_version=previous or None,
        detail={"reason": f"retrain: activation completed after a restart ({notes})"},
    )
