"""Scaling decisions for one target at a time, under the safety rules operators expect.

:class:`CapacityController` implements :class:`streams.capacity.ScalingController` for
horizontal scaling (``vm_count``: SCALE_OUT / SCALE_IN). Per sample of a target's demand
it sizes the instances the demand needs (:mod:`models.scaling_policy` holds each
policy's settings):

- **sizing**: ``max(max(actual, U) / sla_utilisation, max(actual, point) / target)``
  instances' worth of demand: the SLA line covers ``U``, the forecast's calibrated upper
  bound, and the policy's target utilisation covers the point forecast and the actual
  demand. The forecast is read over the policy's horizon and never less than the lead
  time (the first forecast horizon at least ``ready_delay_s`` ahead: what is asked for
  now is ready then). Without a usable forecast (a young host, the REACTIVE policy, or
  horizons that do not reach the ready delay) it sizes the actual demand at the target;
- **online calibration**: ``U = point + k x width`` per horizon, with ``width`` the
  forecaster's upper half-interval and ``k`` a quantile of the target's own past errors
  at the lead time, ``(actual - point) / width`` (split-conformal over the last
  ``calibration_size`` forecasts, so it widens where the forecaster is overconfident,
  narrows where it is cautious and corrects its bias). Which quantile: the policy's
  ``quantile``, or with a ``violation_weight`` the one between the median and it that
  minimises headroom against the risk of a violating step. Only errors whose actual
  demand has arrived are used: nothing from the future;
- **scale-out** at once on ``max(forecast, actual)``, by at most
  ``max(current x max_step_out, current + 4)``;
- **scale-in** only when the actual demand over the stabilisation window *and* the
  forecast both allow it (never on a forecast alone): to the largest recommendation of
  the window, by at most ``max_step_in`` of the capacity, not within the window after a
  scale-out and not within the cooldown after a scale-in. For the actual demand and the
  time since a scale-out the window spans at least ``scale_in_window_steps`` earlier
  samples, so slow telemetry (a sample every 5 minutes against a 120 s window) does not
  scale in on one low sample;
- **no flapping**: a scale-out within the window after a scale-in only when the SLA is
  at risk (the demand sized for exceeds the SLA utilisation of the current capacity);
- ``min_instances`` and ``max_instances`` always.

Pending instances are the controller's own book: it asked for them at known times and
they are ready ``ready_delay_s`` later; a scale-in removes starting instances first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from streams.capacity import DemandForecast, ScalingDecision

from .scaling_policy import (
    CostModel,
    PolicySettings,
    decision_score,
    policy_settings,
    urgency,
)
from .scaling_state import TargetState, decode_state, encode_state

_EPS = 1e-9
CONTROLLER_VERSION = "1"
"""Version of the decision logic (with the policy, it names the model behind an action)."""


class CapacityController:
    """The scaling controller of one policy, for targets served by identical instances.

    Args:
        capacity_per_instance: demand one instance serves at 100% utilisation.
        policy: one of :data:`streams.capacity.SCALING_POLICIES`.
        settings: the policy's settings (default: :data:`POLICIES[policy]
            <models.scaling_policy.POLICIES>`).
        ready_delay_s: seconds from asking for an instance to its serving.
        sla_utilisation: a sample violates the SLA when its demand exceeds this share of
            the ready capacity.
        min_instances, max_instances: bounds on the capacity asked for.
        cost: prices for the decisions' cost impact.
        calibration_size: past forecast errors kept per target.
        min_calibration: errors needed before they replace the forecaster's own interval.

    Examples:
        >>> c = CapacityController(10.0, "REACTIVE")
        >>> state = c.new_state(55.0)  # ceil(55 / (10 x 0.6)) = 10 instances
        >>> state, decision = c.step(state, 60.0, 90.0, None, 60.0)
        >>> decision.action, decision.current, decision.target
        ('SCALE_OUT', 10.0, 15.0)
        >>> decision.rule
        'scale-out: actual demand'
    """

    name = "capacity-controller"
    version = CONTROLLER_VERSION
    resource = "vm_count"

    def __init__(
        self,
        capacity_per_instance: float,
        policy: str = "PREDICTIVE",
        settings: PolicySettings | None = None,
        *,
        ready_delay_s: float = 180.0,
        sla_utilisation: float = 0.8,
        min_instances: int = 1,
        max_instances: int = 1000,
        cost: CostModel | None = None,
        calibration_size: int = 256,
        min_calibration: int = 30,
    ) -> None:
        if not capacity_per_instance > 0:
            msg = (
                "The 'capacity_per_instance' of CapacityController must be > 0. "
                f"Got {capacity_per_instance!r} instead."
            )
            raise ValueError(msg)
        if not 1 <= min_instances <= max_instances:
            msg = (
                "CapacityController needs 1 <= min_instances <= max_instances. "
                f"Got {min_instances} and {max_instances} instead."
            )
            raise ValueError(msg)
        self.policy = policy
        self.settings = settings if settings is not None else policy_settings(policy)
        self.capacity_per_instance = float(capacity_per_instance)
        self.ready_delay_s = float(ready_delay_s)
        self.sla_utilisation = float(sla_utilisation)
        self.min_instances = int(min_instances)
        self.max_instances = int(max_instances)
        self.cost = cost if cost is not None else CostModel()
        self.calibration_size = int(calibration_size)
        self.min_calibration = int(min_calibration)
        self._default_k = 0.0

    # -- the protocol ----------------------------------------------------------------

    def new_state(self, first_demand: float) -> bytes:
        """The state of a target first seen at ``first_demand``: the capacity that demand
        needs at the policy's target utilisation, all of it ready."""
        return encode_state(self.initial_state(first_demand))

    def step(
        self,
        state: bytes,
        ts: float,
        demand: float,
        forecast: DemandForecast | None,
        step_s: float,
    ) -> tuple[bytes, ScalingDecision | None]:
        """The state after one sample and the action it calls for (``None``: hold).

        Pure: the bytes in are not changed and the same inputs give the same outputs.
        """
        new, decision = self.advance(decode_state(state), ts, demand, forecast, step_s)
        return encode_state(new), decision

    # -- the same on a decoded state (the simulator's loop) --------------------------

    def initial_state(self, first_demand: float) -> TargetState:
        """:meth:`new_state` before encoding."""
        need = _finite(first_demand) / (self.capacity_per_instance * self._target())
        return TargetState(spec=self._clamp(math.ceil(need - _EPS)))

    def advance(
        self,
        state: TargetState,
        ts: float,
        demand: float,
        forecast: DemandForecast | None,
        step_s: float,
    ) -> tuple[TargetState, ScalingDecision | None]:
        """:meth:`step` on a decoded state, which it updates in place and returns."""
        if not ts > state.last_ts:
            return state, None  # a replayed or late sample changes nothing
        demand = _finite(demand)
        s = self.settings
        # the forecast's recommendations are held for the window's seconds (one made a
        # step ago was sized from older data); the actual demand and the guards
        # against reversals for at least the last scale_in_window_steps samples too,
        # with half a step for jitter
        window = s.scale_in_window_s
        held = max(window, (s.scale_in_window_steps + 0.5) * step_s)
        state.last_ts = ts
        while state.pending and state.pending[0][0] <= ts + _EPS:
            state.pending.pop(0)
        self._calibrate(state, ts, demand, step_s)
        state.actual.append((ts, demand))
        _drop_before(state.actual, ts - held)
        _drop_before(state.recommendations, ts - window)

        sizing = self._size(state, ts, demand, forecast, step_s)
        rec = self._clamp(math.ceil(sizing.need - _EPS))
        # the capacity a scale-in may go down to: the need with the hysteresis margin
        rec_in = self._clamp(math.ceil(sizing.need + s.scale_in_margin - _EPS))
        stabilised = max([rec_in, *(r for _, r in state.recommendations)])
        state.recommendations.append((ts, rec_in))
        spec = state.spec

        if rec > spec:
            recently_in = ts - state.last_in_ts < held
            at_risk = sizing.demand > self.sla_utilisation * spec * self.capacity_per_instance
            if recently_in and not at_risk:
                return state, None
            limit = max(math.ceil(spec * s.max_step_out - _EPS), spec + 4)
            target = min(rec, limit, self.max_instances)
            rule = "scale-out: urgent after a recent scale-in" if recently_in else sizing.rule
            return state, self._act(state, ts, demand, forecast, sizing, target, rule)

        if stabilised < spec:
            if ts - state.last_out_ts < held or ts - state.last_in_ts < s.scale_in_cooldown_s:
                return state, None
            peak = max(d for _, d in state.actual)
            per_instance = self.capacity_per_instance * sizing.actual_utilisation
            by_actual = math.ceil(peak / per_instance - _EPS)
            floor = math.ceil(spec * (1.0 - s.max_step_in) - _EPS)
            target = self._clamp(max(stabilised, by_actual, floor))
            if target >= spec:
                return state, None
            rule = "scale-in: actual demand and forecast agree over the stabilisation window"
            return state, self._act(state, ts, demand, forecast, sizing, target, rule)
        return state, None

    # -- internals -------------------------------------------------------------------

    def _target(self) -> float:
        s = self.settings
        return s.target_utilisation

    def _clamp(self, n: int) -> int:
        return min(max(n, self.min_instances), self.max_instances)

    def _lead_index(self, forecast: DemandForecast, step_s: float) -> int | None:
        for i, h in enumerate(forecast.horizons):
            if h * step_s >= self.ready_delay_s - _EPS:
                return i
        return None

    def _widths(self, forecast: DemandForecast) -> np.ndarray:
        floor = 0.01 * self.capacity_per_instance
        return np.maximum(np.asarray(forecast.upper) - np.asarray(forecast.point), floor)

    def _calibrate(self, state: TargetState, ts: float, demand: float, step_s: float) -> None:
        kept: list[tuple[float, float, float]] = []
        for due, point, width in state.forecasts:
            if due > ts + step_s / 2:
                kept.append((due, point, width))
            elif due >= ts - step_s / 2:  # this sample is the actual at the lead time
                state.add_score((demand - point) / width, self.calibration_size)
            # older ones met a gap in the samples: dropped
        state.forecasts = kept

    def _k(self, state: TargetState, forecast: DemandForecast, relative_width: float) -> float:
        q = self.settings.quantile
        n = len(state.scores)
        if n >= self.min_calibration:
            weight = self.settings.violation_weight
            if weight is None:
                return state.upper_score(q)
            ranks = np.arange(max(math.ceil((n + 1) * 0.5), 1), min(math.ceil((n + 1) * q), n) + 1)
            cand = np.asarray(state.sorted_scores)[ranks - 1]
            cost = cand * relative_width + weight * (n - ranks) / n
            return float(cand[int(np.argmin(cost))])
        # the forecaster's own interval, read as a normal one, until errors are known
        z_nominal = NormalDist().inv_cdf(0.5 + forecast.interval_level / 2)
        return NormalDist().inv_cdf(q) / z_nominal

    def _size(
        self,
        state: TargetState,
        ts: float,
        demand: float,
        forecast: DemandForecast | None,
        step_s: float,
    ) -> _Sizing:
        s = self.settings
        cap = self.capacity_per_instance
        lead = None if forecast is None else self._lead_index(forecast, step_s)
        if not s.use_forecast or forecast is None or lead is None:
            target = s.target_utilisation if not s.use_forecast else s.reactive_utilisation
            why = "forecast horizons do not reach the ready delay" if forecast else "no forecast"
            rule = "scale-out: actual demand" if not s.use_forecast else f"reactive ({why})"
            return _Sizing(demand / (cap * target), demand, None, rule, target)
        point = np.asarray(forecast.point, dtype=float)
        widths = self._widths(forecast)
        state.forecasts.append(
            (ts + forecast.horizons[lead] * step_s, float(point[lead]), float(widths[lead]))
        )
        level = max(float(point[lead]), demand, 0.01 * cap)
        k = self._k(state, forecast, float(widths[lead]) / level)
        reach = max(s.horizon_s, forecast.horizons[lead] * step_s)
        used = [i for i, h in enumerate(forecast.horizons) if h * step_s <= reach + _EPS]
        bounds = point[used] + k * widths[used]
        best = int(np.argmax(bounds))
        upper = float(bounds[best])
        sized = max(demand, upper)
        peak = max(demand, float(np.max(point[used])))
        need = max(sized / (cap * self.sla_utilisation), peak / (cap * s.target_utilisation))
        if s.hybrid:
            c = min(max(forecast.confidence, 0.0), 1.0)
            mixed = c * need + (1.0 - c) * demand / (cap * s.reactive_utilisation)
            need = max(demand / (cap * s.target_utilisation), mixed)
        if upper > demand:
            rule = "scale-out: forecast upper bound at the lead time"
        else:
            rule = "scale-out: actual demand"
        all_bounds = point + k * widths
        profile = tuple(
            (h * step_s, float(b)) for h, b in zip(forecast.horizons, all_bounds, strict=True)
        )
        horizon_s = forecast.horizons[used[best]] * step_s
        return _Sizing(need, sized, upper, rule, s.target_utilisation, horizon_s, profile)

    def _act(
        self,
        state: TargetState,
        ts: float,
        demand: float,
        forecast: DemandForecast | None,
        sizing: _Sizing,
        target: int,
        rule: str,
    ) -> ScalingDecision:
        spec = state.spec
        cap = self.capacity_per_instance
        ready = spec - state.starting
        action = "SCALE_OUT" if target > spec else "SCALE_IN"
        if target > spec:
            state.pending.append([ts + self.ready_delay_s, float(target - spec)])
            state.last_out_ts = ts
        else:
            drop = spec - target
            while drop and state.pending:
                take = min(drop, int(state.pending[-1][1]))
                state.pending[-1][1] -= take
                drop -= take
                if state.pending[-1][1] <= 0:
                    state.pending.pop()
            state.last_in_ts = ts
        state.spec = target
        threshold = spec * cap * self._target()
        breach = self._seconds_to_breach(demand, threshold, sizing)
        confidence = forecast.confidence if forecast is not None else 0.0
        utilisation = demand / (max(ready, 1) * cap * self.sla_utilisation)
        urgent = urgency(breach, utilisation, confidence)
        cost_impact = self.cost.change_per_hour(spec, target)
        perf = _risk_change(sizing.demand, spec, target, cap * self.sla_utilisation)
        bound = (
            ""
            if sizing.upper is None
            else (f", forecast bound {sizing.upper:.4g} within {sizing.horizon_s:.0f} s")
        )
        summary = (
            f"{action} {spec} -> {target} instances ({self.policy}): demand {demand:.4g}"
            f"{bound}, threshold {threshold:.4g}; {cost_impact:+.2f} $/h; {rule}"
        )
        return ScalingDecision(
            action=action,
            resource=self.resource,
            policy=self.policy,
            current=float(spec),
            target=float(target),
            score=decision_score(urgent, perf, cost_impact),
            urgency=urgent,
            confidence=float(confidence),
            threshold=threshold,
            seconds_to_breach=breach,
            demand=demand,
            forecast=forecast,
            cost_impact=cost_impact,
            performance_impact=perf,
            summary=summary,
            rule=rule,
        )

    @staticmethod
    def _seconds_to_breach(demand: float, threshold: float, sizing: _Sizing) -> float | None:
        """When the calibrated forecast bound first reaches ``threshold``, linear between
        horizons and from the actual demand now (``None``: not within the horizons)."""
        if demand >= threshold:
            return 0.0
        t_prev, b_prev = 0.0, demand
        for t, b in sizing.profile:
            if b >= threshold:
                return t_prev + (threshold - b_prev) / (b - b_prev) * (t - t_prev)
            t_prev, b_prev = t, b
        return None


@dataclass(frozen=True, slots=True)
class _Sizing:
    """What one sample's sizing found.

    Attributes:
        need: instances the sized demand needs (before rounding and limits).
        demand: the demand sized for (``max(actual, upper)``).
        upper: the calibrated forecast bound used (``None``: reactive).
        rule: the trigger a scale-out on this sizing reports.
        actual_utilisation: the utilisation the actual demand was sized at (the
            policy's target, or the reactive one when it fell back to reactive).
        horizon_s: how far ahead ``upper`` is.
        profile: ``(seconds ahead, calibrated upper bound)`` at every forecast horizon.
    """

    need: float
    demand: float
    upper: float | None
    rule: str
    actual_utilisation: float
    horizon_s: float | None = None
    profile: tuple[tuple[float, float], ...] = ()


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) and value > 0.0 else 0.0


def _drop_before(items: list, cutoff: float) -> None:  # type: ignore[type-arg]
    while items and items[0][0] < cutoff - _EPS:
        items.pop(0)


def _risk_change(sized: float, before: int, after: int, per_instance: float) -> float:
    """Share of the demand sized for that is at risk with ``before`` instances and not
    with ``after`` (a scale-out), or the other way round (a scale-in)."""
    if sized <= 0:
        return 0.0

    def at_risk(n: int) -> float:
        return max(0.0, sized - n * per_instance) / sized

    return abs(at_risk(before) - at_risk(after))
