"""One batch of raw telemetry messages in, the exact encoded output records out.

:func:`build_pipeline` is the one way to make a pipeline: the Faust worker, ``novacron
replay``, evaluation, the benchmarks and the tests all call it, so replay writes the
bytes the worker sends.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .codec import EncodedRecord, decode_host, decode_link, encode_output
from .predictor import Scored
from .processors import PROCESSORS, Processor, ProcessorFactory, ProcessorParts, ProcessorResult
from .records import DeadLetter, OutputRecord, Score, SourceRef, WindowEntry
from .store import WindowStore
from .topics import INPUT_ROLES, Topics
from .windows import BatchWindows, advance

PROCESSING_ERROR = "processing_error"
"""Dead-letter kind of a sample a processor raised on (the rest of its batch goes on)."""

Decoder = Callable[[bytes, SourceRef], tuple[list[Any], list[DeadLetter]]]

DECODERS: dict[str, Decoder] = {"link": decode_link, "host": decode_host}
"""The decoder of each input role; its window namespace in the store is the role."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message value exactly as received, and where it came from."""

    value: bytes
    source: SourceRef


@dataclass(slots=True)
class BatchOutcome:
    """Everything a batch produced, with the counts the worker reports as metrics.

    Attributes:
        outputs: encoded records to send, processors' records first, then dead letters.
        scores: one encoded ``scores.v1`` line per accepted sample (only when the
            pipeline was built ``with_scores``).
        accepted: samples decoded and validated.
        dead_letters: refused messages or samples (also in ``outputs``).
        duplicates: samples whose event id was already in the window (redeliveries).
        counts: the processors' named counts, summed (``predictions``, ``warming_up``, ...).
        appends: the batch's new window entries, persisted by :meth:`TelemetryPipeline.persist`
            once the outputs were delivered.
        newest: per key, the window's newest event id when the batch loaded it.
        states: per key, the processors' state fields to persist with the entries.
        scored: ``(mode, key group, scored)`` for each earlier prediction checked against
            an actual of the batch (the worker's online accuracy metrics).
    """

    outputs: list[EncodedRecord] = field(default_factory=list)
    scores: list[EncodedRecord] = field(default_factory=list)
    accepted: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    appends: dict[str, list[WindowEntry]] = field(default_factory=dict)
    newest: dict[str, str | None] = field(default_factory=dict)
    states: dict[str, dict[str, bytes]] = field(default_factory=dict)
    scored: list[tuple[str, str, Scored]] = field(default_factory=list)


class TelemetryPipeline:
    """Decode -> window -> processors -> encode, for batches of each input's messages.

    Args:
        processors: the processors of each input role, run in order on every batch.
        store: where rolling windows live (Redis in the worker, memory in replay).
        clock: returns the wall-clock time stamped as ``produced_at``.
        topics: topic names.
        with_scores: also encode one ``scores.v1`` line per accepted sample (replay).
    """

    def __init__(
        self,
        processors: Mapping[str, Sequence[Processor]],
        store: WindowStore,
        clock: Callable[[], float],
        topics: Topics,
        *,
        with_scores: bool = False,
    ) -> None:
        unknown = set(processors) - set(DECODERS)
        if unknown:
            msg = f"Processors are registered for {sorted(unknown)}; inputs are {INPUT_ROLES}."
            raise ValueError(msg)
        self.processors = {role: tuple(processors.get(role, ())) for role in DECODERS}
        self.store = store
        self.clock = clock
        self.topics = topics
        self.with_scores = with_scores

    async def process(self, role: str, messages: Sequence[RawMessage]) -> BatchOutcome:
        """Decode, window and process a batch of the input ``role``; persist nothing yet.

        The worker delivers ``outputs`` and only then calls :meth:`persist`: a window
        entry therefore means its outputs were delivered, and a batch that failed
        anywhere before can be processed again as a whole, giving the same records.
        """
        decode = DECODERS[role]
        outcome = BatchOutcome()
        samples: list[Any] = []
        origins: list[RawMessage] = []
        for msg in messages:
            ok, dead = decode(msg.value, msg.source)
            samples.extend(ok)
            origins.extend(msg for _ in ok)
            outcome.dead_letters.extend(dead)
        outcome.accepted = len(samples)
        now = self.clock()
        records: list[OutputRecord] = []
        if samples:
            processors = self.processors[role]
            keys = list(dict.fromkeys(s.key for s in samples))
            # No processor: the whole window, so that redeliveries are still recognised.
            depth = max((p.history_depth(samples) for p in processors), default=None)
            loaded = await self.store.load(role, keys, depth)
            view = advance(samples, loaded, [m.source.position for m in origins])
            view.states = await self._load_states(role, processors, view)
            source = self.topics.name(role)
            scores = (
                [Score(s.event_id, s.key, s.ts, source) for s in samples]
                if self.with_scores
                else None
            )
            for processor in processors:
                result = _run(processor, samples, origins, view, scores, outcome.dead_letters)
                records.extend(result.records)
                view.annotate(result.predicted)
                for key, note in result.notes.items():
                    view.notes.setdefault(key, {}).update(note)
                for key, fields in result.states.items():
                    outcome.states.setdefault(key, {}).update(fields)
                for name, count in result.counts.items():
                    outcome.counts[name] = outcome.counts.get(name, 0) + count
                outcome.scored.extend(result.scored)
            outcome.appends = view.appends
            outcome.newest = view.newest
            outcome.duplicates = view.duplicates
            if scores is not None:
                outcome.scores = [encode_output(s, self.topics, now) for s in scores]
        records.extend(outcome.dead_letters)
        outcome.outputs = [self._encode(r, role, now) for r in records]
        return outcome

    async def _load_states(
        self, role: str, processors: Sequence[Processor], view: BatchWindows
    ) -> dict[str, dict[str, bytes]]:
        """The stored state of the keys whose processors do not hold it current."""
        stateful = [p for p in processors if p.state_fields]
        need = sorted({key for p in stateful for key in p.missing_state(view.newest)})
        if not need:
            return {}
        fields = sorted({f for p in stateful for f in p.state_fields})
        return await self.store.load_state(role, need, fields)

    def _encode(self, record: OutputRecord, role: str, now: float) -> EncodedRecord:
        """The record encoded, or, if it cannot be (a NaN a processor let through), a
        ``processing_error`` dead letter carrying what it could show of it."""
        try:
            return encode_output(record, self.topics, now)
        except (ValueError, TypeError) as exc:
            last = traceback.format_exception_only(exc)[-1].strip()
            reason = f"a {type(record).__name__} record could not be encoded: {last}"
            source = SourceRef(self.topics.name(role), key=record.key)
            dead = DeadLetter(PROCESSING_ERROR, reason, source, repr(record).encode("utf-8"))
            return encode_output(dead, self.topics, now)

    async def persist(self, role: str, outcome: BatchOutcome) -> None:
        """Store the batch's new window entries (after its outputs were delivered).

        Only if every window still ends where the batch loaded it; otherwise the store
        raises :class:`~streams.errors.StoreConflict` and the batch is done again.
        """
        await self.store.append(role, outcome.appends, outcome.newest, outcome.states)

    async def handle(self, role: str, messages: Sequence[RawMessage]) -> BatchOutcome:
        """:meth:`process` then :meth:`persist`: for replay, where writing is delivering."""
        outcome = await self.process(role, messages)
        await self.persist(role, outcome)
        return outcome

    async def handle_link(self, messages: Sequence[RawMessage]) -> BatchOutcome:
        """Process a batch of ``telemetry.link.v1`` messages."""
        return await self.handle("link", messages)


def _run(
    processor: Processor,
    samples: Sequence[Any],
    origins: Sequence[RawMessage],
    view: BatchWindows,
    scores: Sequence[Score] | None,
    dead_letters: list[DeadLetter],
) -> ProcessorResult:
    """Run a processor on the batch; if it raises, sample by sample, dead-lettering those
    it raises on, so that one bad sample costs its own output and nothing else."""
    try:
        return processor.process(samples, view, scores)
    except Exception:  # noqa: BLE001 - isolated below, per sample
        merged = ProcessorResult()
    for i, sample in enumerate(samples):
        try:
            result = processor.process(
                [sample], view.only(i), None if scores is None else [scores[i]]
            )
        except Exception as exc:  # noqa: BLE001 - a processor bug on one sample
            last = traceback.format_exception_only(exc)[-1].strip()
            reason = f"the {processor.name} processor raised on event {sample.event_id}: {last}"
            dead_letters.append(
                DeadLetter(PROCESSING_ERROR, reason, origins[i].source, origins[i].value)
            )
            continue
        merged.records.extend(result.records)
        merged.predicted.update(result.predicted)
        for key, fields in result.states.items():
            merged.states.setdefault(key, {}).update(fields)
        for key, note in result.notes.items():
            merged.notes.setdefault(key, {}).update(note)
        for name, count in result.counts.items():
            merged.counts[name] = merged.counts.get(name, 0) + count
        merged.scored.extend(result.scored)
    return merged


def build_pipeline(
    parts: ProcessorParts,
    store: WindowStore,
    clock: Callable[[], float],
    topics: Topics | None = None,
    *,
    with_scores: bool = False,
    registry: Mapping[str, Sequence[ProcessorFactory]] = PROCESSORS,
) -> TelemetryPipeline:
    """The pipeline with every registered processor, made from ``parts``.

    Examples:
        >>> import asyncio
        >>> from models.baseline import HarmonicMeanPredictor
        >>> from streams.store import InMemoryWindowStore
        >>> parts = ProcessorParts(lambda mode: HarmonicMeanPredictor(mode, window_steps=2))
        >>> pipe = build_pipeline(parts, InMemoryWindowStore(), clock=lambda: 0.0)
        >>> msgs = [RawMessage(b'{"link_id": "l1", "ts": 17000000%02d, "mode": "internet", '
        ...                    b'"bandwidth_mbps": 100}' % t, SourceRef("telemetry.link.v1", 0, t))
        ...         for t in range(3)]
        >>> out = asyncio.run(pipe.handle_link(msgs))
        >>> [r.topic for r in out.outputs]
        ['predictions.bandwidth.v1', 'predictions.bandwidth.v1']
        >>> out.counts
        {'warming_up': 1, 'no_history': 0, 'predictions': 2}
    """
    processors = {
        role: [p for p in (make(parts) for make in makers) if p is not None]
        for role, makers in registry.items()
    }
    return TelemetryPipeline(processors, store, clock, topics or Topics(), with_scores=with_scores)
