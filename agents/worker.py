"""``novacron worker``: run the Faust app in this process until stopped."""

from __future__ import annotations

import asyncio

import faust

from models.serving import ModelHolder, ModelSource

from .app import create_app
from .settings import Settings
from .topics import ensure_topics
from .wiring import model_source


def run_worker(
    settings: Settings, *, loglevel: str = "info", source: ModelSource | None = None
) -> None:
    """Start a worker of the consumer group ``settings.app_id``; blocks until stopped.

    Several workers (on one machine give each its own ``NOVACRON_WEB_PORT``) share the
    input partitions; windows live in Redis, so any worker can take any partition.
    """
    asyncio.run(ensure_topics(settings))
    models = ModelHolder(source or model_source(settings))
    app, _ctx = create_app(settings, models)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
