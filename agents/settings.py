"""One frozen settings object, read once in ``main()`` and passed down."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.alerts import AlertPolicy
from streams.errors import ConfigError
from streams.topics import Topics


class Settings(BaseSettings):
    """Everything the worker, the producer and the stack read from the environment.

    Values come from ``NOVACRON_*`` environment variables, then from a ``.env``
    file in the working directory, then from these defaults.
    """

    model_config = SettingsConfigDict(
        env_prefix="NOVACRON_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    kafka_bootstrap: str | None = Field(
        None,
        description="host:port[,host:port...] of an existing Kafka cluster; "
        "defaults to the local stack's broker (kafka_host:kafka_port).",
    )
    redis_url: str | None = Field(
        None, description="URL of an existing Redis; defaults to the local stack's server."
    )
    redis_password: SecretStr | None = Field(None, description="Redis password, if any.")
    redis_username: str | None = Field(None, description="Redis ACL user (with the password).")
    redis_tls: bool = Field(False, description="Connect to Redis over TLS (rediss://).")
    redis_ca_file: Path | None = Field(
        None, description="CA certificate(s) that Redis's TLS certificate is checked against."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, or SASL_SSL for a cluster with TLS and SASL."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str | None = Field(None, description="SASL user (SASL_SSL).")
    kafka_password: SecretStr | None = Field(None, description="SASL password (SASL_SSL).")
    kafka_ca_file: Path | None = Field(
        None,
        description="CA certificate(s) the brokers' TLS certificates are checked against "
        "(default: the system's).",
    )
    stack_secure: bool = Field(
        False,
        description="`novacron stack up` starts Kafka with SASL_SSL (SCRAM-SHA-512) and Redis "
        "with TLS and an ACL user; see `novacron stack up --secure`.",
    )
    app_id: str = Field("novacron", description="Faust app id, also the consumer group.")
    topics: Topics = Field(
        default_factory=Topics,
        description="Topic names; override one with e.g. NOVACRON_TOPICS__LINK=site-a.link.v1.",
    )
    topic_partitions: int = Field(4, ge=1, description="Partitions of topics the worker creates.")

    window_size: int = Field(60, ge=1, le=10_000, description="Samples kept per key.")
    window_ttl_s: int = Field(86_400, ge=1, description="Idle keys expire after this long.")
    redis_key_prefix: str = "novacron:win"

    batch_max: int = Field(500, ge=1, description="Events per processing batch at most.")
    batch_within_s: float = Field(0.05, gt=0, description="Wait at most this long to fill a batch.")
    fetch_max_wait_ms: int = Field(
        50,
        ge=1,
        le=30_000,
        description="How long the worker's Kafka consumer lets the broker wait for data before "
        "it answers a fetch (Faust's own is 1,500 ms, which kept samples waiting seconds for "
        "their prediction at a steady trickle; agents/kafka_consumer.py).",
    )

    lag_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often the worker asks the broker for its partitions' consumer lag "
        "(novacron_consumer_lag).",
    )
    retry_backoff_max_s: float = Field(
        2.0,
        gt=0,
        description="Longest wait between two tries of a batch while Redis or Kafka fails "
        "(the wait starts at 0.1 s and doubles).",
    )
    session_timeout_s: float = Field(
        10.0,
        ge=6.0,
        le=300.0,
        description="A worker that stops heartbeating loses its partitions after this long. "
        "Lower hands partitions of a dead worker over sooner; too low for the network or "
        "for GC pauses causes needless rebalances. At least the broker's "
        "group.min.session.timeout.ms (6 s).",
    )
    heartbeat_interval_s: float = Field(
        1.0,
        gt=0,
        description="Heartbeats to the group coordinator (a third of the timeout or less).",
    )
    instance_id: str | None = Field(
        None,
        description="Static group membership id of this worker (Kafka group.instance.id): a "
        "restarted worker with the same id takes its partitions back at once, with no "
        "rebalance. Unique per running worker and stable across its restarts; default "
        "'<hostname>-<web_port>'. Empty string: dynamic membership.",
    )
    shutdown_timeout_s: float = Field(
        20.0,
        gt=0,
        description="On SIGTERM, how long the batch in flight may take to finish; past it the "
        "worker exits without committing the batch, which is then redelivered.",
    )

    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65_535, description="Port of /healthz and /metrics.")

    state_dir: Path = Field(Path(".novacron"), description="Data, logs and pid files of the stack.")
    kafka_port: int = Field(9092, ge=1, le=65_535)
    kafka_controller_port: int = Field(9093, ge=1, le=65_535)
    kafka_host: str = "127.0.0.1"
    kafka_heap: str = "512m"
    redis_port: int = Field(6379, ge=1, le=65_535)
    redis_host: str = "127.0.0.1"
    kafka_version: str = "4.1.1"

    online_gain: bool = Field(
        False,
        description="Adapt each link's bandwidth prediction online: learn from the link's "
        "recent (prediction, actual) pairs how much of the model's correction to the last "
        "value to take (online.gain). Off by default: with the shipped internet model the "
        "model alone scores better on the training and validation traces "
        "(bench/results/online_gain.json); it pays off for a model that fits its links "
        "poorly.",
    )

    online: bool = Field(
        True,
        description="Run each link's online path beside the batch model: a River learner, "
        "drift detectors on the batch model's residuals and on the input, online accuracy, "
        "champion/challenger while the batch model is degraded, retrain requests "
        "(online.link); and each host's: a River learner of demand, drift on the "
        "forecaster's residuals, online accuracy, the learner's level correction of the "
        "forecast acted on while the forecaster is degraded (online.demand).",
    )
    online_summary_every: int = Field(
        600, ge=0, description="Samples between two accuracy_summary records of a link (0: none)."
    )
    online_retrain_every: int = Field(
        3600, ge=1, description="At most one retrain request per link per this many samples."
    )
    online_adapt_samples: int = Field(
        600,
        ge=1,
        description="Samples a link stays in adapting mode after a confirmed drift (the "
        "online learner may serve while the batch model is worse).",
    )

    anomaly: bool = Field(
        True, description="Score host and link telemetry for anomalies and publish alerts."
    )
    anomaly_fit_process: bool = Field(
        True,
        description="Fit the anomaly detectors (about 35 ms each, per key every 2048 "
        "samples) in one child process rather than a thread of the worker, so the fits "
        "run on another core and never hold up the event loop.",
    )
    alert_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Anomaly score at or above which a sample is evidence for an alert "
        "(the likelihood scale; `novacron eval anomalies` reports the NAB-optimal value).",
    )
    alert_evidence_k: int = Field(
        2, ge=1, description="Evidence samples among the last alert_evidence_n that open an alert."
    )
    alert_evidence_n: int = Field(3, ge=1, description="Samples the evidence is counted over.")
    alert_resolve_after: int = Field(
        12, ge=1, description="Consecutive normal samples that resolve an open alert."
    )
    alert_cooldown: int = Field(
        60, ge=0, description="Samples after a resolve before the same key and type opens again."
    )
    alert_update_every: int = Field(
        60, ge=1, description="An open alert is re-sent (same id) at least this often."
    )
    alert_new_normal_after: int = Field(
        288,
        ge=0,
        description="Samples an alert may last before its level is taken as the new normal "
        "(resolved, the key's model re-baselined); 0 never.",
    )
    alert_floors: dict[str, float] = Field(
        default_factory=lambda: {"cpu_pct": 20.0, "mem_pct": 20.0},
        description="Per metric, the value under which it never drives an alert "
        '(JSON, e.g. {"cpu_pct": 20}).',
    )

    workload: bool = Field(
        True,
        description="Classify hosts' workloads and publish workload.class.v1 (needs the "
        "workload-classifier model active in the registry; the shipped one is imported).",
    )
    workload_history: int = Field(
        1440,
        ge=64,
        le=20_000,
        description="History rows the workload processor keeps per host (in Redis, with the "
        "host's window): three days at the default bucket.",
    )
    workload_bucket_s: float = Field(
        180.0,
        ge=0,
        description="Seconds of a host's samples averaged into one history row (0: one row "
        "per sample).",
    )
    scaling: bool = Field(
        True, description="Decide scaling actions per host and publish actions.scaling.v1."
    )
    scaling_metric: str = Field(
        "cpu_pct",
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="The host metric scaling demand is measured in; times the sample's "
        "`instances` metric when it reports one.",
    )
    scaling_policy: str = Field(
        "PREDICTIVE",
        description="The scaling policy: REACTIVE, PREDICTIVE, PROACTIVE, COST_OPTIMIZED, "
        "PERFORMANCE_OPTIMIZED or HYBRID (docs: README, Scaling actions).",
    )
    scaling_capacity_per_instance: float = Field(
        100.0,
        gt=0,
        description="Demand one instance serves, in the metric's units (100: one host's cpu_pct).",
    )
    scaling_ready_delay_s: float = Field(
        180.0, ge=0, description="Seconds a new instance takes to be ready (the lead time)."
    )
    scaling_min_instances: int = Field(1, ge=1, description="Fewest instances an action asks for.")
    scaling_max_instances: int = Field(100, ge=1, description="Most instances an action asks for.")

    tf_threads: int = Field(
        0, ge=0, description="TensorFlow intra-op threads for `novacron train` (0: all cores)."
    )

    registry_url: str = Field(
        "sqlite:///.novacron/registry.sqlite", description="Model registry database."
    )
    artifact_dir: Path = Field(Path(".novacron/artifacts"), description="Model artifacts.")

    def alert_policy(self) -> AlertPolicy:
        """The alert lifecycle these settings describe."""
        try:
            return AlertPolicy(
                threshold=self.alert_threshold,
                evidence_k=self.alert_evidence_k,
                evidence_n=self.alert_evidence_n,
                resolve_after=self.alert_resolve_after,
                cooldown=self.alert_cooldown,
                update_every=self.alert_update_every,
                new_normal_after=self.alert_new_normal_after,
                floors=dict(self.alert_floors),
            )
        except ValueError as exc:
            msg = f"The NOVACRON_ALERT_* settings do not fit together: {exc}."
            raise ConfigError(msg) from exc

    @property
    def group_instance_id(self) -> str | None:
        """The static membership id (``None``: dynamic membership)."""
        if self.instance_id is None:
            return f"{socket.gethostname()}-{self.web_port}"
        return self.instance_id or None

    @property
    def worker_name(self) -> str:
        """The worker's Kafka client id: how ``novacron status`` and the broker's own tools
        name it among the group's members (``novacron-<hostname>-<web port>``)."""
        return f"novacron-{self.group_instance_id or f'{socket.gethostname()}-{self.web_port}'}"

    @property
    def bootstrap_servers(self) -> str:
        """The Kafka bootstrap servers the worker and clients connect to."""
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def redis_dsn(self) -> str:
        """The Redis URL the worker and clients connect to."""
        scheme = "rediss" if self.redis_tls else "redis"
        return self.redis_url or f"{scheme}://{self.redis_host}:{self.redis_port}/0"
