"""Scaling processor: each host's demand forecast and acted on, ``actions.scaling.v1`` out.

A host's demand is one of its metrics (``cpu_pct`` by default) times the instances
serving it (the sample's ``instances`` metric; 1 when it reports none, the host alone).
For every new sample the forecaster forecasts the demand from the host's last
``lookback`` window entries (the rolling window already holds them), batched across the
batch's hosts, with the host's workload class from the workload processor when it has
one; the scaling controller then steps the host's state with the actual demand and the
forecast, under its safety rules, and may return an action. Hosts with fewer entries
than the lookback are decided on their actual demand only.

The controller's state lives in the worker's memory between batches and is persisted
with the host's window once the batch is delivered (``scaling.state``, with the event id
it is at in ``scaling.upto``); a host whose state in memory is not at the window's newest
entry is restored from the store, so a redone batch decides exactly what it decided the
first time (the action ids are deterministic too).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..capacity import DemandForecast, Forecaster, ScalingController, ScalingDecision
from ..records import ForecastView, HostSample, ModelRef, ScalingAction, Score, WindowEntry
from ..windows import BatchWindows
from .base import ProcessorParts, ProcessorResult
from .workload import workload_type_at

STATE_FIELD = "scaling.state"
UPTO_FIELD = "scaling.upto"
INSTANCES = "instances"
"""Host metric with the number of instances serving the host's demand (optional)."""

ForecasterLookup = Callable[[], Forecaster | None]
"""Returns the active demand forecaster (``None``: decide on actual demand only)."""


@dataclass(slots=True)
class _Target:
    upto: str | None
    state: bytes
    dirty: bool = False


class ScalingProcessor:
    """Decides scaling actions per host and publishes ``actions.scaling.v1`` records.

    Args:
        controller: decides actions from demand and forecast, per host state.
        forecaster: the active forecaster, looked up once per batch (hot swap).
        metric: the host metric demand is measured in.
        cache_keys: hosts whose state is held in memory.
    """

    name = "scaling"
    state_fields: tuple[str, ...] = (STATE_FIELD, UPTO_FIELD)

    def __init__(
        self,
        controller: ScalingController,
        forecaster: ForecasterLookup,
        metric: str = "cpu_pct",
        cache_keys: int = 4096,
        workload_version: Callable[[], ModelRef | None] | None = None,
    ) -> None:
        self.controller = controller
        self.forecaster = forecaster
        self.metric = metric
        self.cache_keys = cache_keys
        self.workload_version = workload_version
        self._cache: OrderedDict[str, _Target] = OrderedDict()
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
        )

    def history_depth(self, samples: Sequence[Any]) -> int:
        forecaster = self.forecaster()
        return 1 if forecaster is None else forecaster.lookback

    def missing_state(self, newest: Mapping[str, str | None]) -> list[str]:
        return [
            key
            for key, last in newest.items()
            if (held := self._cache.get(key)) is None or held.dirty or held.upto != last
        ]

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
        forecasts = self._forecasts(forecaster, samples, windows, runs)
        models = [ModelRef(self.controller.name, self.controller.version)]
        if forecaster is not None:
            models.append(ModelRef(forecaster.name, forecaster.version))
        workload = self.workload_version() if self.workload_version is not None else None
        if workload is not None:
            models.append(workload)
        placed: list[tuple[int, ScalingAction]] = []
        for key, indexes in runs.items():
            target = self._state_for(
                key, windows, indexes[0], _demand(samples[indexes[0]], self.metric)
            )
            target.dirty = True
            self._hold(key, target)
            for i in indexes:
                sample = samples[i]
                kind = workload_type_at(windows, key, i)
                demand = _demand(sample, self.metric)
                forecast = forecasts.get(i)
                step_s = _step_s(windows.upto(key, i, 3))
                target.state, decision = self.controller.step(
                    target.state, sample.ts, demand, forecast, step_s
                )
                target.upto = sample.event_id
                result.counts["scaling_decided"] += 1
                if scores is not None:
                    scores[i].fields["scaling_demand"] = demand
                if decision is not None:
                    placed.append(
                        (i, self._action(key, sample, decision, models, kind, windows, i))
                    )
            target.dirty = False
            result.states[key] = {
                STATE_FIELD: target.state,
                UPTO_FIELD: (target.upto or "").encode(),
            }
        placed.sort(key=lambda pair: pair[0])
        result.records.extend(action for _, action in placed)
        result.counts["scaling_actions"] = len(placed)
        return result

    def _forecasts(
        self,
        forecaster: Forecaster | None,
        samples: Sequence[HostSample],
        windows: BatchWindows,
        runs: Mapping[str, list[int]],
    ) -> dict[int, DemandForecast]:
        """Every new sample's forecast from the window up to it, in one call."""
        if forecaster is None:
            return {}
        rows: list[np.ndarray] = []
        where: list[int] = []
        last_ts: list[float] = []
        steps: list[float] = []
        kinds: list[str | None] = []
        for key, indexes in runs.items():
            for i in indexes:
                entries = windows.upto(key, i, forecaster.lookback)
                if len(entries) < forecaster.lookback:
                    continue
                series = _series(entries, self.metric)
                if series is None:
                    continue
                rows.append(series)
                where.append(i)
                last_ts.append(samples[i].ts)
                steps.append(_step_s(entries))
                kinds.append(workload_type_at(windows, key, i))
        if not rows:
            return {}
        made = forecaster.forecast_many(np.vstack(rows), np.array(last_ts), np.array(steps), kinds)
        return dict(zip(where, made, strict=True))

    def _action(
        self,
        key: str,
        sample: HostSample,
        decision: ScalingDecision,
        models: Sequence[ModelRef],
        kind: str | None,
        windows: BatchWindows,
        index: int,
    ) -> ScalingAction:
        f = decision.forecast
        # the entries the decision saw: the forecast's lookback, or the sample alone
        entries = windows.upto(key, index, 1 if f is None else self._lookback)
        view = None
        if f is not None:
            step = _step_s(entries[-3:]) if len(entries) > 1 else 60.0
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
            window_from_ts=entries[0].ts if entries else sample.ts,
            window_samples=max(1, len(entries)),
        )

    def _state_for(
        self, key: str, windows: BatchWindows, index: int, first_demand: float
    ) -> _Target:
        entries = windows.entries[key]
        pos = windows.positions[index]
        previous = entries[pos - 1].event_id if pos > 0 else windows.newest.get(key)
        held = self._cache.get(key)
        if held is not None and not held.dirty and held.upto == previous:
            return held
        stored = windows.states.get(key) or {}
        if STATE_FIELD in stored and stored.get(UPTO_FIELD, b"").decode() == (previous or ""):
            return _Target(previous, stored[STATE_FIELD])
        return _Target(None, self.controller.new_state(first_demand))

    def _hold(self, key: str, target: _Target) -> None:
        self._cache[key] = target
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_keys:
            self._cache.popitem(last=False)


def _demand(sample: HostSample, metric: str) -> float:
    instances = sample.metrics.get(INSTANCES, 1.0)
    return float(sample.metrics[metric]) * max(float(instances), 1.0)


def _series(entries: Sequence[WindowEntry], metric: str) -> np.ndarray | None:
    """The demand over window entries, gaps filled forward; ``None`` when a tenth or
    more of the entries lack the metric."""
    out = np.full(len(entries), np.nan)
    for n, entry in enumerate(entries):
        names = entry.names or ()
        values = dict(zip(names, entry.values, strict=True))
        if metric in values:
            out[n] = values[metric] * max(values.get(INSTANCES, 1.0), 1.0)
    missing = np.isnan(out)
    if missing.sum() * 10 >= len(out):
        return None
    if missing.any():
        index = np.where(~missing, np.arange(len(out)), 0)
        np.maximum.accumulate(index, out=index)
        out = out[index]
        if np.isnan(out[0]):
            out[np.isnan(out)] = out[~np.isnan(out)][0]
    return out


def _step_s(entries: Sequence[WindowEntry]) -> float:
    if len(entries) < 2:
        return 60.0
    gaps = np.diff([e.ts for e in entries])
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if len(gaps) else 60.0


def _round(value: float) -> float:
    return round(float(value), 6)
