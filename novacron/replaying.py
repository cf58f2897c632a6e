"""Glue between ``novacron replay`` and the stream core: models, store, output file."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from agents.settings import Settings
from agents.wiring import model_source, pipeline_for
from models.serving import ModelHolder, ModelSource
from streams.pipeline import TelemetryPipeline
from streams.replay import ReplayReport, replay
from streams.sources import ReadOptions
from streams.store import InMemoryWindowStore


@dataclass(slots=True)
class ReplayRun:
    """What a replay wrote, and which model versions served it (mode -> name:version)."""

    report: ReplayReport
    served: dict[str, str]


def replay_pipeline(settings: Settings, models: ModelHolder) -> TelemetryPipeline:
    """The worker's pipeline, with an in-memory window store and score lines."""
    return pipeline_for(
        settings,
        models,
        InMemoryWindowStore(settings.window_size),
        time.time,
        with_scores=True,
        replay=True,
    )


def run_replay(
    settings: Settings,
    input_path: Path,
    output_path: Path,
    *,
    options: ReadOptions | None = None,
    models: str = "registry",
    source: ModelSource | None = None,
    show_progress: bool = True,
) -> ReplayRun:
    """Replay ``input_path`` into ``output_path`` (JSON lines).

    Serves the registry's active versions (the shipped models on a fresh registry), as
    the worker does; ``models="baseline"`` serves the harmonic mean instead, and
    ``source`` overrides both (evaluation passes one it has already loaded).
    """
    holder = ModelHolder(source or model_source(settings, models))
    pipeline = replay_pipeline(settings, holder)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    size = input_path.stat().st_size if input_path.is_file() else None
    with (
        output_path.open("wb") as handle,
        tqdm(unit="row", disable=not show_progress or (size or 0) < 1_000_000, leave=False) as bar,
    ):

        def write(line: bytes) -> None:
            handle.write(line)
            handle.write(b"\n")

        report = asyncio.run(replay(input_path, pipeline, write, options, progress=bar.update))
    return ReplayRun(report, holder.describe())
