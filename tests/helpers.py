"""Running one processor on a batch the way the pipeline does (window advance, annotate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.processors import Processor
from streams.records import Score, WindowEntry
from streams.topics import Topics
from streams.windows import advance


@dataclass(slots=True)
class ProcessorRun:
    predictions: list[Any]
    appends: dict[str, list[WindowEntry]]
    duplicates: int
    warming_up: int
    no_history: int
    scores: list[Score] = field(default_factory=list)


def run_processor(
    proc: Processor, samples: Sequence[Any], windows: Mapping[str, Sequence[WindowEntry]]
) -> ProcessorRun:
    view = advance(samples, windows)
    scores = [Score(s.event_id, s.key, s.ts, Topics().link) for s in samples]
    result = proc.process(samples, view, scores)
    view.annotate(result.predicted)
    return ProcessorRun(
        list(result.records),
        view.appends,
        view.duplicates,
        result.counts.get("warming_up", 0),
        result.counts.get("no_history", 0),
        scores,
    )
