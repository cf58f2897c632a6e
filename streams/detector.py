"""The interface every anomaly model implements, and what it says about one sample.

The anomaly processor (:mod:`streams.processors.anomaly`) keeps one
:class:`KeyDetector` per host or link: the model's learned state for that key, scored
and updated one sample at a time, persisted with the key's window so that a restarted
worker (or the one a partition moves to) goes on where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .records import MetricView


@dataclass(frozen=True, slots=True)
class AnomalyScore:
    """What the anomaly model made of one sample.

    Attributes:
        score: the anomaly score in [0, 1] after the likelihood step: how unusual the
            detectors' recent output is against the key's own score history. The
            alert lifecycle thresholds this.
        raw: the detectors' combined score in [0, 1] before the likelihood step.
        confidence: agreement of the detectors on the sample, in [0, 1].
        detectors: each detector's score in [0, 1] (only those that took part).
        metrics: each metric of the sample with its expectation and contribution.
        fitted: whether the batch detectors (fitted on the key's history) took part;
            ``False`` while a key has too little history for them.
        history: samples of the key the model has learned from.
    """

    score: float
    raw: float
    confidence: float
    detectors: Mapping[str, float]
    metrics: Sequence[MetricView]
    fitted: bool
    history: int


class KeyDetector(Protocol):
    """One key's detector: scores each sample, then learns from it."""

    upto: str | None
    """Event id of the newest sample learned (``None``: none yet)."""

    def score_many(
        self, event_ids: Sequence[str], samples: Sequence[Mapping[str, float]]
    ) -> list[AnomalyScore]:
        """Score a run of the key's samples (metric -> value, NaN = absent) in order,
        learning from each after scoring it."""
        ...

    def dump(self) -> dict[str, bytes]:
        """The state to persist, as named fields (unchanged fields may be left out)."""
        ...

    def rebaseline(self) -> None:
        """Take the key's recent level as normal (a lasting shift, not an incident)."""
        ...


class AnomalyModel(Protocol):
    """Makes and restores per-key detectors."""

    name: str
    version: str
    state_fields: tuple[str, ...]
    """The fields :meth:`KeyDetector.dump` writes."""

    def new(self, key: str) -> KeyDetector:
        """A detector for a key never seen before."""
        ...

    def restore(self, key: str, fields: Mapping[str, bytes]) -> KeyDetector:
        """The detector :meth:`KeyDetector.dump` saved (fields as persisted)."""
        ...

    def score_batch(
        self, runs: Sequence[tuple[KeyDetector, Sequence[str], Sequence[Mapping[str, float]]]]
    ) -> list[list[AnomalyScore]]:
        """:meth:`KeyDetector.score_many` for runs of many keys (each at most once) at
        once, with the same results: what a batch of many keys costs is paid once."""
        ...
