"""Workload processor: each host's long history classified, ``workload.class.v1`` out.

A host's last :attr:`WorkloadProcessor.history` rows of the :data:`HOST_METRICS` are
kept in the worker's memory and persisted with its window in chunks
(:class:`streams.history.ChunkedHistory`): the 60-sample window is far too short to see
a daily cycle. A row is the mean of the host's samples in one ``bucket_s`` time bucket
(180 s by default: 1,440 rows span three days, so a daily cycle is seen, and confirmed
by its autocorrelation, two times over; a host sampled less often than that keeps one
row per sample). Every ``classify_every`` rows, once a host has the classifier's
``min_samples`` rows, the classifier names its workload type and pattern; a class is
published when the type or pattern changes, and every ``publish_every`` samples
otherwise. The class is also handed to the processors after
this one in the batch (the scaling processor weights its forecast with it).

Classification points are counted in the host's own samples, so a host gets the same
classes however its samples were batched (replay equals the worker).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capacity import HOST_METRICS, WorkloadClass, WorkloadClassifier, host_matrix
from ..history import ChunkedHistory
from ..records import HostSample, ModelRef, Score, WorkloadClassRecord
from ..windows import BatchWindows
from .base import HeldStates, ProcessorParts, ProcessorResult

META_FIELD = "workload.meta"
"""State field of a host's class and history position (JSON)."""
CHUNK_PREFIX = "workload.h"
"""Prefix of the state fields holding a host's history chunks."""
STATE_FORMAT = 2

NOTE_TYPE = "workload_types"
"""Note key under which a host's workload types are handed on: per event id of the
batch, the type in effect at that sample (``None``: not classified yet)."""

ClassifierLookup = Callable[[], WorkloadClassifier | None]
"""Returns the active workload classifier (``None``: no classifier is served)."""


@dataclass(slots=True)
class _Host:
    upto: str | None
    history: ChunkedHistory
    workload_type: str | None = None
    pattern_type: str | None = None
    since_publish: int = 0
    bucket: int | None = None
    pending: list[list[float]] = field(default_factory=list)
    """The samples of the current bucket, not yet a row: ``[ts, metrics...]``."""
    saved: dict[str, bytes] = field(default_factory=dict)
    dirty: bool = False

    def meta(self) -> bytes:
        return json.dumps(
            {
                "format": STATE_FORMAT,
                "upto": self.upto,
                "end": self.history.end,
                "type": self.workload_type,
                "pattern": self.pattern_type,
                "since": self.since_publish,
                "bucket": self.bucket,
                "pending": [[None if v != v else v for v in row] for row in self.pending],
            },
            separators=(",", ":"),
        ).encode()


class WorkloadProcessor:
    """Classifies hosts and publishes ``workload.class.v1`` records.

    Args:
        classifier: the active classifier, looked up once per batch (hot swap).
        history: samples of history kept per host.
        classify_every: host samples between classifications.
        publish_every: host samples after which an unchanged class is published again.
        bucket_s: seconds of samples averaged into one history row (0: a row per sample).
        cache_keys: hosts held in memory (least recently used leave; their state is in
            the store).
    """

    name = "workload"

    def __init__(
        self,
        classifier: ClassifierLookup,
        history: int = 1440,
        classify_every: int = 15,
        publish_every: int = 240,
        bucket_s: float = 180.0,
        cache_keys: int = 4096,
        chunk: int = 32,
    ) -> None:
        self.classifier = classifier
        self.history = history
        self.bucket_s = bucket_s
        self.classify_every = classify_every
        self.publish_every = publish_every
        self.cache_keys = cache_keys
        self.chunk = chunk
        blank = ChunkedHistory(history, 1 + len(HOST_METRICS), chunk)
        self.state_fields = (META_FIELD, *blank.field_names(CHUNK_PREFIX))
        self._held: HeldStates[_Host] = HeldStates(
            cache_keys, lambda s: s.upto, lambda s: s.dirty, lambda s: s.saved
        )

    @classmethod
    def from_parts(cls, parts: ProcessorParts) -> WorkloadProcessor | None:
        if parts.workload is None:
            return None
        return cls(parts.workload, history=parts.workload_history, bucket_s=parts.workload_bucket_s)

    def history_depth(self, samples: Sequence[Any]) -> int:
        return 1

    def missing_state(self, newest: Mapping[str, str | None]) -> list[str]:
        return self._held.missing(newest)

    def process(
        self,
        samples: Sequence[HostSample],
        windows: BatchWindows,
        scores: Sequence[Score] | None,
    ) -> ProcessorResult:
        result = ProcessorResult(counts={"workload_classified": 0, "workload_classes": 0})
        runs: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            if windows.fresh[i]:
                runs.setdefault(sample.key, []).append(i)
        classifier = self.classifier()
        pending: list[tuple[str, int, np.ndarray, float]] = []
        hosts: dict[str, _Host] = {}
        for key, indexes in runs.items():
            host = self._state_for(key, windows, indexes[0])
            host.dirty = True
            self._held.hold(key, host)
            hosts[key] = host
            rows = host_matrix([samples[i].metrics for i in indexes])
            ts = np.array([[samples[i].ts] for i in indexes])
            for n, i in enumerate(indexes):
                added = self._add(host, np.hstack([ts[n], rows[n]]))
                host.upto = samples[i].event_id
                if not added or classifier is None or host.history.end % self.classify_every:
                    continue
                kept = host.history.rows()
                if len(kept) < classifier.min_samples:
                    continue
                pending.append((key, i, kept.copy(), _step_s(kept[:, 0])))
        found: dict[int, tuple[WorkloadClass, np.ndarray]] = {}
        if pending and classifier is not None:
            classes = classifier.classify_many(
                [rows[:, 1:] for _, _, rows, _ in pending], [step for *_, step in pending]
            )
            result.counts["workload_classified"] = len(classes)
            found = {i: (one, rows) for (_, i, rows, _), one in zip(pending, classes, strict=True)}
        model = None if classifier is None else ModelRef(classifier.name, classifier.version)
        placed: list[tuple[int, WorkloadClassRecord]] = []
        for key, indexes in runs.items():
            host = hosts[key]
            in_effect: dict[str, str | None] = {}
            for i in indexes:
                host.since_publish += 1
                if i in found and model is not None:
                    one, rows = found[i]
                    if scores is not None:
                        scores[i].fields["workload_type"] = one.workload_type
                    record = self._publish(host, samples[i], rows, one, model)
                    if record is not None:
                        placed.append((i, record))
                in_effect[samples[i].event_id] = host.workload_type
            result.notes[key] = {NOTE_TYPE: in_effect}
        # only once every host is done: a batch that raised is redone from the last saves
        for key, host in hosts.items():
            fields = host.history.dump(CHUNK_PREFIX)
            fields[META_FIELD] = host.meta()
            host.saved.update(fields)
            host.dirty = False
            result.states[key] = fields
        placed.sort(key=lambda pair: pair[0])
        result.records.extend(record for _, record in placed)
        result.counts["workload_classes"] = len(placed)
        return result

    def _add(self, host: _Host, row: np.ndarray) -> bool:
        """Add a sample to the host's history; whether a new row was completed."""
        if self.bucket_s <= 0:
            host.history.append(row[None, :])
            return True
        bucket = int(row[0] // self.bucket_s)
        completed = False
        if host.pending and bucket != host.bucket:
            with warnings.catch_warnings():  # a metric absent from the whole bucket: NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                merged = np.nanmean(np.array(host.pending, dtype=float), axis=0)
            merged[0] = host.pending[-1][0]
            host.history.append(merged[None, :])
            host.pending = []
            completed = True
        host.bucket = bucket
        host.pending.append([float(v) for v in row])
        return completed

    def _publish(
        self,
        host: _Host,
        sample: HostSample,
        rows: np.ndarray,
        found: WorkloadClass,
        model: ModelRef,
    ) -> WorkloadClassRecord | None:
        """The record to publish for a classification, if any; updates the host."""
        previous = host.workload_type
        if previous is None:
            trigger = "first"
        elif (found.workload_type, found.pattern_type) != (previous, host.pattern_type):
            trigger = "changed"
        elif host.since_publish >= self.publish_every:
            trigger = "periodic"
        else:
            return None
        host.workload_type = found.workload_type
        host.pattern_type = found.pattern_type
        host.since_publish = 0
        return WorkloadClassRecord(
            host_id=sample.host_id,
            event_id=sample.event_id,
            ts=sample.ts,
            workload_type=found.workload_type,
            pattern_type=found.pattern_type,
            confidence=round(float(found.confidence), 6),
            probabilities={k: round(float(v), 6) for k, v in found.probabilities.items()},
            features={k: float(v) for k, v in found.features.items()},
            group=int(found.cluster),
            model=model,
            window_from_ts=float(rows[0, 0]),
            window_samples=len(rows),
            previous_type=previous,
            trigger=trigger,
        )

    def _state_for(self, key: str, windows: BatchWindows, index: int) -> _Host:
        """The host's state as of the window entry before sample ``index``: held in
        memory if current, else restored from the store (or the last state saved here,
        for a batch redone sample by sample), else new."""
        previous, current, stored = self._held.resume(key, windows, index)
        if current is not None:
            return current
        for fields in stored:
            if (restored := self._restore(fields)) is not None and restored.upto == previous:
                return restored
        return _Host(None, ChunkedHistory(self.history, 1 + len(HOST_METRICS), self.chunk))

    def _restore(self, fields: Mapping[str, bytes]) -> _Host | None:
        try:
            meta = json.loads(fields[META_FIELD])
        except (KeyError, ValueError):
            return None
        if meta.get("format") != STATE_FORMAT:
            return None
        history = ChunkedHistory.restore(
            fields, CHUNK_PREFIX, int(meta["end"]), self.history, 1 + len(HOST_METRICS), self.chunk
        )
        return _Host(
            meta["upto"],
            history,
            meta.get("type"),
            meta.get("pattern"),
            int(meta.get("since", 0)),
            meta.get("bucket"),
            [[np.nan if v is None else v for v in row] for row in meta.get("pending", [])],
            saved=dict(fields),
        )


def _step_s(ts: np.ndarray) -> float:
    """The sampling step of a history: the median gap between its timestamps."""
    if len(ts) < 2:
        return 60.0
    gaps = np.diff(ts)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if len(gaps) else 60.0


def workload_type_at(windows: BatchWindows, key: str, event_id: str) -> str | None:
    """The workload type of host ``key`` in effect at its sample ``event_id``, as the
    workload processor handed it on (``None``: not classified yet, or no workload
    processor ran)."""
    found: str | None = windows.notes.get(key, {}).get(NOTE_TYPE, {}).get(event_id)
    return found
