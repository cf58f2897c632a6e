"""The window stores' memory of decoded entries: same entries, bounded, and faster."""

from __future__ import annotations

import asyncio
import math

import pytest

from streams.records import WindowEntry
from streams.store import EntryDecoder, InMemoryWindowStore, decode_entry, encode_entry


def entry(i: int) -> WindowEntry:
    return WindowEntry(f"e{i}", 1.7e9 + i, (float(i), math.nan), predicted=i + 0.5, position=(0, i))


def test_decoded_entries_equal_a_fresh_decode_and_repeats_are_hits() -> None:
    d = EntryDecoder(capacity=1000)
    raws = [encode_entry(entry(i)) for i in range(50)]
    first = d.decode_all(raws)
    assert d.misses == 50 and d.hits == 0
    again = d.decode_all(raws)
    assert d.hits == 50
    for raw, a, b in zip(raws, first, again, strict=True):
        fresh = decode_entry(raw)
        assert a is b
        assert (a.event_id, a.ts, a.predicted, a.position) == (
            fresh.event_id, fresh.ts, fresh.predicted, fresh.position,
        )  # fmt: skip
        assert a.values[0] == fresh.values[0] and math.isnan(a.values[1])


def test_memory_stays_within_capacity_and_recent_entries_survive() -> None:
    d = EntryDecoder(capacity=100)
    for i in range(10_000):
        d.decode(encode_entry(entry(i)))
        assert len(d._new) + len(d._old) <= 100
    recent = encode_entry(entry(9_999))
    hits = d.hits
    d.decode(recent)
    assert d.hits == hits + 1
    with pytest.raises(ValueError, match="capacity"):
        EntryDecoder(capacity=1)


def test_a_window_loaded_batch_after_batch_decodes_only_its_new_entries() -> None:
    store = InMemoryWindowStore(60)

    async def scenario() -> list[int]:
        misses = []
        for i in range(100):
            await store.append("link", {"l1": [entry(i)], "l2": [entry(1000 + i)]})
            before = store._decoder.misses
            loaded = await store.load("link", ["l1", "l2"])
            misses.append(store._decoder.misses - before)
            assert [e.event_id for e in loaded["l1"]] == [
                f"e{j}" for j in range(max(0, i - 59), i + 1)
            ]
        return misses

    misses = asyncio.run(scenario())
    assert misses[0] == 2 and set(misses[1:]) == {2}  # one new entry per window per batch
