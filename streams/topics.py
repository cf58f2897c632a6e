"""Topic names: the one place they are spelled.

Each output record type names the *role* of its topic (a field of :class:`Topics`); the
pipeline maps the role to the configured name. The defaults are the schema names in
``schemas/`` (a topic is versioned in its name, and so is its schema file).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Topics:
    """Names of every topic the system reads or writes.

    ``scores`` is not a Kafka topic: ``novacron replay`` writes one ``scores.v1`` line
    per input event to its output file.

    Examples:
        >>> Topics().predictions
        'predictions.bandwidth.v1'
        >>> Topics(link="site-a.telemetry.link.v1").schema("link")
        'telemetry.link.v1'
    """

    link: str = "telemetry.link.v1"
    host: str = "telemetry.host.v1"
    predictions: str = "predictions.bandwidth.v1"
    alerts: str = "alerts.anomaly.v1"
    workload: str = "workload.class.v1"
    scaling: str = "actions.scaling.v1"
    dlq: str = "telemetry.dlq.v1"
    model_events: str = "model.events.v1"
    scores: str = "scores.v1"

    def name(self, role: str) -> str:
        """The configured topic name of a role (``"predictions"``, ``"dlq"``, ...)."""
        try:
            name: str = getattr(self, role)
        except AttributeError:
            msg = f"Unknown topic role {role!r}. Expected one of {sorted(roles())}."
            raise KeyError(msg) from None
        return name

    @staticmethod
    def schema(role: str) -> str:
        """The schema (the default topic name) of records of a role."""
        return DEFAULT_TOPICS.name(role)

    def kafka_topics(self) -> list[str]:
        """Every Kafka topic of the system, inputs first (``scores`` is file-only)."""
        return [getattr(self, r) for r in roles() if r != "scores"]


def roles() -> tuple[str, ...]:
    """Every topic role, in declaration order."""
    return tuple(f.name for f in fields(Topics))


DEFAULT_TOPICS = Topics()
INPUT_ROLES: tuple[str, ...] = ("link", "host")
"""The roles of the telemetry topics the worker consumes."""
