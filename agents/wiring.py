"""Settings -> the core's plain arguments: the registry, the models, the pipeline.

The worker and the command line (replay, evaluation, benchmarks) build what they serve
here, so ``novacron replay`` serves exactly the models and options the worker does.
Nothing here imports Faust.
"""

from __future__ import annotations

from collections.abc import Callable

from models.anomaly import AnomalyEnsemble
from models.registry import ModelRegistry
from models.scaling import CapacityController
from models.serving import (
    ModelHolder,
    ModelSource,
    RegistrySource,
    baseline_models,
    with_shipped_models,
)
from online.demand import DemandOnline, DemandOnlineSettings
from online.gain import OnlineGain
from online.link import LinkOnline, LinkOnlineSettings
from streams.errors import ConfigError
from streams.pipeline import TelemetryPipeline, build_pipeline
from streams.processors import ProcessorParts
from streams.records import ModelRef
from streams.store import WindowStore

from .settings import Settings

MODEL_CHOICES = ("registry", "baseline")
"""Where served models come from: the registry's active versions, or the harmonic mean."""


def open_registry(settings: Settings) -> ModelRegistry:
    """The registry of ``settings``, with the shipped models imported on first use."""
    return with_shipped_models(ModelRegistry.from_url(settings.registry_url, settings.artifact_dir))


def model_source(settings: Settings, models: str = "registry") -> ModelSource:
    """The source of served models: ``"registry"`` (as the worker) or ``"baseline"``."""
    if models == "registry":
        return RegistrySource(open_registry(settings))
    if models == "baseline":
        return baseline_models
    msg = f"The 'models' option must be one of {set(MODEL_CHOICES)}. Got {models!r} instead."
    raise ConfigError(msg)


def scaling_controller(settings: Settings) -> CapacityController:
    """The scaling controller ``settings`` configure (policy, capacity, lead time)."""
    try:
        return CapacityController(
            settings.scaling_capacity_per_instance,
            settings.scaling_policy,
            ready_delay_s=settings.scaling_ready_delay_s,
            min_instances=settings.scaling_min_instances,
            max_instances=settings.scaling_max_instances,
        )
    except ValueError as exc:
        msg = f"The NOVACRON_SCALING_* settings do not fit together: {exc}"
        raise ConfigError(msg) from exc


def online_links(settings: Settings, *, replay: bool = False) -> LinkOnline | None:
    """The per-link online path ``settings`` configure (``None`` when off); ``replay``
    writes ``retrain_skipped`` records where the worker requests a retrain."""
    if not settings.online:
        return None
    return LinkOnline(
        LinkOnlineSettings(
            summary_every=settings.online_summary_every,
            retrain_every=settings.online_retrain_every,
            adapt_samples=settings.online_adapt_samples,
            request_retrain=not replay,
        )
    )


def online_demand(settings: Settings) -> DemandOnline | None:
    """The per-host online demand path ``settings`` configure (``None`` when off). It
    requests no retrain (``novacron retrain`` retrains bandwidth models only), so replay
    runs it as the worker does."""
    if not settings.online:
        return None
    return DemandOnline(
        DemandOnlineSettings(
            summary_every=settings.online_summary_every,
            adapt_samples=settings.online_adapt_samples,
        )
    )


def processor_parts(
    settings: Settings, models: ModelHolder, *, replay: bool = False
) -> ProcessorParts:
    """What the processors are built from, as ``settings`` configure them (``replay``:
    for ``novacron replay``, which requests no retrain)."""

    def workload_version() -> ModelRef | None:
        found = models.workload() if settings.workload else None
        return None if found is None else ModelRef(found.name, found.version)

    return ProcessorParts(
        predictors=models.predictor_for,
        window_size=settings.window_size,
        bandwidth_adapter=OnlineGain() if settings.online_gain else None,
        anomaly=AnomalyEnsemble() if settings.anomaly else None,
        alert_policy=settings.alert_policy(),
        workload=models.workload if settings.workload else None,
        workload_history=settings.workload_history,
        workload_bucket_s=settings.workload_bucket_s,
        workload_version=workload_version,
        forecaster=models.forecaster,
        scaling=scaling_controller(settings) if settings.scaling else None,
        scaling_metric=settings.scaling_metric,
        online_links=online_links(settings, replay=replay),
        online_demand=online_demand(settings),
    )


def pipeline_for(
    settings: Settings,
    models: ModelHolder,
    store: WindowStore,
    clock: Callable[[], float],
    *,
    with_scores: bool = False,
    replay: bool = False,
) -> TelemetryPipeline:
    """The pipeline the worker runs (and replay, with an in-memory store and scores)."""
    return build_pipeline(
        processor_parts(settings, models, replay=replay),
        store,
        clock,
        settings.topics,
        with_scores=with_scores,
    )
