"""The consumer group as the broker sees it: members, their partitions and lag.

Lag is the broker's figure, the same one Kafka's own tools print: a partition's end
offset minus the group's committed offset. The worker exports it for the partitions it
owns (``novacron_consumer_lag``); ``novacron status`` shows it for the whole group. A
partition the group never committed on counts from its earliest offset (the worker
starts there: ``auto_offset_reset`` is earliest).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from .connections import kafka_options
from .settings import Settings


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of a topic the group reads.

    Attributes:
        committed: the group's committed offset (the next message it will read), or
            ``None`` when it never committed on this partition.
        end: the broker's end offset (the offset the next message written will get).
        lag: messages written and not yet committed by the group.
    """

    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A worker in the group: its name (the static instance id where the broker reports
    it, else the client id: ``novacron-<hostname>-<web port>`` for a NovaCron worker), its
    host and the partitions it owns."""

    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]


@dataclass(slots=True)
class GroupView:
    """The group's state, members and per-partition lag."""

    group: str
    state: str
    members: list[GroupMember] = field(default_factory=list)
    partitions: list[PartitionLag] = field(default_factory=list)

    def owner(self, topic: str, partition: int) -> GroupMember | None:
        for member in self.members:
            if (topic, partition) in member.partitions:
                return member
        return None


class GroupInspector:
    """An admin client and a consumer of no group (offsets and bounded reads) on the broker.

    Open with :meth:`start`, close with :meth:`stop`; a caller polls :meth:`lag` or
    :meth:`describe` as often as it likes (each is a few metadata and offset requests).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        options = kafka_options(settings)
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=10_000, **options
        )
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            enable_auto_commit=False,
            request_timeout_ms=10_000,
            **options,
        )

    async def start(self) -> None:
        try:
            await self._admin.start()
            await self._offsets.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await self._offsets.stop()
        await self._admin.close()

    async def partitions_of(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Every partition of ``topics``, from the broker's metadata (topics that do not
        exist have none, and are not created by asking)."""
        wanted = list(topics)
        existing = set(await self._admin.list_topics())
        asked = [topic for topic in wanted if topic in existing]
        described = await self._admin.describe_topics(asked) if asked else []
        counts = {
            entry["topic"]: sorted(p["partition"] for p in entry["partitions"])
            for entry in described
            if not entry["error_code"]
        }
        return [TopicPartition(topic, p) for topic in wanted for p in counts.get(topic, [])]

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The broker's end offset of each partition."""
        tps = list(partitions)
        ends: dict[TopicPartition, int] = await self._offsets.end_offsets(tps) if tps else {}
        return ends

    async def read_since(
        self, partitions: list[TopicPartition], since_ms: int, cap: int
    ) -> list[bytes]:
        """The values written to ``partitions`` from ``since_ms`` (Kafka record time) up to
        their end offsets now, at most ``cap`` (a bounded read, for a recent tally)."""
        if not partitions:
            return []
        reader = self._offsets
        reader.assign(partitions)
        starts = await reader.offsets_for_times(dict.fromkeys(partitions, since_ms))
        ends = await reader.end_offsets(partitions)
        todo = 0
        for tp in partitions:
            found = starts.get(tp)
            start = ends[tp] if found is None else found.offset
            reader.seek(tp, start)
            todo += ends[tp] - start
        values: list[bytes] = []
        while len(values) < min(todo, cap):
            batches = await reader.getmany(timeout_ms=1000, max_records=1000)
            if not batches:
                break
            values.extend(m.value or b"" for messages in batches.values() for m in messages)
        return values[:cap]

    async def lag(self, group: str, partitions: Iterable[TopicPartition]) -> list[PartitionLag]:
        """The group's lag on ``partitions``, in their order."""
        tps = list(partitions)
        if not tps:
            return []
        committed = await self._admin.list_consumer_group_offsets(group, partitions=tps)
        ends: dict[TopicPartition, int] = await self._offsets.end_offsets(tps)
        missing = [tp for tp in tps if _offset(committed.get(tp)) is None]
        starts: dict[TopicPartition, int] = (
            await self._offsets.beginning_offsets(missing) if missing else {}
        )
        rows: list[PartitionLag] = []
        for tp in tps:
            at = _offset(committed.get(tp))
            end = ends[tp]
            behind = end - (at if at is not None else starts[tp])
            rows.append(PartitionLag(tp.topic, tp.partition, at, end, max(behind, 0)))
        return rows

    async def describe(self, group: str, topics: Iterable[str]) -> GroupView:
        """The group's state and members (from the coordinator) and its lag on every
        partition of ``topics``."""
        responses = await self._admin.describe_consumer_groups([group])
        view = GroupView(group, "Dead")
        for response in responses:
            for entry in response.groups:
                view = GroupView(group, entry[2] or "Empty")
                for member in entry[5]:
                    view.members.append(_member(member))
        view.partitions = await self.lag(group, await self.partitions_of(topics))
        return view


def _offset(meta: Any) -> int | None:
    if meta is None or meta.offset is None or meta.offset < 0:
        return None
    return int(meta.offset)


def _member(raw: tuple[Any, ...]) -> GroupMember:
    """A DescribeGroups member tuple: (member_id, [group_instance_id,] client_id, host,
    metadata, assignment); the assignment is the consumer protocol's (Faust's assignor
    writes its own data in the user data, after the standard partition list)."""
    member_id, client_id, host, assignment = raw[0], raw[-4], raw[-3], raw[-1]
    instance = raw[1] if len(raw) == 6 and raw[1] else None
    owned: list[tuple[str, int]] = []
    if assignment:
        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
        owned = sorted((tp.topic, tp.partition) for tp in decoded.partitions())
    return GroupMember(
        str(member_id), str(instance or client_id), str(host).lstrip("/"), tuple(owned)
    )
