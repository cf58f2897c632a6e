"""Invariants of decoding, windows and the processor on generated inputs."""

from __future__ import annotations

import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from models.baseline import HarmonicMeanPredictor
from streams.codec import decode_link
from streams.errors import DecodeError
from streams.processors import BandwidthProcessor
from streams.records import LinkSample, SourceRef, WindowEntry
from streams.store import decode_entry, encode_entry
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
