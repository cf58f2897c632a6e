"""Scaling processor: each host's demand forecast and acted on, ``actions.scaling.v1`` out.

A host's demand is one of its metrics (``cpu_pct`` by default) times the instances
serving it (the sample's ``instances`` metric; 1 when it reports none, the host alone).
For every new sample the forecaster forecasts the demand from the host's last
``lookback`` demands (kept with the host's state, so a batch loads no window entries for
it), batched across the batch's hosts, with the host's workload class from the workload
processor when it has one; the scaling controller then steps the host's state with the
actual demand and the forecast, under its safety rules, and may return an action. Hosts
with fewer demands than the lookback are decided on their actual demand only.

The controller's state and the recent demands live in the worker's memory between
batches and are persisted with the host's window once the batch is delivered
(``scaling.state``, ``scaling.demand``, with the event id they are at in
``scaling.upto``); a host whose state in memory is not at the window's newest entry is
restored from the store, so a redone batch decides exactly what it decided the first
time (the action ids are deterministic too).

With an online demand path (:class:`~streams.capacity.OnlineDemandPath`), each new
sample first steps the host's online state (``scaling.online``, stored with the
controller's, so at the same ``scaling.upto``) with its actual demand and the forecast
made for it; the controller then acts on the forecast the online path returns (the
forecaster's own unless the forecaster is degraded and the online learner is champion).
Its model events follow the sample's action in the records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capacity import (
    DemandForecast,
    Forecaster,
    OnlineDemandPath,
    ScalingController,
    ScalingDecision,
)
from ..records import ForecastView, HostSample, ModelRef, OutputRecord, ScalingAction, Score
from ..windows import BatchWindows
from .base import HeldStates, ProcessorParts, ProcessorResult
from .workload import workload_type_at

STATE_FIELD = "scaling.state"
DEMAND_FIELD = "scaling.demand"
UPTO_FIELD = "scaling.upto"
ONLINE_FIELD = "scaling.online"
DEMAND_KEPT = 64
"""Recent (event time, demand) pairs kept per host: at least any forecaster's lookback."""
INSTANCES = "instances"
"""Host metric with the number of instances serving the host's demand (optional)."""

ForecasterLookup = Callable[[], Forecaster | None]
"""Returns the active demand forecaster (``None``: decide on actual demand only)."""


@dataclass(slots=True)
class _Target:
    upto: str | None
    state: bytes
    demand: np.ndarray
    """The host's recent ``(ts, demand)`` rows, oldest first."""
    dirty: bool = False
    saved: dict[str, bytes] = field(default_factory=dict)
    """The fields last persisted (a batch redone sample by sample restarts from them)."""
    online: Any = None
    """The host's online demand state (with an online demand path), at ``upto``."""


class ScalingProcessor:
    """Decides scaling actions per host and publishes ``actions.scaling.v1`` records.

    Args:
        controller: decides actions from demand and forecast, per host state.
        forecaster: the active forecaster, looked up once per batch (hot swap).
        metric: the host metric demand is measured in.
        cache_keys: hosts whose state is held in memory.
        workload_version: the active classifier's name and version, for the actions'
            list of models.
        online_demand: per-host online learner, forecaster drift and champion/
            challenger (see :mod:`online.demand`); ``None``: the forecaster alone.
    """

    name = "scaling"

    def __init__(
        self,
        controller: ScalingController,
        forecaster: ForecasterLookup,
        metric: str = "cpu_pct",
        cache_keys: int = 4096,
        workload_version: Callable[[], ModelRef | None] | None = None,
        online_demand: OnlineDemandPath | None = None,
    ) -> None:
        self.controller = controller
        self.online_demand = online_demand
        self.state_fields: tuple[str, ...] = (STATE_FIELD, DEMAND_FIELD, UPTO_FIELD) + (
            () if online_demand is None else (ONLINE_FIELD,)
        )
        self.forecaster = forecaster
        self.metric = metric
        self.cache_keys = cache_keys
        self.workload_version = workload_version
        self._held: HeldStates[_Target] = HeldStates(
            cache_keys, lambda s: s.upto, lambda s: s.dirty, lambda s: s.saved
        )
        self._lookback = 1

    @classmethod
    def from_parts(cls, parts: ProcessorParts) -> ScalingProcessor | None:
        if parts.scaling is None:
            return None
        return cls(
            parts.scaling,
            parts.forecaster or (lambda: None),
            metric=parts.scaling_metric,
            workload_version=parts.workload_version,
            online_demand=parts.online_demand,
        )

    def history_depth(self, samples: Sequence[Any]) -> int:
        return 1

    def missing_state(self, newest: Mapping[str, str | None]) -> list[str]:
        return self._held.missing(newest)

    def process(
        self,
        samples: Sequence[HostSample],
        windows: BatchWindows,
        scores: Sequence[Score] | None,
    ) -> ProcessorResult:
        result = ProcessorResult(
            counts={"scaling_decided": 0, "scaling_actions": 0, "scaling_no_metric": 0}
        )
        runs: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            if not windows.fresh[i]:
                continue
            if self.metric not in sample.metrics:
                result.counts["scaling_no_metric"] += 1
                continue
            runs.setdefault(sample.key, []).append(i)
        if not runs:
            return result
        forecaster = self.forecaster()
        self._lookback = 1 if forecaster is None else forecaster.lookback
        targets: dict[str, _Target] = {}
        series: dict[int, np.ndarray] = {}
        for key, indexes in runs.items():
            first = _demand(samples[indexes[0]], self.metric)
            target = targets[key] = self._state_for(key, windows, indexes[0], first)
            target.dirty = True
            self._held.hold(key, target)
            new = np.array([[samples[i].ts, _demand(samples[i], self.metric)] for i in indexes])
            rows = np.vstack([target.demand, new])
            for n, i in enumerate(indexes):
                series[i] = rows[: len(target.demand) + n + 1][-DEMAND_KEPT:]
            target.demand = rows[-DEMAND_KEPT:]
        forecasts = self._forecasts(forecaster, samples, windows, runs, series)
        forecaster_ref = (
            None if forecaster is None else ModelRef(forecaster.name, forecaster.version)
        )
        models = [ModelRef(self.controller.name, self.controller.version)]
        if forecaster_ref is not None:
            models.append(forecaster_ref)
        workload = self.workload_version() if self.workload_version is not None else None
        if workload is not None:
            models.append(workload)
        path = self.online_demand
        # (input index, -1 for the sample's action or the event's rank, record)
        placed: list[tuple[int, int, OutputRecord]] = []
        actions = 0
        if path is not None:
            result.counts["online_demand_steps"] = result.counts["online_demand_served"] = 0
        for key, indexes in runs.items():
            target = targets[key]
            group = "" if path is None else path.key_group(key)
            for i in indexes:
                sample = samples[i]
                demand = float(series[i][-1, 1])
                forecast = forecasts.get(i)
                source = None
                events: list[OutputRecord] = []
                if path is not None:
                    step = path.step(
                        target.online,
                        host_id=key,
                        event_id=sample.event_id,
                        ts=sample.ts,
                        recent=series[i][-path.lookback :, 1],
                        forecast=forecast,
                        forecaster=forecaster_ref if forecast is not None else None,
                    )
                    result.counts["online_demand_steps"] += 1
                    result.scored.extend(("host", group, one) for one in step.scored)
                    events.extend(step.events)
                    if step.forecast is not None:
                        forecast, source = step.forecast, step.source
                        if source == "online":
                            result.counts["online_demand_served"] += 1
                target.state, decision = self.controller.step(
                    target.state, sample.ts, demand, forecast, _step_s(series[i][-3:, 0])
                )
                target.upto = sample.event_id
                result.counts["scaling_decided"] += 1
                if scores is not None:
                    scores[i].fields["scaling_demand"] = demand
                if decision is not None:
                    kind = workload_type_at(windows, key, sample.event_id)
                    used = models
                    if source == "online" and path is not None:
                        used = [*models, ModelRef(path.name, path.version)]
                    action = self._action(key, sample, decision, used, kind, series[i], source)
                    placed.append((i, -1, action))
                    actions += 1
                placed.extend((i, k, event) for k, event in enumerate(events))
        # only once every host is done: a batch that raised is redone from the last saves
        for key, target in targets.items():
            target.dirty = False
            target.saved = {
                STATE_FIELD: target.state,
                DEMAND_FIELD: target.demand.astype("<f8").tobytes(),
                UPTO_FIELD: (target.upto or "").encode(),
            }
            if path is not None:
                target.saved[ONLINE_FIELD] = path.dump(target.online)
            result.states[key] = target.saved
        placed.sort(key=lambda item: (item[0], item[1]))
        result.records.extend(record for _, _, record in placed)
        result.counts["scaling_actions"] = actions
        for _, _, record in placed:
            if isinstance(record, ScalingAction):
                name = f"scaling_actions:{record.action}"
                result.counts[name] = result.counts.get(name, 0) + 1
        return result

    def _forecasts(
        self,
        forecaster: Forecaster | None,
        samples: Sequence[HostSample],
        windows: BatchWindows,
        runs: Mapping[str, list[int]],
        series: Mapping[int, np.ndarray],
    ) -> dict[int, DemandForecast]:
        """Every new sample's forecast from the demands up to it, in one call."""
        if forecaster is None:
            return {}
        where = [
            i for indexes in runs.values() for i in indexes if len(series[i]) >= forecaster.lookback
        ]
        if not where:
            return {}
        rows = [series[i][-forecaster.lookback :] for i in where]
        kinds = [workload_type_at(windows, samples[i].key, samples[i].event_id) for i in where]
        made = forecaster.forecast_many(
            np.vstack([r[:, 1] for r in rows]),
            np.array([samples[i].ts for i in where]),
            np.array([_step_s(r[:, 0]) for r in rows]),
            kinds,
        )
        return dict(zip(where, made, strict=True))

    def _action(
        self,
        key: str,
        sample: HostSample,
        decision: ScalingDecision,
        models: Sequence[ModelRef],
        kind: str | None,
        series: np.ndarray,
        forecast_source: str | None = None,
    ) -> ScalingAction:
        f = decision.forecast
        # the demands the decision saw: the forecast's lookback, or the sample alone
        seen = series[-(1 if f is None else self._lookback) :]
        view = None
        if f is not None:
            step = _step_s(seen[-3:, 0])
            view = ForecastView(
                horizons_s=tuple(float(h * step) for h in f.horizons),
                point=tuple(_round(v) for v in f.point),
                lower=tuple(_round(v) for v in f.lower),
                upper=tuple(_round(v) for v in f.upper),
                interval_level=float(f.interval_level),
            )
        return ScalingAction(
            target=key,
            event_id=sample.event_id,
            ts=sample.ts,
            action=decision.action,
            resource=decision.resource,
            policy=decision.policy,
            current_value=float(decision.current),
            target_value=float(decision.target),
            score=_round(decision.score),
            urgency=_round(min(max(decision.urgency, 0.0), 1.0)),
            confidence=_round(min(max(decision.confidence, 0.0), 1.0)),
            model=models[0],
            models=tuple(models),
            summary=decision.summary,
            rule=decision.rule,
            metric=self.metric,
            demand=_round(decision.demand),
            threshold=_round(decision.threshold),
            seconds_to_breach=(
                None if decision.seconds_to_breach is None else _round(decision.seconds_to_breach)
            ),
            lead_time_s=float(self.controller.ready_delay_s),
            cost_impact=_round(decision.cost_impact),
            performance_impact=_round(decision.performance_impact),
            forecast=view,
            workload_type=kind,
            window_from_ts=float(seen[0, 0]),
            window_samples=len(seen),
            forecast_source=None if f is None else forecast_source,
        )

    def _state_for(
        self, key: str, windows: BatchWindows, index: int, first_demand: float
    ) -> _Target:
        previous, current, candidates = self._held.resume(key, windows, index)
        if current is not None:
            return current
        for stored in candidates:
            if (
                STATE_FIELD in stored
                and DEMAND_FIELD in stored
                and stored.get(UPTO_FIELD, b"").decode() == (previous or "")
            ):
                demand = np.frombuffer(stored[DEMAND_FIELD], dtype="<f8").reshape(-1, 2).copy()
                target = _Target(previous, stored[STATE_FIELD], demand, saved=dict(stored))
                if self.online_demand is not None:
                    # a host stored before the online path was on starts it afresh
                    blob = stored.get(ONLINE_FIELD)
                    path = self.online_demand
                    target.online = path.new() if blob is None else path.load(blob)
                return target
        target = _Target(None, self.controller.new_state(first_demand), np.empty((0, 2)))
        if self.online_demand is not None:
            target.online = self.online_demand.new()
        return target


def _demand(sample: HostSample, metric: str) -> float:
    instances = sample.metrics.get(INSTANCES, 1.0)
    return float(sample.metrics[metric]) * max(float(instances), 1.0)


def _step_s(ts: np.ndarray) -> float:
    """The sampling step: the median gap between event times (60 s with one time).

    Examples:
        >>> _step_s(np.array([0.0, 60.0, 120.0, 300.0]))
        60.0
    """
    times = ts.tolist()
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
    if not gaps:
        return 60.0
    mid = len(gaps) // 2
    return float(gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2)


def _round(value: float) -> float:
    return round(float(value), 6)
