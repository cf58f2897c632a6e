"""One batch of raw telemetry messages in, the exact output records out.

The Faust worker and ``novacron replay`` both call :class:`TelemetryPipeline`, so the
records replay writes are the records the worker sends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .codec import dead_letter_record, decode_host, decode_link
from .processor import BandwidthProcessor, host_entries
from .records import DeadLetter, HostSample, LinkSample, SourceRef
from .store import WindowStore

LINK_NAMESPACE = "link"
HOST_NAMESPACE = "host"


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message value exactly as received, and where it came from."""

    value: bytes
    source: SourceRef


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """A record to send: topic, key and the JSON value (a dict checked by its schema)."""

    topic: str
    key: str
    value: dict[str, Any]


@dataclass(slots=True)
class BatchOutcome:
    """Everything a batch produced, with the counts the worker reports as metrics."""

    outputs: list[OutputRecord] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    predictions: int = 0
    warming_up: int = 0
    duplicates: int = 0
    no_history: int = 0


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """Names of the topics the pipeline writes to."""

    predictions: str = "predictions.bandwidth.v1"
    dlq: str = "telemetry.dlq.v1"


class TelemetryPipeline:
    """Decode -> window -> process for batches of link and host messages.

    Args:
        processor: the bandwidth processor (holds the predictor lookup).
        store: where rolling windows live (Redis in the worker, memory in replay).
        clock: returns the wall-clock time stamped as ``produced_at``.
        topics: output topic names.
    """

    def __init__(
        self,
        processor: BandwidthProcessor,
        store: WindowStore,
        clock: Callable[[], float],
        topics: OutputTopics | None = None,
    ) -> None:
        self.processor = processor
        self.store = store
        self.clock = clock
        self.topics = topics or OutputTopics()

    async def handle_link(self, messages: Sequence[RawMessage]) -> BatchOutcome:
        """Process a batch of ``telemetry.link.v1`` messages."""
        outcome = BatchOutcome()
        samples: list[LinkSample] = _decode_all(messages, decode_link, outcome)
        now = self.clock()
        if samples:
            keys = list(dict.fromkeys(s.link_id for s in samples))
            depth = self.processor.history_depth([s.mode for s in samples])
            windows = await self.store.load(LINK_NAMESPACE, keys, depth)
            result = self.processor.process(samples, windows)
            await self.store.append(LINK_NAMESPACE, result.appends)
            outcome.scores = result.scores
            outcome.predictions = len(result.predictions)
            outcome.warming_up = result.warming_up
            outcome.duplicates = result.duplicates
            outcome.no_history = result.no_history
            outcome.outputs.extend(
                OutputRecord(self.topics.predictions, p.link_id, p.to_record(now))
                for p in result.predictions
            )
        self._dead(outcome, now)
        return outcome

    async def handle_host(self, messages: Sequence[RawMessage]) -> BatchOutcome:
        """Process a batch of ``telemetry.host.v1`` messages: validate and window them."""
        outcome = BatchOutcome()
        samples: list[HostSample] = _decode_all(messages, decode_host, outcome)
        now = self.clock()
        if samples:
            entries = host_entries(samples)
            windows = await self.store.load(HOST_NAMESPACE, list(entries))
            fresh: dict[str, list[Any]] = {}
            for host, new in entries.items():
                known = {e.event_id for e in windows.get(host, [])}
                fresh[host] = [e for e in new if e.event_id not in known]
                outcome.duplicates += len(new) - len(fresh[host])
            await self.store.append(HOST_NAMESPACE, fresh)
            outcome.scores = [
                {"event_id": s.event_id, "key": s.host_id, "ts": s.ts, "topic": "telemetry.host.v1"}
                for s in samples
            ]
        self._dead(outcome, now)
        return outcome

    def _dead(self, outcome: BatchOutcome, now: float) -> None:
        for dead in outcome.dead_letters:
            key = dead.source.key or ""
            outcome.outputs.append(
                OutputRecord(self.topics.dlq, key, dead_letter_record(dead, now))
            )


def _decode_all(
    messages: Sequence[RawMessage],
    decode: Callable[[bytes, SourceRef], tuple[list[Any], list[DeadLetter]]],
    outcome: BatchOutcome,
) -> list[Any]:
    """Decode every message; refused ones go to ``outcome.dead_letters``."""
    samples: list[Any] = []
    for msg in messages:
        ok, dead = decode(msg.value, msg.source)
        samples.extend(ok)
        outcome.dead_letters.extend(dead)
    outcome.accepted = len(samples)
    return samples
