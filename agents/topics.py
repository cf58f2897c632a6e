"""Create the topics the worker reads and writes, when they do not exist yet."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .connections import kafka_options
from .settings import Settings

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    """Create missing topics with ``settings.topic_partitions``; return those created.

    Existing topics are left as they are (their partition count is the operator's).
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **kafka_options(settings)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in settings.topics.kafka_topics() if name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, settings.topic_partitions, replication_factor) for n in missing]
                )
            except TopicAlreadyExistsError:
                log.info("Another worker created the topics first")
        return missing
    finally:
        await admin.close()
