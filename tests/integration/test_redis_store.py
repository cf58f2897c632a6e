"""The Redis window store on the real server: atomic, conditional, batch-sized appends."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from agents.settings import Settings
from streams.errors import StoreConflict, StoreUnavailable
from streams.records import WindowEntry
from streams.store import RedisWindowStore

pytestmark = pytest.mark.integration


def entries(prefix: str, n: int, start: int = 0) -> list[WindowEntry]:
    return [
        WindowEntry(f"{prefix}{i}", 1.7e9 + i, (float(i), 1.0)) for i in range(start, start + n)
    ]


def store(url: str, capacity: int = 60) -> RedisWindowStore:
    return RedisWindowStore(
        aioredis.from_url(url), capacity=capacity, prefix=f"novacron-test:{uuid.uuid4().hex}",
        unavailable=(redis.exceptions.RedisError, OSError),
    )  # fmt: skip


def test_append_checks_the_newest_entry_and_writes_all_or_nothing() -> None:
    async def scenario() -> None:
        s = store(Settings().redis_dsn)
        try:
            await s.append(
                "link", {"a": entries("e", 3), "b": entries("f", 2)}, {"a": None, "b": None}
            )
            # Another worker appended to "b": a batch that loaded "b" empty must not append.
            with pytest.raises(StoreConflict, match="'b'"):
                await s.append("link", {"a": entries("e", 2, 3), "b": entries("f", 1, 2)},
                               {"a": "e2", "b": None})  # fmt: skip
            loaded = await s.load("link", ["a", "b"])
            assert [e.event_id for e in loaded["a"]] == ["e0", "e1", "e2"]  # nothing of it
            assert [e.event_id for e in loaded["b"]] == ["f0", "f1"]
            await s.append("link", {"a": entries("e", 2, 3)}, {"a": "e2"})
            assert [e.event_id for e in (await s.load("link", ["a"]))["a"]][-1] == "e4"
        finally:
            await s.close()

    asyncio.run(scenario())


def test_state_is_written_with_the_entries_or_not_at_all() -> None:
    async def scenario() -> None:
        s = store(Settings().redis_dsn)
        try:
            await s.append(
                "host",
                {"a": entries("e", 2)},
                {"a": None},
                {"a": {"anomaly.head": b"h1", "anomaly.v0": b"\x00\x01" * 600}},
            )
            got = await s.load_state("host", ["a", "b"], ["anomaly.head", "anomaly.v0", "x"])
            assert got == {"a": {"anomaly.head": b"h1", "anomaly.v0": b"\x00\x01" * 600}}
            # A batch that lost the race writes neither its entries nor its state.
            with pytest.raises(StoreConflict):
                await s.append(
                    "host", {"a": entries("e", 1, 2)}, {"a": "e0"}, {"a": {"anomaly.head": b"h2"}}
                )
            assert (await s.load_state("host", ["a"], ["anomaly.head"]))["a"] == {
                "anomaly.head": b"h1"
            }
            # The next batch updates one field and leaves the others.
            await s.append(
                "host", {"a": entries("e", 1, 2)}, {"a": "e1"}, {"a": {"anomaly.head": b"h3"}}
            )
            got = await s.load_state("host", ["a"], ["anomaly.head", "anomaly.v0"])
            assert got["a"] == {"anomaly.head": b"h3", "anomaly.v0": b"\x00\x01" * 600}
            ttl = await s.client.ttl(s.state_key("host", "a"))
            assert 0 < ttl <= s.ttl_s
        finally:
            await s.close()

    asyncio.run(scenario())


def test_a_batch_of_5000_entries_for_one_key_is_appended_and_capped() -> None:
    async def scenario() -> None:
        s = store(Settings().redis_dsn, capacity=60)
        try:
            await s.append("link", {"a": entries("e", 5000)}, {"a": None})
            window = (await s.load("link", ["a"]))["a"]
            assert [e.event_id for e in window] == [f"e{i}" for i in range(4940, 5000)]
        finally:
            await s.close()

    asyncio.run(scenario())


def test_two_workers_read_each_others_appends_through_their_decoded_entry_memory() -> None:
    """A partition that moves between workers: each worker's store remembers decoded
    entries, and still loads exactly what Redis holds, whoever appended it."""

    async def scenario() -> None:
        a = store(Settings().redis_dsn, capacity=5)
        b = RedisWindowStore(
            aioredis.from_url(Settings().redis_dsn), capacity=5, prefix=a.prefix,
            unavailable=(redis.exceptions.RedisError, OSError),
        )  # fmt: skip
        try:
            newest: str | None = None
            for i in range(12):
                writer, reader = (a, b) if i % 3 else (b, a)
                await writer.append("link", {"k": entries("e", 1, i)}, {"k": newest})
                newest = f"e{i}"
                for s in (reader, writer):
                    window = (await s.load("link", ["k"]))["k"]
                    want = [f"e{j}" for j in range(max(0, i - 4), i + 1)]
                    assert [e.event_id for e in window] == want
                    assert [e.values[0] for e in window] == [
                        float(j) for j in range(max(0, i - 4), i + 1)
                    ]
            assert a._decoder.hits > 0 and b._decoder.hits > 0
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_an_unreachable_redis_is_store_unavailable() -> None:
    async def scenario() -> None:
        s = store("redis://127.0.0.1:1/0")
        try:
            with pytest.raises(StoreUnavailable, match="loading 1 link windows"):
                await s.load("link", ["a"])
            with pytest.raises(StoreUnavailable, match="appending to 1 link windows"):
                await s.append("link", {"a": entries("e", 1)})
        finally:
            await s.close()

    asyncio.run(scenario())
