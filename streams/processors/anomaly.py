"""Anomaly processor: each host's or link's samples scored by its own detector, alerts
opened, updated and resolved by its :class:`~streams.alerts.AlertTracker`.

The per-key detector and alert state live in the worker's memory between batches and
are persisted with the key's window after each batch is delivered (the store writes
both at once). A key whose state in memory is not at the window's newest entry (a
partition that moved here, a batch being redone, a restart) is restored from the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..alerts import AlertPolicy, AlertTracker, Transition, top_metric
from ..detector import AnomalyModel, AnomalyScore, KeyDetector
from ..records import MEASURES, AnomalyAlert, HostSample, LinkSample, ModelRef, Score
from ..windows import BatchWindows
from .base import HeldStates, ProcessorParts, ProcessorResult

ALERTS_FIELD = "anomaly.alerts"
"""State field of a key's alert lifecycle."""


@dataclass(slots=True)
class _KeyState:
    detector: KeyDetector
    tracker: AlertTracker
    saved: dict[str, bytes] = field(default_factory=dict)
    dirty: bool = False


class AnomalyProcessor:
    """Scores every new sample of an input and publishes ``alerts.anomaly.v1`` records.

    Args:
        model: makes and restores each key's detector.
        policy: when alerts open, update and resolve.
        entity_kind: ``host`` or ``link`` (the alerts' ``entity_kind``).
        cache_keys: keys whose state is held in memory (least recently used leave; their
            state is in the store).
    """

    name = "anomaly"

    def __init__(
        self,
        model: AnomalyModel,
        policy: AlertPolicy,
        entity_kind: str,
        cache_keys: int = 4096,
    ) -> None:
        self.model = model
        self.policy = policy
        self.entity_kind = entity_kind
        self.cache_keys = cache_keys
        self.state_fields = (*(f"anomaly.{f}" for f in model.state_fields), ALERTS_FIELD)
        self._held: HeldStates[_KeyState] = HeldStates(
            cache_keys, lambda s: s.detector.upto, lambda s: s.dirty, lambda s: s.saved
        )

    @classmethod
    def for_hosts(cls, parts: ProcessorParts) -> AnomalyProcessor | None:
        return None if parts.anomaly is None else cls(parts.anomaly, parts.alert_policy, "host")

    @classmethod
    def for_links(cls, parts: ProcessorParts) -> AnomalyProcessor | None:
        return None if parts.anomaly is None else cls(parts.anomaly, parts.alert_policy, "link")

    def history_depth(self, samples: Sequence[Any]) -> int:
        return 1

    def missing_state(self, newest: Mapping[str, str | None]) -> list[str]:
        return self._held.missing(newest)

    def process(
        self,
        samples: Sequence[HostSample | LinkSample],
        windows: BatchWindows,
        scores: Sequence[Score] | None,
    ) -> ProcessorResult:
        result = ProcessorResult(counts={"anomaly_scored": 0, "alerts": 0, "state_restored": 0})
        runs: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            if windows.fresh[i]:
                runs.setdefault(sample.key, []).append(i)
        states: dict[str, _KeyState] = {}
        for key, indexes in runs.items():
            state = self._state_for(key, windows, indexes[0], result)
            state.dirty = True
            self._held.hold(key, state)
            states[key] = state
        placed: list[tuple[int, AnomalyAlert]] = []
        for key, i, one in self._score(states, samples, runs):
            state, sample = states[key], samples[i]
            for change in state.tracker.step(sample.event_id, sample.ts, one):
                placed.append((i, self._alert(key, change)))
                if change.rebaseline:
                    state.detector.rebaseline()
            if scores is not None:
                scores[i].fields.update(_score_fields(one))
        for key, state in states.items():
            result.counts["anomaly_scored"] += len(runs[key])
            fields = {f"anomaly.{name}": blob for name, blob in state.detector.dump().items()}
            fields[ALERTS_FIELD] = state.tracker.dump()
            state.saved.update(fields)
            state.dirty = False
            result.states[key] = fields
        placed.sort(key=lambda pair: pair[0])
        result.records.extend(alert for _, alert in placed)
        result.counts["alerts"] = len(placed)
        for _, alert in placed:
            name = f"alerts:{alert.status}:{alert.severity}"
            result.counts[name] = result.counts.get(name, 0) + 1
        return result

    def _score(
        self,
        states: Mapping[str, _KeyState],
        samples: Sequence[HostSample | LinkSample],
        runs: Mapping[str, list[int]],
    ) -> Iterator[tuple[str, int, AnomalyScore]]:
        """Every key's samples scored in order, all keys at once, in rounds that end where
        a key's open alert becomes the new normal: its model re-baselines there, before
        its next sample, however the stream was batched. Yields a round's scores key by
        key, in order, before the next round is scored."""
        if not runs:
            return
        done = dict.fromkeys(runs, 0)
        longest = self.policy.new_normal_after or max(len(v) for v in runs.values())
        while True:
            batch = []
            for key, indexes in runs.items():
                pos = done[key]
                if pos >= len(indexes):
                    continue
                tracker = states[key].tracker
                size = min(len(indexes) - pos, tracker.until_new_normal() or longest, longest)
                batch.append((key, indexes[pos : pos + size]))
                done[key] = pos + size
            if not batch:
                return
            scored = self.model.score_batch(
                [
                    (
                        states[key].detector,
                        [samples[i].event_id for i in run],
                        [_metrics(samples[i]) for i in run],
                    )
                    for key, run in batch
                ]
            )
            for (key, run), key_scores in zip(batch, scored, strict=True):
                for i, one in zip(run, key_scores, strict=True):
                    yield key, i, one

    def _state_for(
        self, key: str, windows: BatchWindows, index: int, result: ProcessorResult
    ) -> _KeyState:
        """The key's state as of the window entry before sample ``index``: held in memory
        if current, else restored from the store (or from the last state saved here, for
        a batch redone sample by sample), else new."""
        previous, current, stored = self._held.resume(key, windows, index)
        if current is not None:
            return current
        for fields in stored:
            restored = self._restore(key, fields)
            if restored.detector.upto == previous:
                result.counts["state_restored"] += 1
                return restored
        return _KeyState(self.model.new(key), AlertTracker(key, self.policy))

    def _restore(self, key: str, fields: Mapping[str, bytes]) -> _KeyState:
        own = {
            name.removeprefix("anomaly."): blob
            for name, blob in fields.items()
            if name != ALERTS_FIELD
        }
        detector = self.model.restore(key, own)
        tracker = AlertTracker.restore(key, self.policy, fields.get(ALERTS_FIELD))
        return _KeyState(detector, tracker, dict(fields))

    def _alert(self, key: str, change: Transition) -> AnomalyAlert:
        alert, scored = change.alert, change.score
        level = alert.severity
        return AnomalyAlert(
            alert_id=alert.alert_id,
            status=change.status,
            seq=alert.seq,
            entity_kind=self.entity_kind,
            entity_id=key,
            event_id=change.event_id,
            ts=change.ts,
            opened_ts=alert.opened_ts,
            anomaly_score=round(scored.score, 6),
            confidence=round(scored.confidence, 6),
            severity=level,
            anomaly_type=change.anomaly_type,
            model=ModelRef(self.model.name, self.model.version),
            source_event_ids=tuple(alert.event_ids),
            summary=_summary(change, self.policy.threshold),
            threshold=self.policy.threshold,
            metrics=tuple(scored.metrics),
            detectors={k: round(v, 6) for k, v in scored.detectors.items()},
            fitted=scored.fitted,
            history=scored.history,
            peak_score=round(alert.peak, 6),
            previous_severity=change.previous_severity,
            resolution=change.resolution,
        )


def _metrics(sample: HostSample | LinkSample) -> dict[str, float]:
    if isinstance(sample, HostSample):
        return dict(sample.metrics)
    return dict(zip(MEASURES, sample.values(), strict=True))


def _score_fields(scored: AnomalyScore) -> dict[str, Any]:
    return {
        "anomaly_score": round(scored.score, 6),
        "anomaly_raw": round(scored.raw, 6),
    }


def _summary(change: Transition, threshold: float) -> str:
    """One line for a person: what happened, on which metric, how sure."""
    scored = change.score
    top = top_metric(scored.metrics)
    if change.status == "resolve":
        why = (
            "its level has lasted long enough to be the new normal; the model re-baselined"
            if change.resolution == "new_normal"
            else "back to normal"
        )
        head = f"{change.anomaly_type} anomaly resolved: {why}"
    else:
        verb = {"open": "opened", "update": "continues"}[change.status]
        head = f"{change.anomaly_type} anomaly {verb} ({change.alert.severity})"
    if top is not None:
        head += (
            f"; {top.name} = {top.value:.4g}, expected {top.expected:.4g}"
            f" (recent range {top.low:.4g}..{top.high:.4g})"
        )
    head += f"; score {scored.score:.2f} vs threshold {threshold:.2f}"
    if not scored.fitted:
        head += (
            f"; scored by the statistical and online detectors only: {scored.history} "
            "samples of history are too few to fit the batch detectors"
        )
    return head
