"""Kubernetes' Horizontal Pod Autoscaler, as its controller computes replicas, for replay.

The reference the scaling simulator compares our controller with
(:mod:`models.simulation`). It follows ``pkg/controller/podautoscaler`` of Kubernetes
(``replica_calculator.go`` and ``horizontal.go``, autoscaling/v2 with the default
behaviour) for one resource-utilisation metric:

- **replica calculator**: the utilisation of the *ready* pods is their demand over
  their capacity, in whole percent (the metrics client truncates to an integer);
  ``ratio = utilisation / target``. With no unready pods, or on a scale-down: no
  change when ``|ratio - 1| <= tolerance`` (0.1), else ``ceil(ratio x ready)``. On a
  scale-up with unready (starting) pods, those pods count as 0% utilisation and the
  ratio is computed again over all pods; no change if it is within tolerance or
  changed direction, else ``ceil(new_ratio x pods)`` (never below the current count);
- **stabilisation**: every sync's recommendation is recorded; a scale-down goes only to
  the *largest* recommendation of the last 5 minutes (``scale_down_window_s``), a
  scale-up to the smallest of the last 0 seconds (immediate);
- **rate limits** (default behaviour): up by at most ``max(100%, 4 pods)`` per 15 s,
  down by up to 100% per 15 s; then ``min_replicas``/``max_replicas``.

``current`` is the replicas asked for (the scale's spec), as the controller reads it.

Simplified, and said where results are reported: one sync per demand sample (Kubernetes
syncs every 15 s; between samples its metric would not change, so the extra syncs could
only react to pods turning ready); a sample counts in the stabilisation window when its
time is within the window *inclusive* of its start (a sample's metric stands until the
next one, so a 15 s sync just before the next sample still saw it); pods become ready
after a fixed delay and report metrics at once (no CPU initialisation period, no missing
metrics); terminating pods are removed at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HpaSettings:
    """The HorizontalPodAutoscaler spec and controller flags that matter here.

    Attributes:
        target_utilisation: the metric target (``averageUtilization`` / 100).
        tolerance: ``--horizontal-pod-autoscaler-tolerance``.
        scale_down_window_s: ``behavior.scaleDown.stabilizationWindowSeconds``.
        scale_up_window_s: ``behavior.scaleUp.stabilizationWindowSeconds``.
        min_replicas, max_replicas: the spec's bounds.
        scale_up_percent, scale_up_pods, scale_up_period_s: the default scale-up
            policies (selectPolicy Max).
        scale_down_percent, scale_down_period_s: the default scale-down policy.
    """

    target_utilisation: float = 0.6
    tolerance: float = 0.1
    scale_down_window_s: float = 300.0
    scale_up_window_s: float = 0.0
    min_replicas: int = 1
    max_replicas: int = 1000
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_up_period_s: float = 15.0
    scale_down_percent: float = 100.0
    scale_down_period_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0.0 < self.target_utilisation <= 1.0:
            msg = (
                "The 'target_utilisation' of HpaSettings must be in (0, 1]. "
                f"Got {self.target_utilisation!r} instead."
            )
            raise ValueError(msg)
        if not 1 <= self.min_replicas <= self.max_replicas:
            msg = (
                "HpaSettings needs 1 <= min_replicas <= max_replicas. "
                f"Got {self.min_replicas} and {self.max_replicas} instead."
            )
            raise ValueError(msg)


@dataclass(slots=True)
class HpaState:
    """What the controller remembers per target between syncs.

    Attributes:
        recommendations: ``(time, replicas)`` of recent syncs, before stabilisation.
        events: ``(time, change)`` of recent scale events, for the rate limits.
    """

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)


def replica_calculator(
    demand: float,
    ready: int,
    current: int,
    capacity_per_pod: float,
    target_utilisation: float,
    tolerance: float = 0.1,
) -> int:
    """The replica calculator's answer for one resource-utilisation metric.

    ``current`` pods exist (spec); ``ready`` of them report metrics; the others are
    starting. Each ready pod serves ``capacity_per_pod`` units at 100% utilisation.

    Examples:
        >>> replica_calculator(65.0, 10, 10, 10.0, 0.6)  # 65% / 60%: within tolerance
        10
        >>> replica_calculator(90.0, 10, 10, 10.0, 0.6)  # 90% / 60% -> ceil(1.5 x 10)
        15
        >>> replica_calculator(90.0, 10, 15, 10.0, 0.6)  # 5 starting pods count as 0%
        15
    """
    if ready <= 0 or capacity_per_pod <= 0:
        return current  # no metrics from ready pods: the controller keeps the scale
    utilisation = int(demand * 100.0 / (ready * capacity_per_pod))
    target_pct = target_utilisation * 100.0
    ratio = utilisation / target_pct
    unready = current - ready
    if not (unready > 0 and ratio > 1.0):
        if abs(1.0 - ratio) <= tolerance:
            return current
        return math.ceil(ratio * ready)
    new_ratio = int(demand * 100.0 / (current * capacity_per_pod)) / target_pct
    if abs(1.0 - new_ratio) <= tolerance or new_ratio < 1.0:
        return current
    return max(math.ceil(new_ratio * current), current)


class HorizontalPodAutoscaler:
    """Kubernetes' HPA for one target, stepped once per demand sample.

    Examples:
        >>> hpa = HorizontalPodAutoscaler(HpaSettings(), capacity_per_pod=10.0)
        >>> state = HpaState()
        >>> [hpa.sync(state, t * 60.0, d, 10, 10) for t, d in enumerate([90.0, 30.0])]
        [15, 10]

        The second sample asks for 5 pods, but a scale-down goes no lower than the
        largest recommendation of the last 5 minutes (15): the HPA keeps its 10.
    """

    def __init__(self, settings: HpaSettings, capacity_per_pod: float) -> None:
        self.settings = settings
        self.capacity_per_pod = capacity_per_pod

    def sync(self, state: HpaState, ts: float, demand: float, ready: int, current: int) -> int:
        """Record this sync in ``state`` and return the replicas the HPA sets."""
        s = self.settings
        desired = replica_calculator(
            demand, ready, current, self.capacity_per_pod, s.target_utilisation, s.tolerance
        )
        desired = self._stabilise(state, ts, desired, current)
        desired = self._rate_limit(state, ts, desired, current)
        if desired != current:
            state.events.append((ts, desired - current))
        return desired

    def _stabilise(self, state: HpaState, ts: float, desired: int, current: int) -> int:
        s = self.settings
        recs = state.recommendations
        horizon = max(s.scale_down_window_s, s.scale_up_window_s)
        while recs and recs[0][0] < ts - horizon:
            recs.pop(0)
        up = down = desired
        for when, rec in recs:
            if when >= ts - s.scale_up_window_s:
                up = min(up, rec)
            if when >= ts - s.scale_down_window_s:
                down = max(down, rec)
        recs.append((ts, desired))
        return min(max(current, up), down)

    def _rate_limit(self, state: HpaState, ts: float, desired: int, current: int) -> int:
        s = self.settings
        period = max(s.scale_up_period_s, s.scale_down_period_s)
        state.events[:] = [e for e in state.events if e[0] > ts - period]
        if desired > current:
            added = sum(c for t, c in state.events if c > 0 and t > ts - s.scale_up_period_s)
            removed = -sum(c for t, c in state.events if c < 0 and t > ts - s.scale_up_period_s)
            start = current - added + removed
            limit = max(
                math.ceil(start * (1 + s.scale_up_percent / 100.0)), start + s.scale_up_pods
            )
            limit = max(limit, current)
            return min(desired, limit, s.max_replicas)
        if desired < current:
            window = ts - s.scale_down_period_s
            added = sum(c for t, c in state.events if c > 0 and t > window)
            removed = -sum(c for t, c in state.events if c < 0 and t > window)
            start = current - added + removed
            limit = int(start * (1 - s.scale_down_percent / 100.0))
            return max(desired, limit, s.min_replicas)
        return min(max(desired, s.min_replicas), s.max_replicas)
