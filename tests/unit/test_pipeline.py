"""The pipeline's guarantees: a processor bug costs one sample, dead letters always fit."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

import schemas
from models.baseline import HarmonicMeanPredictor
from streams.pipeline import RawMessage, build_pipeline
from streams.processors import BandwidthProcessor, ProcessorParts, ProcessorResult
from streams.records import LinkSample, Score, SourceRef
from streams.store import InMemoryWindowStore
from streams.windows import BatchWindows

PARTS = ProcessorParts(lambda mode: HarmonicMeanPredictor(mode, window_steps=2))


def link_messages(n: int) -> list[RawMessage]:
    return [
        RawMessage(
            orjson.dumps(
                {"event_id": f"e{i}", "link_id": "l1", "ts": 1.7e9 + i, "mode": "internet",
                 "bandwidth_mbps": 100.0 + i}
            ),
            SourceRef("telemetry.link.v1", 0, i, key="l1"),
        )
        for i in range(n)
    ]  # fmt: skip


class Fragile(BandwidthProcessor):
    """The bandwidth processor with a bug that fires on chosen events."""

    name = "fragile"

    def __init__(self, parts: ProcessorParts, bad: set[str]) -> None:
        super().__init__(parts.predictors, parts.window_size)
        self.bad = bad

    def process(
        self, samples: Sequence[LinkSample], windows: BatchWindows, scores: Sequence[Score] | None
    ) -> ProcessorResult:
        for s in samples:
            if s.event_id in self.bad:
                raise ZeroDivisionError(f"division by zero at {s.event_id}")
        return super().process(samples, windows, scores)


def run(bad: set[str], n: int = 8) -> list[dict[str, Any]]:
    registry: Any = {"link": (lambda parts: Fragile(parts, bad),), "host": ()}
    pipeline = build_pipeline(PARTS, InMemoryWindowStore(), lambda: 1.8e9, registry=registry)
    outcome = asyncio.run(pipeline.handle_link(link_messages(n)))
    records = []
    for r in outcome.outputs:
        value = orjson.loads(r.value)
        assert schemas.validator(r.topic).is_valid(value), value
        records.append({"topic": r.topic, **value})
    return records


def test_a_processor_raising_on_one_sample_dead_letters_only_that_sample() -> None:
    records = run({"e4"})
    predicted = [r["source_event_ids"][0] for r in records if "prediction_id" in r]
    assert predicted == ["e1", "e2", "e3", "e5", "e6", "e7"]  # e0 warms up
    dead = [r for r in records if r["topic"] == "telemetry.dlq.v1"]
    assert len(dead) == 1
    assert dead[0]["error_kind"] == "processing_error"
    assert dead[0]["reason"] == (
        "the fragile processor raised on event e4: ZeroDivisionError: division by zero at e4"
    )
    assert dead[0]["source"]["offset"] == 4
    assert orjson.loads(base64.b64decode(dead[0]["original_bytes_b64"]))["event_id"] == "e4"


def test_the_same_batch_without_the_bug_gives_the_same_other_records() -> None:
    clean = [r for r in run(set()) if r["topic"] != "telemetry.dlq.v1"]
    buggy = [r for r in run({"e4"}) if r["topic"] != "telemetry.dlq.v1"]
    assert buggy == [r for r in clean if r["source_event_ids"] != ["e4"]]


def test_a_huge_malformed_message_gives_a_dead_letter_that_fits() -> None:
    raw = b'{"link_id": "' + b"x" * 900_000 + b'", "ts": oops}'
    pipeline = build_pipeline(PARTS, InMemoryWindowStore(), lambda: 1.8e9)
    message = RawMessage(raw, SourceRef("telemetry.link.v1", 3, 77, key="x"))
    outcome = asyncio.run(pipeline.handle_link([message, *link_messages(4)]))
    dead = [r for r in outcome.outputs if r.topic == "telemetry.dlq.v1"]
    assert len(dead) == 1
    assert len(dead[0].value) < 100_000  # the broker's default limit is 1 MB
    value = orjson.loads(dead[0].value)
    assert schemas.validator("telemetry.dlq.v1").is_valid(value)
    assert value["original_truncated"] is True
    assert value["original_size_bytes"] == len(raw)
    assert value["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert base64.b64decode(value["original_bytes_b64"]) == raw[:65_536]
    assert value["source"]["partition"] == 3 and value["source"]["offset"] == 77
    assert outcome.counts["predictions"] == 3  # the good ones go on (the first warms up)


def test_redelivered_batch_messages_older_than_the_loaded_window_are_recognised() -> None:
    # Three 100-sample messages were delivered and stored; the broker redelivers from the
    # first (its offset was not committed). The window loaded holds the last 2 samples only.
    store = InMemoryWindowStore(60)
    pipeline = build_pipeline(PARTS, store, lambda: 1.8e9)

    def message(offset: int) -> RawMessage:
        samples = [
            {"event_id": f"m{offset}-{i}", "link_id": "l1", "ts": 1.7e9 + 100 * offset + i,
             "mode": "internet", "bandwidth_mbps": 100.0 + i % 7}
            for i in range(100)
        ]  # fmt: skip
        return RawMessage(
            orjson.dumps({"samples": samples}), SourceRef("telemetry.link.v1", 0, offset)
        )

    async def scenario() -> tuple[int, int, int, list[str]]:
        for offset in range(3):
            await pipeline.handle_link([message(offset)])
        again = await pipeline.handle_link([message(0), message(1), message(3)])
        window = await store.load("link", ["l1"])
        return (
            len(again.outputs),
            again.duplicates,
            again.counts["predictions"],
            [e.event_id for e in window["l1"]],
        )

    outputs, duplicates, predictions, window = asyncio.run(scenario())
    assert duplicates == 200
    assert predictions == outputs == 100  # only the new message is served
    assert window == [f"m3-{i}" for i in range(40, 100)]


class NotANumber(BandwidthProcessor):
    """A processor with a bug that lets a NaN into one record."""

    name = "nan"

    def process(
        self, samples: Sequence[LinkSample], windows: BatchWindows, scores: Sequence[Score] | None
    ) -> ProcessorResult:
        result = super().process(samples, windows, scores)
        records = list(result.records)
        if records:
            records[0] = dataclasses.replace(records[0], confidence=float("nan"))  # type: ignore[type-var]
        result.records = records
        return result


def test_a_record_that_cannot_be_encoded_becomes_a_dead_letter() -> None:
    registry: Any = {"link": (lambda parts: NotANumber(parts.predictors),), "host": ()}
    pipeline = build_pipeline(PARTS, InMemoryWindowStore(), lambda: 1.8e9, registry=registry)
    outcome = asyncio.run(pipeline.handle_link(link_messages(5)))
    values = [orjson.loads(r.value) for r in outcome.outputs]
    dead = [v for v in values if "error_kind" in v]
    assert len(dead) == 1 and dead[0]["error_kind"] == "processing_error"
    assert dead[0]["reason"].startswith("a BandwidthPrediction record could not be encoded")
    assert len([v for v in values if "prediction_id" in v]) == 3  # the others go on
