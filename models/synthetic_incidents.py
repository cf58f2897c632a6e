"""Synthetic hosts with one known incident, for the alert tests, the demo and the bench.

A normal host has a daily cycle (``period`` samples) with noise on five metrics; an
incident changes some of them for ``length`` samples from ``start``, then the host
recovers. The incident's anomaly type is the one an alert about it must carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.errors import ConfigError

INCIDENT_TYPES: dict[str, str | None] = {
    "cpu_spike": "cpu",
    "memory_leak": "memory",
    "network_outage": "network",
    "disk_saturation": "disk",
    "flapping": "cpu",
    "none": None,
}
"""Incident kinds and the anomaly type an alert about each must have."""


@dataclass(frozen=True, slots=True)
class IncidentHost:
    """A host's metrics, sample by sample, and where its incident is.

    Attributes:
        metrics: metric name -> values (one per sample).
        kind: the incident kind (``none``: a normal host).
        start: first sample of the incident (``None`` for none).
        end: first sample after it.
        anomaly_type: the type an alert about it must carry.
    """

    metrics: dict[str, np.ndarray]
    kind: str
    start: int | None
    end: int | None
    anomaly_type: str | None

    def sample(self, i: int) -> dict[str, float]:
        """Sample ``i`` as a metric map (rounded as a probe would send it)."""
        return {name: round(float(v[i]), 3) for name, v in self.metrics.items()}


def normal_host(n: int, seed: int = 0, period: int = 288) -> dict[str, np.ndarray]:
    """Five metrics of a healthy host: a daily cycle and noise, no incident.

    Examples:
        >>> m = normal_host(600, seed=1)
        >>> sorted(m), bool(20 < m["cpu_pct"].mean() < 70)
        (['cpu_pct', 'disk_io_mbps', 'mem_pct', 'net_in_mbps', 'requests_per_s'], True)
    """
    rng = np.random.default_rng(seed)
    day = np.sin(2 * np.pi * np.arange(n) / period + rng.uniform(0, 2 * np.pi))
    return {
        "cpu_pct": np.clip(45 + 15 * day + rng.normal(0, 3.0, n), 0, 100),
        "mem_pct": np.clip(60 + 2 * day + rng.normal(0, 1.0, n), 0, 100),
        "disk_io_mbps": np.maximum(20 + 5 * day + rng.gamma(2.0, 1.5, n), 0),
        "net_in_mbps": np.maximum(200 + 80 * day + rng.normal(0, 12, n), 0),
        "requests_per_s": np.maximum(500 + 200 * day + rng.normal(0, 30, n), 0),
    }


def incident_host(
    kind: str,
    n: int = 3000,
    start: int = 2000,
    length: int = 40,
    seed: int = 0,
    period: int = 288,
) -> IncidentHost:
    """A host with one incident of ``kind`` (see :data:`INCIDENT_TYPES`).

    Raises:
        ConfigError: unknown kind, or an incident that does not fit in ``n`` samples.

    Examples:
        >>> h = incident_host("cpu_spike", n=400, start=300, length=20)
        >>> h.anomaly_type, bool(h.metrics["cpu_pct"][310] > 90)
        ('cpu', True)
    """
    if kind not in INCIDENT_TYPES:
        msg = f"incident kind must be one of {sorted(INCIDENT_TYPES)}, got {kind!r}"
        raise ConfigError(msg)
    metrics = normal_host(n, seed, period)
    if kind == "none":
        return IncidentHost(metrics, kind, None, None, None)
    end = start + length
    if not 0 <= start < end <= n:
        msg = f"the incident [{start}, {end}) does not fit in {n} samples"
        raise ConfigError(msg)
    rng = np.random.default_rng(seed + 1)
    span = slice(start, end)
    if kind == "cpu_spike":
        metrics["cpu_pct"][span] = np.clip(94 + rng.normal(0, 1.5, length), 0, 100)
    elif kind == "memory_leak":
        metrics["mem_pct"][span] = np.clip(
            metrics["mem_pct"][span] + np.linspace(8, 35, length), 0, 100
        )
    elif kind == "network_outage":
        metrics["net_in_mbps"][span] = rng.uniform(0, 0.5, length)
        metrics["requests_per_s"][span] = rng.uniform(0, 2, length)
    elif kind == "disk_saturation":
        metrics["disk_io_mbps"][span] = 400 + rng.normal(0, 10, length)
    elif kind == "flapping":
        high = (np.arange(length) // 3) % 2 == 0
        metrics["cpu_pct"][span] = np.where(high, 95.0, metrics["cpu_pct"][span])
    return IncidentHost(metrics, kind, start, end, INCIDENT_TYPES[kind])
