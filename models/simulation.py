"""Replay a demand trace against a capacity model, one autoscaler at a time.

The capacity model (shared with the worker's controller): one instance serves
``capacity_per_instance`` units of demand; instances asked for are ready
``ready_delay_s`` later (at the first step at or after that time); a step violates the
SLA when its demand exceeds ``sla_utilisation`` x the ready capacity. At each step the
engine takes the demand, counts a violation against the capacity ready *before* the
step's decision (what is asked for now cannot serve now), then lets the autoscaler
decide. Scale-ins take effect at once, starting instances first. Cost is instance-minutes
of instances ready or starting after each step's decision; violation minutes are
violating steps x step minutes. Instances started are counted too: the design's cost
model charges each start (:class:`~models.scaling_policy.CostModel`), which
instance-minutes alone do not see, so a policy that flaps (out and in on alternate
steps) shows its price there.

Autoscalers: Kubernetes' HPA (:mod:`models.hpa`), a static fleet, an oracle that knows
the demand of the next ``ready_delay_s`` (a reference line, never ours), a trailing-quantile
hold (a forecast-free reference for ``bench/scaling_limits.py``) and our
:class:`~models.scaling.CapacityController` in each of its policies, fed the
forecasts of the whole trace made beforehand in batched chunks (a forecast at step ``i``
sees the ``lookback`` values up to and including ``i``; decisions do not change demand).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from streams.capacity import DemandForecast, Forecaster

from .hpa import HorizontalPodAutoscaler, HpaSettings, HpaState
from .scaling import CapacityController
from .scaling_policy import CostModel
from .scaling_state import TargetState

Progress = Callable[[int], None]
"""Called with the number of steps just done."""


@dataclass(frozen=True, slots=True)
class CapacityModel:
    """How instances serve demand and when they are ready.

    Attributes:
        capacity_per_instance: demand one instance serves at 100% utilisation.
        ready_delay_s: seconds from asking for an instance to its serving.
        sla_utilisation: a step violates the SLA above this utilisation of the ready
            capacity.
        min_instances, max_instances: bounds every autoscaler keeps.
    """

    capacity_per_instance: float
    ready_delay_s: float = 180.0
    sla_utilisation: float = 0.8
    min_instances: int = 1
    max_instances: int = 1000

    def ready_steps(self, step_s: float) -> int:
        """Steps from asking to serving.

        Examples:
            >>> CapacityModel(1.0).ready_steps(60.0), CapacityModel(1.0).ready_steps(300.0)
            (3, 1)
        """
        return max(math.ceil(self.ready_delay_s / step_s - 1e-9), 0)

    def clamp(self, n: int) -> int:
        return min(max(int(n), self.min_instances), self.max_instances)


def default_capacity_per_instance(demand: np.ndarray, instances: float = 10.0) -> float:
    """One instance serves mean demand / (``instances`` x 0.6): the mean then needs
    ``instances`` instances at HPA's 60% target.

    Examples:
        >>> default_capacity_per_instance(np.array([60.0, 60.0]))
        10.0
    """
    mean = float(np.mean(demand))
    return mean / (instances * 0.6) if mean > 0 else 1.0


class Autoscaler(Protocol):
    """What the engine drives: an initial capacity, then one decision per step."""

    def start(self, first_demand: float) -> int: ...

    def decide(self, i: int, ts: float, demand: float, ready: int, spec: int) -> int:
        """The instances to ask for after step ``i``; ``ready`` serve now, ``spec`` were
        asked for (ready or starting)."""
        ...


@dataclass(slots=True)
class PolicyRun:
    """One autoscaler's replay of a trace.

    Attributes:
        sla_violation_minutes: violating steps x step minutes.
        cost_instance_minutes: instances ready or starting, integrated over the trace.
        actions: steps at which the capacity asked for changed.
        ready: ready instances at each step (before its decision).
        spec: instances asked for after each step's decision.
        instance_starts: instances asked for by scale-outs, over the trace.
    """

    name: str
    sla_violation_minutes: float
    cost_instance_minutes: float
    actions: int
    settings: dict[str, Any]
    ready: np.ndarray = field(repr=False)
    spec: np.ndarray = field(repr=False)
    instance_starts: int = 0

    def cost_dollars(self, prices: CostModel | None = None) -> float:
        """The instance-minutes and the starts priced with ``prices`` (the design's by
        default), to the cent.

        Examples:
            >>> z = np.zeros(1)
            >>> PolicyRun("a", 5.0, 600.0, 2, {}, z, z, instance_starts=3).cost_dollars()
            1.2
        """
        prices = prices or CostModel()
        dollars = (
            self.cost_instance_minutes / 60.0 * prices.instance_hour
            + self.instance_starts * prices.vm_start
        )
        return round(dollars, 2)

    def summary(self) -> dict[str, Any]:
        """The figures ``results.json`` reports for this policy."""
        return {
            "sla_violation_minutes": self.sla_violation_minutes,
            "cost_instance_minutes": self.cost_instance_minutes,
            "actions": self.actions,
            "instance_starts": self.instance_starts,
            "cost_dollars": self.cost_dollars(),
            "settings": self.settings,
        }


def simulate(
    demand: np.ndarray,
    ts: np.ndarray,
    step_s: float,
    model: CapacityModel,
    scaler: Autoscaler,
    name: str,
    settings: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> PolicyRun:
    """Replay ``demand`` (one value per step, at times ``ts``) against ``scaler``.

    Examples:
        >>> run = simulate(np.array([6.0, 6.0, 12.0, 12.0]), np.arange(4) * 60.0, 60.0,
        ...                CapacityModel(1.0, ready_delay_s=60.0), StaticScaler(10), "static")
        >>> run.sla_violation_minutes, run.cost_instance_minutes, run.actions
        (2.0, 40.0, 0)
    """
    n = len(demand)
    lag = model.ready_steps(step_s)
    per_ready = model.sla_utilisation * model.capacity_per_instance
    arrivals = np.zeros(n + lag + 1, dtype=np.int64)
    ready_out = np.empty(n, dtype=np.int64)
    spec_out = np.empty(n, dtype=np.int64)
    spec = model.clamp(scaler.start(float(demand[0])))
    ready = spec
    violations = actions = starts = 0
    chunk = 4096
    for i in range(n):
        ready += int(arrivals[i])
        x = float(demand[i])
        if x > per_ready * ready * (1.0 + 1e-12):
            violations += 1
        ready_out[i] = ready
        new = model.clamp(scaler.decide(i, float(ts[i]), x, ready, spec))
        if new > spec:
            if lag == 0:
                ready += new - spec
            else:
                arrivals[i + lag] += new - spec
            actions += 1
            starts += new - spec
        elif new < spec:
            drop = spec - new
            for j in range(i + lag, i, -1):  # starting instances go first, newest first
                take = min(drop, int(arrivals[j]))
                arrivals[j] -= take
                drop -= take
                if not drop:
                    break
            ready -= drop
            actions += 1
        spec = new
        spec_out[i] = spec
        if progress is not None and (i + 1) % chunk == 0:
            progress(chunk)
    if progress is not None and n % chunk:
        progress(n % chunk)
    minutes = step_s / 60.0
    return PolicyRun(
        name,
        violations * minutes,
        float(spec_out.sum()) * minutes,
        actions,
        dict(settings or {}),
        ready_out,
        spec_out,
        starts,
    )


class StaticScaler:
    """A fixed fleet."""

    def __init__(self, instances: int) -> None:
        self.instances = int(instances)

    def start(self, first_demand: float) -> int:
        return self.instances

    def decide(self, i: int, ts: float, demand: float, ready: int, spec: int) -> int:
        return self.instances


def static_instances(demand: np.ndarray, model: CapacityModel, quantile: float = 0.99) -> int:
    """Instances that serve the trace's ``quantile`` demand at the SLA utilisation
    (sized in hindsight, over the whole trace).

    Examples:
        >>> static_instances(np.arange(101.0), CapacityModel(10.0))
        13
    """
    peak = float(np.quantile(demand, quantile))
    return model.clamp(math.ceil(peak / (model.capacity_per_instance * model.sla_utilisation)))


class HpaScaler:
    """Kubernetes' HPA (:class:`models.hpa.HorizontalPodAutoscaler`)."""

    def __init__(self, settings: HpaSettings, capacity_per_pod: float) -> None:
        self.hpa = HorizontalPodAutoscaler(settings, capacity_per_pod)
        self.state = HpaState()

    def start(self, first_demand: float) -> int:
        s = self.hpa.settings
        need = first_demand / (self.hpa.capacity_per_pod * s.target_utilisation)
        return min(max(math.ceil(need - 1e-9), s.min_replicas), s.max_replicas)

    def decide(self, i: int, ts: float, demand: float, ready: int, spec: int) -> int:
        return self.hpa.sync(self.state, ts, demand, ready, spec)


class OracleScaler:
    """Knows the demand of the steps its asks can still serve (the next ready delay) and
    asks for what their peak needs at ``target_utilisation``; scales in at once. A
    reference for what a perfect forecast at the lead time is worth, never ours."""

    def __init__(
        self, demand: np.ndarray, model: CapacityModel, step_s: float, target: float = 0.6
    ) -> None:
        lag = max(model.ready_steps(step_s), 1)
        padded = np.r_[demand, np.full(lag, demand[-1])]
        self.peaks = sliding_window_view(padded[1:], lag).max(axis=1)[: len(demand)]
        self.per_instance = model.capacity_per_instance * target

    def start(self, first_demand: float) -> int:
        return math.ceil(max(first_demand, float(self.peaks[0])) / self.per_instance - 1e-9)

    def decide(self, i: int, ts: float, demand: float, ready: int, spec: int) -> int:
        return math.ceil(float(self.peaks[i]) / self.per_instance - 1e-9)


def trailing_quantile(demand: np.ndarray, window: int, quantile: float) -> np.ndarray:
    """At each step, the ``quantile`` of the demand of the last ``window`` steps up to and
    including it (fewer at the start of the trace): what a policy holding a level from
    history alone can know.

    Examples:
        >>> trailing_quantile(np.array([1.0, 5.0, 2.0, 2.0, 2.0]), 3, 1.0).tolist()
        [1.0, 5.0, 5.0, 5.0, 2.0]
    """
    d = np.asarray(demand, dtype=float)
    out = np.empty(len(d))
    head = min(window - 1, len(d))
    for i in range(head):
        out[i] = np.quantile(d[: i + 1], quantile)
    if len(d) >= window:
        views = sliding_window_view(d, window)
        chunk = max(1, 4_000_000 // window)
        for start in range(0, len(views), chunk):
            part = views[start : start + chunk]
            out[start + window - 1 : start + window - 1 + len(part)] = np.quantile(
                part, quantile, axis=1
            )
    return out


class TrailingQuantileScaler:
    """Holds capacity for ``max(demand now, the quantile of the last window's demand)`` at
    the SLA utilisation: a reference policy with no forecast, which covers demand that
    recurs within the window at a cost set by the quantile. Scales in at once.

    Examples:
        >>> model = CapacityModel(1.0, ready_delay_s=60.0, sla_utilisation=0.5)
        >>> s = TrailingQuantileScaler(np.array([1.0, 3.0, 1.0, 1.0]), model, 2, 1.0)
        >>> [s.decide(i, 0.0, 0.0, 0, 0) for i in range(4)]
        [2, 6, 6, 2]
    """

    def __init__(
        self, demand: np.ndarray, model: CapacityModel, window: int, quantile: float
    ) -> None:
        level = np.maximum(trailing_quantile(demand, window, quantile), demand)
        per_instance = model.capacity_per_instance * model.sla_utilisation
        self.asks = np.ceil(level / per_instance - 1e-9).astype(np.int64)

    def start(self, first_demand: float) -> int:
        return int(self.asks[0])

    def decide(self, i: int, ts: float, demand: float, ready: int, spec: int) -> int:
        return int(self.asks[i])


@dataclass(frozen=True, slots=True)
class TraceForecasts:
    """The forecasts of every step of a trace (NaN rows: too little history).

    Attributes:
        horizons: steps ahead.
        point, lower, upper: ``(n, len(horizons))``.
        confidence: ``(n,)``.
        interval_level: the forecaster's nominal coverage.
        model: ``name:version`` of the forecaster.
    """

    horizons: tuple[int, ...]
    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: np.ndarray
    interval_level: float
    model: str

    def at(self, i: int) -> DemandForecast | None:
        """The forecast made at step ``i`` (``None`` while the history is short)."""
        if not math.isfinite(self.confidence[i]):
            return None
        return DemandForecast(
            self.horizons,
            self.point[i],
            self.lower[i],
            self.upper[i],
            self.interval_level,
            float(self.confidence[i]),
        )


def forecast_trace(
    forecaster: Forecaster,
    demand: np.ndarray,
    ts: np.ndarray,
    step_s: float,
    chunk: int = 4096,
    progress: Progress | None = None,
) -> TraceForecasts:
    """Forecast every step with at least ``lookback`` values of history, in chunks."""
    n, lb, hz = len(demand), forecaster.lookback, tuple(forecaster.horizons)
    point = np.full((n, len(hz)), np.nan)
    lower, upper = point.copy(), point.copy()
    confidence = np.full(n, np.nan)
    level = 0.8
    if n >= lb:
        windows = sliding_window_view(np.asarray(demand, dtype=float), lb)
        for start in range(0, len(windows), chunk):
            part = windows[start : start + chunk]
            rows = np.arange(start, start + len(part)) + lb - 1
            out = forecaster.forecast_many(
                np.ascontiguousarray(part), ts[rows], np.full(len(part), step_s), [None] * len(part)
            )
            point[rows] = np.stack([f.point for f in out])
            lower[rows] = np.stack([f.lower for f in out])
            upper[rows] = np.stack([f.upper for f in out])
            confidence[rows] = [f.confidence for f in out]
            level = out[-1].interval_level
            if progress is not None:
                progress(len(part))
    model = f"{forecaster.name}:{forecaster.version}"
    return TraceForecasts(hz, point, lower, upper, confidence, level, model)


class ControllerScaler:
    """Our :class:`CapacityController` on a trace's precomputed forecasts."""

    def __init__(
        self, controller: CapacityController, forecasts: TraceForecasts | None, step_s: float
    ) -> None:
        self.controller = controller
        self.forecasts = forecasts
        self.step_s = step_s
        self.state = TargetState(spec=1)
        self.decisions = 0

    def start(self, first_demand: float) -> int:
        self.state = self.controller.initial_state(first_demand)
        return self.state.spec

    def decide(self, i: int, ts: float, demand: float, ready: int, spec: int) -> int:
        forecast = self.forecasts.at(i) if self.forecasts is not None else None
        self.state, decision = self.controller.advance(
            self.state, ts, demand, forecast, self.step_s
        )
        if decision is not None:
            self.decisions += 1
        return self.state.spec
