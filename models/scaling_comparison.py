"""Kubernetes' HPA, a static fleet, an oracle and our policies side by side on one trace.

:func:`compare_policies` replays a trace against every autoscaler with the same capacity
model and returns their figures; :func:`sweep_frontier` also varies HPA's target and our
policies' target utilisation, giving each family's cost / violation-minutes frontier.
The oracle (it knows the demand of the next ready delay) is a reference line, never
counted as ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.capacity import SCALING_POLICIES, Forecaster

from .demand_traces import DemandTrace
from .hpa import HpaSettings
from .scaling import CapacityController
from .scaling_policy import POLICIES, PolicySettings
from .simulation import (
    CapacityModel,
    ControllerScaler,
    HpaScaler,
    OracleScaler,
    PolicyRun,
    Progress,
    StaticScaler,
    TraceForecasts,
    forecast_trace,
    simulate,
    static_instances,
)

HPA = "hpa"
STATIC = "static-p99"
ORACLE = "oracle-lead"
OURS_PREFIX = "ours-"
HPA_TARGETS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)
ORACLE_TARGETS = (0.5, 0.6, 0.7, 0.8)
OURS_SWEEP = ((4.0, 0.9), (2.0, 0.95), (1.0, 1.0), (0.5, 1.05), (0.25, 1.1), (0.125, 1.15))
"""Our sweep, from cautious to cheap: each policy's violation weight times the first
number and its target utilisation times the second (at most 0.95); a reactive policy's
target times the second number squared."""
MAX_EXTRA_COST = 0.05
"""The acceptance test: at most 5% more cost than HPA ..."""
MIN_FEWER_VIOLATIONS = 0.5
"""... and at least 50% fewer violation minutes."""


def ours_name(policy: str) -> str:
    """The results' name of one of our policies.

    Examples:
        >>> ours_name("PREDICTIVE")
        'ours-predictive'
    """
    return OURS_PREFIX + policy.lower()


@dataclass(slots=True)
class Comparison:
    """Every autoscaler's replay of one trace, and the frontier points when swept.

    Attributes:
        trace: the trace's name.
        step_s, minutes, missing_steps: the trace's step, length and gaps.
        model: the capacity model.
        forecaster: ``name:version`` of the forecaster our policies used.
        runs: name -> replay.
        frontier: family -> points ``{"setting", "cost_instance_minutes",
            "sla_violation_minutes", "actions"}``.
    """

    trace: str
    step_s: float
    minutes: float
    missing_steps: int
    model: CapacityModel
    forecaster: str
    runs: dict[str, PolicyRun]
    frontier: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def ratios(self, name: str) -> dict[str, float | None]:
        """``name``'s violation minutes, cost and cost in dollars over HPA's (``None``
        where HPA's are 0)."""
        hpa, run = self.runs[HPA], self.runs[name]
        return {
            "violations_vs_hpa": _ratio(run.sla_violation_minutes, hpa.sla_violation_minutes),
            "cost_vs_hpa": _ratio(run.cost_instance_minutes, hpa.cost_instance_minutes),
            "cost_dollars_vs_hpa": _ratio(run.cost_dollars(), hpa.cost_dollars()),
        }

    def to_json(self) -> dict[str, Any]:
        """``results.json``: ``{"policies": {name: {"sla_violation_minutes",
        "cost_instance_minutes", "actions", "settings", ...}}, ...}``; beside them the
        instances started and the cost in dollars with the design's prices (starts
        included), which the acceptance test does not use."""
        policies = {}
        for name, run in self.runs.items():
            entry = run.summary()
            entry.update(self.ratios(name))
            entry["kind"] = _kind(name)
            policies[name] = entry
        return {
            "trace": self.trace,
            "step_s": self.step_s,
            "minutes": self.minutes,
            "missing_steps": self.missing_steps,
            "capacity_model": {
                "capacity_per_instance": self.model.capacity_per_instance,
                "ready_delay_s": self.model.ready_delay_s,
                "sla_utilisation": self.model.sla_utilisation,
                "min_instances": self.model.min_instances,
                "max_instances": self.model.max_instances,
            },
            "forecaster": self.forecaster,
            "policies": policies,
            "acceptance": acceptance(self),
            "frontier": self.frontier,
            "frontier_below_hpa": frontier_below(self.frontier) if self.frontier else None,
        }


def compare_policies(
    trace: DemandTrace,
    model: CapacityModel,
    forecasts: TraceForecasts | None,
    hpa: HpaSettings | None = None,
    policies: Sequence[str] = SCALING_POLICIES,
    progress: Progress | None = None,
) -> Comparison:
    """Replay ``trace`` against HPA, the static fleet, the oracle and ``policies``."""
    hpa = hpa or HpaSettings(min_replicas=model.min_instances, max_replicas=model.max_instances)
    ts, demand, step = trace.sim_ts, trace.demand, trace.step_s
    runs: dict[str, PolicyRun] = {}

    def run(name: str, scaler: Any, settings: dict[str, Any]) -> None:
        runs[name] = simulate(demand, ts, step, model, scaler, name, settings, progress)

    run(HPA, HpaScaler(hpa, model.capacity_per_instance), _hpa_settings(hpa))
    fleet = static_instances(demand, model)
    run(STATIC, StaticScaler(fleet), {"instances": fleet, "sized_for": "p99 demand at the SLA"})
    oracle_settings = {"target_utilisation": 0.6, "knows_ahead_s": model.ready_delay_s}
    run(ORACLE, OracleScaler(demand, model, step, 0.6), oracle_settings)
    for policy in policies:
        settings = POLICIES[policy]
        scaler = ControllerScaler(controller_for(model, policy, settings), forecasts, step)
        run(ours_name(policy), scaler, settings.as_dict())
    name = forecasts.model if forecasts is not None else "none"
    return Comparison(trace.name, step, trace.minutes, trace.missing_steps, model, name, runs)


def sweep_frontier(
    comparison: Comparison,
    trace: DemandTrace,
    forecasts: TraceForecasts | None,
    hpa: HpaSettings | None = None,
    policies: Sequence[str] = SCALING_POLICIES,
    progress: Progress | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Each family's frontier points (also stored on ``comparison``)."""
    model = comparison.model
    hpa = hpa or HpaSettings(min_replicas=model.min_instances, max_replicas=model.max_instances)
    ts, demand, step = trace.sim_ts, trace.demand, trace.step_s
    frontier: dict[str, list[dict[str, Any]]] = {}

    def point(family: str, setting: Any, scaler: Any) -> None:
        r = simulate(demand, ts, step, model, scaler, family, None, progress)
        frontier.setdefault(family, []).append(
            {
                "setting": setting,
                "cost_instance_minutes": r.cost_instance_minutes,
                "sla_violation_minutes": r.sla_violation_minutes,
                "actions": r.actions,
            }
        )

    for target in HPA_TARGETS:
        swept = HpaSettings(
            target_utilisation=target, min_replicas=hpa.min_replicas, max_replicas=hpa.max_replicas
        )
        point(HPA, target, HpaScaler(swept, model.capacity_per_instance))
    for target in ORACLE_TARGETS:
        point(ORACLE, target, OracleScaler(demand, model, step, target))
    for policy in policies:
        base = POLICIES[policy]
        for weight_factor, target_factor in OURS_SWEEP:
            settings = swept_settings(base, weight_factor, target_factor)
            controller = controller_for(model, policy, settings)
            setting = {
                "target_utilisation": settings.target_utilisation,
                "violation_weight": settings.violation_weight,
            }
            point(ours_name(policy), setting, ControllerScaler(controller, forecasts, step))
    comparison.frontier = frontier
    return frontier


def swept_settings(
    base: PolicySettings, weight_factor: float, target_factor: float
) -> PolicySettings:
    """One point of our sweep (:data:`OURS_SWEEP`).

    Examples:
        >>> s = swept_settings(POLICIES["PROACTIVE"], 0.5, 1.05)
        >>> s.violation_weight, s.target_utilisation
        (5.0, 0.735)
    """
    if base.violation_weight is None or not base.use_forecast:
        target = min(round(base.target_utilisation * target_factor**2, 4), 0.95)
        return base.with_(target_utilisation=target)
    target = min(round(base.target_utilisation * target_factor, 4), 0.95)
    return base.with_(
        target_utilisation=target, violation_weight=base.violation_weight * weight_factor
    )


def frontier_steps(trace: DemandTrace, policies: Sequence[str]) -> int:
    """Simulated steps :func:`sweep_frontier` makes (for a progress bar)."""
    runs = len(HPA_TARGETS) + len(ORACLE_TARGETS) + len(policies) * len(OURS_SWEEP)
    return runs * len(trace.demand)


def pareto(points: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """The (cost, violations) points no other point beats on both, by cost.

    Examples:
        >>> pareto([{"cost_instance_minutes": c, "sla_violation_minutes": v}
        ...         for c, v in [(1, 9), (2, 5), (3, 6), (4, 1)]])
        [(1.0, 9.0), (2.0, 5.0), (4.0, 1.0)]
    """
    pts = sorted(
        (float(p["cost_instance_minutes"]), float(p["sla_violation_minutes"])) for p in points
    )
    out: list[tuple[float, float]] = []
    for cost, viol in pts:
        if not out or viol < out[-1][1]:
            out.append((cost, viol))
    return out


def frontier_below(frontier: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Whether our frontier (every policy's points together) is below HPA's: at each of
    HPA's Pareto points, ours at no more cost has fewer violation minutes (``None``
    where ours never costs that little).

    Examples:
        >>> f = {"hpa": [{"cost_instance_minutes": 10, "sla_violation_minutes": 8}],
        ...      "ours-x": [{"cost_instance_minutes": 9, "sla_violation_minutes": 3}]}
        >>> frontier_below(f)["below_everywhere"]
        True
    """
    ours = pareto([p for fam, pts in frontier.items() if fam.startswith(OURS_PREFIX) for p in pts])
    hpa = pareto(frontier.get(HPA, []))
    checks = []
    for cost, viol in hpa:
        affordable = [v for c, v in ours if c <= cost * (1 + 1e-9)]
        best = min(affordable) if affordable else None
        checks.append(
            {
                "hpa_cost": cost,
                "hpa_violation_minutes": viol,
                "ours_violation_minutes_at_no_more_cost": best,
                "below": None if best is None else bool(best < viol or best == viol == 0),
            }
        )
    verdicts = [c["below"] for c in checks if c["below"] is not None]
    return {"points": checks, "below_everywhere": bool(verdicts) and all(verdicts)}


def acceptance(comparison: Comparison) -> dict[str, Any]:
    """The acceptance test per policy of ours: at least 50% fewer violation minutes than
    HPA at no more than 5% more cost; and the best such policy."""
    hpa = comparison.runs[HPA]
    verdicts: dict[str, bool] = {}
    for name, run in comparison.runs.items():
        if name.startswith(OURS_PREFIX):
            verdicts[name] = passes(run, hpa)
    best = best_ours(comparison)
    return {"passes": verdicts, "best_ours": best, "best_passes": verdicts.get(best or "", False)}


def passes(run: PolicyRun, hpa: PolicyRun) -> bool:
    """``run`` meets the acceptance test against ``hpa``.

    Examples:
        >>> import numpy as np
        >>> z = np.zeros(1)
        >>> passes(PolicyRun("a", 4.0, 105.0, 0, {}, z, z), PolicyRun("h", 8.0, 100.0, 0, {}, z, z))
        True
    """
    cheap = run.cost_instance_minutes <= hpa.cost_instance_minutes * (1 + MAX_EXTRA_COST) + 1e-9
    fewer = run.sla_violation_minutes <= hpa.sla_violation_minutes * MIN_FEWER_VIOLATIONS + 1e-9
    return cheap and fewer


def best_ours(comparison: Comparison) -> str | None:
    """Our policy with the fewest violation minutes at no more than 5% over HPA's cost
    (the cheapest of ours when none is that cheap)."""
    hpa = comparison.runs[HPA]
    ours = [r for n, r in comparison.runs.items() if n.startswith(OURS_PREFIX)]
    if not ours:
        return None
    limit = hpa.cost_instance_minutes * (1 + MAX_EXTRA_COST) + 1e-9
    affordable = [r for r in ours if r.cost_instance_minutes <= limit]
    if affordable:
        pick = min(affordable, key=lambda r: (r.sla_violation_minutes, r.cost_instance_minutes))
    else:
        pick = min(ours, key=lambda r: r.cost_instance_minutes)
    return pick.name


def controller_for(
    model: CapacityModel, policy: str, settings: PolicySettings
) -> CapacityController:
    """Our controller of ``policy`` with ``settings``, on ``model``'s capacity and bounds."""
    return CapacityController(
        model.capacity_per_instance,
        policy,
        settings,
        ready_delay_s=model.ready_delay_s,
        sla_utilisation=model.sla_utilisation,
        min_instances=model.min_instances,
        max_instances=model.max_instances,
    )


def _hpa_settings(hpa: HpaSettings) -> dict[str, Any]:
    return {
        "target_utilisation": hpa.target_utilisation,
        "tolerance": hpa.tolerance,
        "scale_down_window_s": hpa.scale_down_window_s,
        "scale_up": f"max({hpa.scale_up_percent:g}%, {hpa.scale_up_pods} pods) per "
        f"{hpa.scale_up_period_s:g} s",
        "sync": "once per sample",
    }


def _kind(name: str) -> str:
    if name.startswith(OURS_PREFIX):
        return "ours"
    return "reference" if name == ORACLE else "baseline"


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def simulate_trace(
    trace: DemandTrace,
    model: CapacityModel,
    forecaster: Forecaster | None,
    hpa: HpaSettings | None = None,
    policies: Sequence[str] = SCALING_POLICIES,
    frontier: bool = False,
    progress: Progress | None = None,
) -> Comparison:
    """The simulator's core: forecast the trace in chunks, replay every autoscaler and,
    with ``frontier``, sweep their settings."""
    forecasts = None
    if forecaster is not None:
        forecasts = forecast_trace(
            forecaster, trace.demand, trace.ts, trace.step_s, progress=progress
        )
    comparison = compare_policies(trace, model, forecasts, hpa, policies, progress)
    if frontier:
        sweep_frontier(comparison, trace, forecasts, hpa, policies, progress)
    return comparison


def total_steps(
    trace: DemandTrace, policies: Sequence[str], frontier: bool, lookback: int | None
) -> int:
    """Steps :func:`simulate_trace` reports to its progress callback (``lookback``: the
    forecaster's, ``None`` without one)."""
    n = len(trace.demand)
    forecasts = 0 if lookback is None else max(n - lookback + 1, 0)
    steps = forecasts + (3 + len(policies)) * n
    return steps + (frontier_steps(trace, policies) if frontier else 0)
