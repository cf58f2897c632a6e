"""Glue between ``novacron replay`` and the stream core: models, store, output file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from models.serving import ModelHolder, ModelSource, baseline_models
from online.gain import OnlineGain
from streams.pipeline import OutputTopics, TelemetryPipeline
from streams.processor import BandwidthProcessor
from streams.replay import ReplayOptions, ReplayReport, replay
from streams.store import InMemoryWindowStore

from .settings import Settings


def build_replay_pipeline(
    settings: Settings, source: ModelSource | None = None
) -> TelemetryPipeline:
    """The worker's pipeline with an in-memory window store and the same models."""
    models = ModelHolder(source or baseline_models)
    processor = BandwidthProcessor(
        models.predictor_for,
        settings.window_size,
        OnlineGain() if settings.online_gain else None,
    )
    topics = OutputTopics(predictions=settings.topics.predictions, dlq=settings.topics.dlq)
    return TelemetryPipeline(
        processor, InMemoryWindowStore(settings.window_size), time.time, topics
    )


def run_replay(
    settings: Settings,
    input_path: Path,
    output_path: Path,
    *,
    kind: str | None = None,
    key: str | None = None,
    mode: str = "datacenter",
    rename: dict[str, str] | None = None,
    source: ModelSource | None = None,
    show_progress: bool = True,
) -> ReplayReport:
    """Replay ``input_path`` into ``output_path`` (JSON lines)."""
    options = ReplayOptions(kind=kind, key=key, mode=mode, rename=rename or {})
    pipeline = build_replay_pipeline(settings, source)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    size = input_path.stat().st_size if input_path.is_file() else None
    with (
        output_path.open("wb") as handle,
        tqdm(unit="row", disable=not show_progress or (size or 0) < 1_000_000, leave=False) as bar,
    ):

        def write(line: dict[str, Any]) -> None:
            handle.write(orjson.dumps(line))
            handle.write(b"\n")

        return asyncio.run(replay(input_path, pipeline, write, options, progress=bar.update))
