"""Invariants of decoding, windows, the processor and the pipeline on generated inputs."""

from __future__ import annotations

import asyncio
import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from models.baseline import HarmonicMeanPredictor
from online.gain import OnlineGain
from streams.codec import decode_link
from streams.errors import DecodeError
from streams.pipeline import RawMessage, build_pipeline
from streams.processors import BandwidthProcessor, ProcessorParts
from streams.records import LinkSample, SourceRef, WindowEntry
from streams.store import InMemoryWindowStore, decode_entry, encode_entry
from streams.windows import CappedWindow
from tests.helpers import run_processor

SRC = SourceRef("telemetry.link.v1", 0, 0)
MEASURE = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=2e6),
    st.integers(min_value=-5, max_value=10**7),
    st.booleans(),
    st.text(max_size=3),
)
SAMPLE = st.fixed_dictionaries(
    {
        "link_id": st.one_of(st.text(min_size=0, max_size=5), st.integers(-(2**63), 2**63 - 1)),
        "ts": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=5e9),
            st.text(max_size=2),
        ),
        "mode": st.sampled_from(["datacenter", "internet", "dc"]),
    },
    optional={
        m: MEASURE
        for m in (
            "bandwidth_mbps",
            "latency_ms",
            "packet_loss_pct",
            "jitter_ms",
            "throughput_mbps",
            "event_id",
            "extra",
        )
    },
)


def decoding_agrees_with_the_schema(sample: dict[str, object]) -> bool:
    expected_valid = schemas.validator("telemetry.link.v1").is_valid(sample)
    ok, dead = decode_link(orjson.dumps(sample), SRC)
    return (len(ok) == 1 and not dead) == expected_valid and len(ok) + len(dead) == 1


@given(SAMPLE)
@settings(max_examples=300, deadline=None)
def test_decoder_accepts_exactly_what_the_schema_accepts(sample: dict[str, object]) -> None:
    assert decoding_agrees_with_the_schema(sample)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_decoding_arbitrary_bytes_never_raises(raw: bytes) -> None:
    try:
        ok, dead = decode_link(raw, SRC)
    except DecodeError:  # pragma: no cover - decode_link reports, never raises
        raise AssertionError("decode_link raised instead of returning a dead letter") from None
    assert len(ok) + len(dead) >= 1
    assert all(d.original == raw for d in dead)


VALUES = st.lists(
    st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64), st.just(math.nan)),
    min_size=5,
    max_size=5,
)


@given(st.text(min_size=1, max_size=20), st.floats(min_value=1e9, max_value=3e9), VALUES)
def test_window_entry_round_trips(event_id: str, ts: float, values: list[float]) -> None:
    entry = WindowEntry(event_id, ts, tuple(values))
    back = decode_entry(encode_entry(entry))
    assert back.event_id == entry.event_id and back.ts == entry.ts
    assert all(
        (math.isnan(a) and math.isnan(b)) or a == b
        for a, b in zip(back.values, entry.values, strict=True)
    )


@given(st.lists(st.integers(0, 1000), max_size=80), st.integers(1, 20))
def test_capped_window_keeps_the_newest(values: list[int], capacity: int) -> None:
    window = CappedWindow(capacity)
    state = window.initialize()
    for v in values:
        state = window.agg(state, WindowEntry(str(v), float(v), ()))
    assert [e.event_id for e in window.result(state)] == [str(v) for v in values[-capacity:]]


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.floats(1.0, 1000.0)), min_size=1, max_size=60),
    st.integers(1, 7),
)
@settings(deadline=None)
def test_processor_batched_in_chunks_equals_whole(
    stream: list[tuple[str, float]], chunk: int
) -> None:
    samples = [
        LinkSample(f"e{i}", link, 1.7e9 + i, "internet", bandwidth_mbps=bw)
        for i, (link, bw) in enumerate(stream)
    ]
    proc = BandwidthProcessor(lambda m: HarmonicMeanPredictor(m, window_steps=3), window_size=8)
    whole = run_processor(proc, samples, {})
    windows: dict[str, list[WindowEntry]] = {}
    chunked = []
    for start in range(0, len(samples), chunk):
        result = run_processor(proc, samples[start : start + chunk], windows)
        for key, new in result.appends.items():
            windows[key] = (windows.get(key, []) + new)[-8:]
        chunked.extend(result.predictions)
    assert [p.to_record(0.0) for p in chunked] == [p.to_record(0.0) for p in whole.predictions]


def _pipeline_outputs(
    messages: list[RawMessage], chunks: list[int], online: bool
) -> tuple[list[bytes], list[bytes]]:
    parts = ProcessorParts(
        lambda m: HarmonicMeanPredictor(m, window_steps=4), 8, OnlineGain() if online else None
    )
    pipeline = build_pipeline(parts, InMemoryWindowStore(8), clock=lambda: 0.0, with_scores=True)

    async def run() -> tuple[list[bytes], list[bytes]]:
        outputs: list[bytes] = []
        scores: list[bytes] = []
        start = 0
        for size in chunks:
            outcome = await pipeline.handle_link(messages[start : start + size])
            outputs += [r.value for r in outcome.outputs]
            scores += [r.value for r in outcome.scores]
            start += size
        return outputs, scores

    return asyncio.run(run())


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.floats(1.0, 1000.0)), min_size=1, max_size=50),
    st.lists(st.integers(1, 9), min_size=1, max_size=50),
    st.booleans(),
)
@settings(deadline=None, max_examples=60)
def test_pipeline_fed_in_batches_equals_one_batch(
    stream: list[tuple[str, float]], sizes: list[int], online: bool
) -> None:
    """Batching never changes a record: windows, stored predictions and the gain included."""
    messages = [
        RawMessage(
            orjson.dumps(
                {"link_id": link, "ts": 1.7e9 + i, "mode": "internet", "bandwidth_mbps": bw}
            ),
            SourceRef("telemetry.link.v1", 0, i),
        )
        for i, (link, bw) in enumerate(stream)
    ]
    chunks: list[int] = []
    for size in sizes * (len(messages) // len(sizes) + 1):
        if sum(chunks) >= len(messages):
            break
        chunks.append(size)

    whole = _pipeline_outputs(messages, [len(messages)], online)
    assert _pipeline_outputs(messages, chunks, online) == whole


def _redeliver(n: int, redeliver: int) -> tuple[list[bytes], list[bytes], int, list[str]]:
    parts = ProcessorParts(lambda m: HarmonicMeanPredictor(m, window_steps=3), 8, OnlineGain())
    store = InMemoryWindowStore(8)
    pipeline = build_pipeline(parts, store, clock=lambda: 0.0)
    messages = [
        RawMessage(
            orjson.dumps({"link_id": "l", "ts": 1.7e9 + i, "mode": "internet",
                          "bandwidth_mbps": 100.0 + i % 5}),
            SourceRef("telemetry.link.v1", 0, i),
        )
        for i in range(n)
    ]  # fmt: skip

    async def run() -> tuple[list[bytes], list[bytes], int, list[str]]:
        first = await pipeline.handle_link(messages)
        again = await pipeline.handle_link(messages[-redeliver:])
        window = await store.load("link", ["l"])
        return (
            [r.value for r in first.outputs],
            [r.value for r in again.outputs],
            again.duplicates,
            [e.event_id for e in window["l"]],
        )

    return asyncio.run(run())


@given(st.integers(5, 40), st.integers(1, 40))
@settings(deadline=None, max_examples=40)
def test_redelivered_tail_is_recognised_and_adds_nothing(n: int, redeliver: int) -> None:
    """At-least-once: a redelivered tail of stored messages, however long, is recognised
    (nothing appended twice) and not served again (its outputs were delivered)."""
    redeliver = min(redeliver, n)
    first, again, duplicates, window = _redeliver(n, redeliver)
    assert first and duplicates == redeliver
    assert again == []
    assert window == [f"telemetry.link.v1:0:{i}" for i in range(n)][-8:]
