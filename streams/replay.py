"""``novacron replay``: run the pipeline over a telemetry file, no broker.

Writes one JSON line per record the worker would have sent, ``{"topic", "key",
"value"}`` with ``value`` the exact bytes the worker sends, plus one ``scores.v1`` line
per accepted input event. Files are read by :mod:`streams.sources`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .codec import EncodedRecord
from .pipeline import BatchOutcome, RawMessage, TelemetryPipeline
from .sources import ReadOptions, read_messages


@dataclass(slots=True)
class ReplayReport:
    """Counts of what one replay read and wrote."""

    rows: int = 0
    accepted: int = 0
    predictions: int = 0
    dead_letters: int = 0
    scores: int = 0
    records_by_topic: dict[str, int] = field(default_factory=dict)


async def replay(
    path: Path,
    pipeline: TelemetryPipeline,
    write: Callable[[bytes], None],
    options: ReadOptions | None = None,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Run ``pipeline`` over ``path`` and ``write`` every output and score line.

    ``batch_size`` rows go through the pipeline together; the outputs do not depend on it.
    """
    report = ReplayReport()
    pending: list[tuple[str, RawMessage]] = []

    async def flush() -> None:
        # Consecutive messages of one input go through the pipeline together, in order.
        start = 0
        while start < len(pending):
            role = pending[start][0]
            end = start
            while end < len(pending) and pending[end][0] == role:
                end += 1
            batch = [m for _, m in pending[start:end]]
            _record(await pipeline.handle(role, batch), write, report)
            start = end
        if progress is not None:
            progress(len(pending))
        pending.clear()

    for role, raw, source in read_messages(path, options or ReadOptions()):
        report.rows += 1
        pending.append((role, RawMessage(raw, source)))
        if len(pending) >= batch_size:
            await flush()
    await flush()
    return report


def output_line(record: EncodedRecord) -> bytes:
    """One line of replay's output: topic, key and the record's bytes as the worker sends them.

    Examples:
        >>> output_line(EncodedRecord("t", "k", b'{"a":1.50}'))
        b'{"topic":"t","key":"k","value":{"a":1.50}}'
    """
    value = orjson.Fragment(record.value)
    return orjson.dumps({"topic": record.topic, "key": record.key, "value": value})


def _record(outcome: BatchOutcome, write: Callable[[bytes], None], report: ReplayReport) -> None:
    report.accepted += outcome.accepted
    report.predictions += outcome.counts.get("predictions", 0)
    report.dead_letters += len(outcome.dead_letters)
    for record in outcome.outputs:
        write(output_line(record))
        report.records_by_topic[record.topic] = report.records_by_topic.get(record.topic, 0) + 1
    for score in outcome.scores:
        write(output_line(score))
        report.scores += 1
