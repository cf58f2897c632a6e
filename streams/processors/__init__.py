"""Processors per input topic, and their registration.

A processor is one module here plus one line in :data:`PROCESSORS`: the pipeline
builder (:func:`streams.pipeline.build_pipeline`) makes every registered processor
of an input from the same :class:`ProcessorParts`.
"""

from __future__ import annotations

from .anomaly import AnomalyProcessor
from .bandwidth import BandwidthProcessor
from .base import Processor, ProcessorFactory, ProcessorParts, ProcessorResult
from .scaling import ScalingProcessor
from .workload import WorkloadProcessor

PROCESSORS: dict[str, tuple[ProcessorFactory, ...]] = {
    "link": (BandwidthProcessor.from_parts, AnomalyProcessor.for_links),
    "host": (AnomalyProcessor.for_hosts, WorkloadProcessor.from_parts, ScalingProcessor.from_parts),
}
"""Processor factories per input role (``streams.topics.INPUT_ROLES``), run in this order."""

__all__ = [
    "PROCESSORS",
    "AnomalyProcessor",
    "BandwidthProcessor",
    "Processor",
    "ProcessorFactory",
    "ProcessorParts",
    "ProcessorResult",
    "ScalingProcessor",
    "WorkloadProcessor",
]
