"""Create the topics the worker reads and writes, when they do not exist yet."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from novacron.settings import Settings

log = logging.getLogger(__name__)


def all_topics(settings: Settings) -> list[str]:
    """Every topic of the system, inputs first."""
    t = settings.topics
    return [t.link, t.host, t.predictions, t.alerts, t.workload, t.scaling, t.dlq, t.model_events]


async def ensure_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    """Create missing topics with ``settings.topic_partitions``; return those created.

    Existing topics are left as they are (their partition count is the operator's).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in all_topics(settings) if name not in existing]
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
