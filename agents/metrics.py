"""Prometheus metrics of the worker, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class WorkerMetrics:
    """Counters and histograms exposed at ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "novacron_events_in", "Samples accepted, per input topic.", ["topic"], registry=r
        )
        self.messages_in = Counter(
            "novacron_messages_in", "Messages consumed, per input topic.", ["topic"], registry=r
        )
        self.events_out = Counter(
            "novacron_events_out", "Records sent, per output topic.", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "novacron_dead_letters",
            "Messages or samples sent to the dead-letter topic.",
            ["topic", "error_kind"],
            registry=r,
        )
        self.warming_up = Counter(
            "novacron_samples_warming_up",
            "Accepted samples not predicted because the window was still short.",
            ["topic"],
            registry=r,
        )
        self.duplicates = Counter(
            "novacron_samples_redelivered",
            "Accepted samples whose event id was already in the window.",
            ["topic"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "novacron_batch_processing_seconds",
            "Time from a batch's arrival to its outputs being queued for sending.",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_retries = Counter(
            "novacron_batch_retries",
            "Batches done again because a component failed (the consumer waited).",
            ["topic", "component"],
            registry=r,
        )
        self.blocked_seconds = Counter(
            "novacron_blocked_seconds",
            "Seconds batches waited for a failing component before they went through.",
            ["topic", "component"],
            registry=r,
        )
        self.batch_size = Histogram(
            "novacron_batch_messages",
            "Messages per processing batch.",
            ["topic"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.redis_seconds = Histogram(
            "novacron_redis_roundtrip_seconds",
            "Redis pipeline round trips (window load + append per batch).",
            ["op"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        self.processor_counts = Counter(
            "novacron_processor_events",
            "The processors' named counts (predictions, warming_up, anomaly_scored, ...),"
            " per input topic.",
            ["topic", "name"],
            registry=r,
        )
        self.alerts = Counter(
            "novacron_alerts",
            "Anomaly alert records sent, by severity and status (open, update, resolve).",
            ["severity", "status"],
            registry=r,
        )
        self.scaling_actions = Counter(
            "novacron_scaling_actions",
            "Scaling action records sent, by action.",
            ["action"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "novacron_consumer_lag",
            "Messages in a partition assigned to this worker past its group's committed"
            " offset (the broker's end offset minus the committed one).",
            ["topic", "partition"],
            registry=r,
        )
        self.model_info = Gauge(
            "novacron_model_info",
            "1 for each model version this worker serves, by role (datacenter, internet,"
            " anomaly, workload, forecast).",
            ["role", "name", "version"],
            registry=r,
        )

        scored = ["role", "model", "version", "mode", "key_group"]
        self.predictions_scored = Counter(
            "novacron_predictions_scored",
            "Predictions checked against the actual they were about (online accuracy), by"
            " role (batch: the batch model's point, online: the online learner's, served:"
            " what was published), model version, link mode and key group.",
            scored,
            registry=r,
        )
        self.prediction_abs_error = Counter(
            "novacron_prediction_abs_error_mbps",
            "Sum of |actual - predicted| (Mbps) of the scored predictions; divided by the"
            " scored count over a range, the rolling MAE.",
            scored,
            registry=r,
        )
        self.predictions_within_20pct = Counter(
            "novacron_predictions_within_20pct",
            "Scored predictions within 20% of the actual; divided by the scored count, the"
            " rolling ±20% accuracy.",
            scored,
            registry=r,
        )
        self.predictions_in_interval = Counter(
            "novacron_predictions_in_interval",
            "Published predictions whose interval held the actual (interval coverage, with"
            " the served scored count).",
            scored,
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
