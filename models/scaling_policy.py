"""Scaling policies as settings of one controller, and the cost model its decisions price.

Each of :data:`streams.capacity.SCALING_POLICIES` is a :class:`PolicySettings` of the
same controller (:class:`models.scaling.CapacityController`): the utilisation it sizes
for, which forecast bound it sizes for (a calibrated quantile of the forecast at the
lead time), how far ahead it looks, and its stabilisation and cooldown. The numbers
were chosen once, for every target, on the public request-rate and utilisation traces
together (``bench/scaling_sim.py``, figures in ``bench/results/scaling_sim.json``),
never per trace.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from streams.capacity import SCALING_POLICIES


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """How one policy sizes capacity.

    Attributes:
        target_utilisation: utilisation of the capacity asked for at the actual demand
            and at the point forecast (the reactive policy: at the actual demand only).
        use_forecast: ``False``: the actual demand only (reactive).
        quantile: the quantile of the forecast error at the lead time that the capacity
            covers at the SLA utilisation (calibrated online from the target's own
            errors; 0.5 is the bias-corrected median forecast): ``1 - quantile`` is about
            the risk of a violating step the policy accepts.
        horizon_s: how far ahead the forecast is sized for (at least the ready delay:
            the controller always covers the lead time).
        hybrid: mix the predictive and reactive sizing by the forecast's confidence.
        reactive_utilisation: the reactive part's target when ``hybrid``.
        scale_in_window_s: stabilisation: a scale-in goes no lower than the largest
            recommendation of this window, and never within it after a scale-out.
        scale_in_window_steps: for the actual demand and the time since the last
            action, the stabilisation window holds at least this many earlier samples,
            whatever the sampling interval: on a trace sampled every 5 minutes a 120 s
            window would otherwise hold none, and the controller would scale in on one
            low sample and out again on the next (flapping). The forecast's own
            recommendations are held for ``scale_in_window_s`` only: one made a sample
            ago was sized from older data (at a 3-minute lead on 5-minute samples, for a
            time that has passed), and the current one sees the demand since.
        scale_in_cooldown_s: time between two scale-ins.
        scale_in_margin: hysteresis, in instances: a scale-in to ``n`` instances needs
            the demand sized for to fit ``n - this`` of them, so demand hovering at the
            edge of a capacity step does not take it out and back (flapping).
        max_step_out: a scale-out asks for at most ``max(current x this, current + 4)``.
        max_step_in: a scale-in removes at most this share of the current capacity.
        violation_weight: when set, the bound sized for is the calibrated quantile
            between the median and ``quantile`` that minimises ``headroom / level +
            violation_weight x P(demand above it)``: a violating step costs as much as
            that many steps of the whole fleet, so a tight error distribution is covered
            far into its tail and a burst that would need the fleet many times over is
            not.
    """

    target_utilisation: float = 0.7
    use_forecast: bool = True
    quantile: float = 0.9
    horizon_s: float = 0.0
    hybrid: bool = False
    reactive_utilisation: float = 0.6
    scale_in_window_s: float = 120.0
    scale_in_window_steps: int = 1
    scale_in_cooldown_s: float = 60.0
    scale_in_margin: float = 0.25
    max_step_out: float = 2.0
    max_step_in: float = 0.5
    violation_weight: float | None = None

    def __post_init__(self) -> None:
        for name in ("target_utilisation", "reactive_utilisation"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                msg = f"The '{name}' of PolicySettings must be in (0, 1]. Got {value!r} instead."
                raise ValueError(msg)
        if not 0.0 < self.quantile < 1.0:
            msg = f"The 'quantile' of PolicySettings must be in (0, 1). Got {self.quantile!r}."
            raise ValueError(msg)
        if not 0.0 <= self.scale_in_margin < 1.0:
            msg = (
                "The 'scale_in_margin' of PolicySettings must be in [0, 1). "
                f"Got {self.scale_in_margin!r} instead."
            )
            raise ValueError(msg)
        if self.scale_in_window_steps < 0:
            msg = (
                "The 'scale_in_window_steps' of PolicySettings must be >= 0. "
                f"Got {self.scale_in_window_steps!r} instead."
            )
            raise ValueError(msg)
        if self.max_step_out < 1.0 or not 0.0 < self.max_step_in <= 1.0:
            msg = (
                "PolicySettings needs max_step_out >= 1 and 0 < max_step_in <= 1. "
                f"Got {self.max_step_out!r} and {self.max_step_in!r} instead."
            )
            raise ValueError(msg)

    def with_(self, **changes: Any) -> PolicySettings:
        """A copy with some settings changed (the simulator's frontier sweeps)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


POLICIES: dict[str, PolicySettings] = {
    # HPA-like: the actual demand at 60%, with our stabilisation and cooldowns.
    "REACTIVE": PolicySettings(target_utilisation=0.6, use_forecast=False),
    # max(actual, calibrated upper bound of the forecast over the lead time). Target and
    # violation weight chosen on the 12 NAB utilisation traces alone (the cheapest grid
    # point with half HPA's violations there), NASA held out: bench/scaling_heldout.py.
    "PREDICTIVE": PolicySettings(target_utilisation=0.78, quantile=0.995, violation_weight=7.0),
    # the same bound over the next 15 minutes: capacity ready well before a ramp.
    "PROACTIVE": PolicySettings(
        target_utilisation=0.7,
        quantile=0.995,
        violation_weight=10.0,
        horizon_s=900.0,
        scale_in_window_s=180.0,
    ),
    # a higher target, a lower quantile, a smaller violation weight, a quick scale-in.
    "COST_OPTIMIZED": PolicySettings(
        target_utilisation=0.85, quantile=0.98, violation_weight=5.0, scale_in_window_s=60.0
    ),
    # a lower target, a larger violation weight and a slow scale-in.
    "PERFORMANCE_OPTIMIZED": PolicySettings(
        target_utilisation=0.6, quantile=0.995, violation_weight=40.0, scale_in_window_s=300.0
    ),
    # predictive where the forecast is confident, reactive (at 60%) where it is not.
    "HYBRID": PolicySettings(
        target_utilisation=0.7, quantile=0.995, violation_weight=10.0, hybrid=True
    ),
}
"""The default setting of each policy of :data:`streams.capacity.SCALING_POLICIES`."""


def policy_settings(policy: str) -> PolicySettings:
    """The default settings of a policy, by name.

    Examples:
        >>> policy_settings("REACTIVE").use_forecast
        False
    """
    if policy not in SCALING_POLICIES:
        msg = f"The 'policy' must be one of {list(SCALING_POLICIES)}. Got {policy!r} instead."
        raise ValueError(msg)
    return POLICIES[policy]


@dataclass(frozen=True, slots=True)
class CostModel:
    """Prices of the design's cost model, in dollars.

    Attributes:
        cpu_unit_hour: per CPU unit and hour.
        memory_gb_hour: per GB of memory and hour.
        storage_gb_hour: per GB of storage and hour.
        network_gb: per GB moved.
        vm_start: per instance started.
        migration: per migration.
        sla_penalty: per minute of SLA violation.
        instance_cpu_units, instance_memory_gb: what one instance has.
    """

    cpu_unit_hour: float = 0.05
    memory_gb_hour: float = 0.02
    storage_gb_hour: float = 0.001
    network_gb: float = 0.01
    vm_start: float = 0.10
    migration: float = 0.25
    sla_penalty: float = 10.00
    instance_cpu_units: float = 1.0
    instance_memory_gb: float = 2.0

    @property
    def instance_hour(self) -> float:
        """The price of one instance for an hour.

        Examples:
            >>> round(CostModel().instance_hour, 4)
            0.09
        """
        return (
            self.instance_cpu_units * self.cpu_unit_hour
            + self.instance_memory_gb * self.memory_gb_hour
        )

    def change_per_hour(self, current: int, target: int) -> float:
        """The cost change of going from ``current`` to ``target`` instances, per hour
        (starts are paid once and counted in the first hour).

        Examples:
            >>> round(CostModel().change_per_hour(10, 12), 2)
            0.38
        """
        delta = target - current
        return delta * self.instance_hour + max(delta, 0) * self.vm_start


URGENT_S = 900.0
"""A breach forecast within this many seconds is maximally urgent."""


def urgency(seconds_to_breach: float | None, utilisation: float, confidence: float) -> float:
    """How pressing an action is, in [0, 1].

    Half from the time to breach (1 under :data:`URGENT_S`, then ``URGENT_S / t``; 0 with
    no breach in sight), three tenths from the current utilisation of the ready capacity
    against the SLA line, and two tenths from the forecast's confidence in that breach.

    Examples:
        >>> urgency(300.0, 0.8, 0.5)
        0.84
        >>> urgency(None, 0.4, 0.9)
        0.12
    """
    if seconds_to_breach is None:
        soon = 0.0
    else:
        soon = 1.0 if seconds_to_breach <= URGENT_S else URGENT_S / seconds_to_breach
    util = min(max(utilisation, 0.0), 1.0)
    conf = min(max(confidence, 0.0), 1.0)
    return round(min(0.5 * soon + 0.3 * util + 0.2 * conf * soon, 1.0), 6)


def decision_score(urgency_value: float, performance_impact: float, cost_impact: float) -> float:
    """``urgency x 0.4 + cost_perf_ratio x 0.6``, ``cost_perf_ratio = performance_impact /
    (|cost_impact| + 0.01)`` (the design's score).

    Examples:
        >>> round(decision_score(0.5, 0.2, 0.39), 3)
        0.5
    """
    cost_perf_ratio = performance_impact / (abs(cost_impact) + 0.01)
    return urgency_value * 0.4 + cost_perf_ratio * 0.6
